"""The image size a model takes, and fixed-size copies of size-agnostic models."""

from keras_practise.graph import flat_graph
from keras_practise.graph import surgery
from keras_practise.utils import validation


def model_image_size(model, image_size=None):
    """The `(height, width)` a model takes, or `image_size` when dynamic.

    Raises:
        ValueError: If the model's input size is dynamic and `image_size` is
            not given, or the input is not an image batch.
    """
    shape = flat_graph.input_shape(model)
    if len(shape) != 4:
        raise ValueError(
            "keras_practise compresses image models with inputs of shape "
            f"(batch, height, width, channels). Received: input shape {shape}"
        )
    if image_size is not None:
        return validation.as_size(image_size)
    if shape[1] is None or shape[2] is None:
        raise ValueError(
            f"Model {model.name!r} accepts any image size: pass "
            "`image_size=(height, width)`. Received: image_size=None"
        )
    return (shape[1], shape[2])


def fixed_size_model(model, image_size=None):
    """Returns `model`, or a copy with a fixed input size if it has none.

    MACs, latency and the candidates' training graphs need concrete shapes;
    a size-agnostic model is worked on at `image_size`.

    Args:
        model: A Functional or Sequential image model.
        image_size: `(height, width)` to fix a dynamic input size at.

    Returns:
        `model` itself when its input size is fixed, else a copy (same layer
        names and weights) whose input is `image_size`.

    Raises:
        ValueError: As `model_image_size`.
    """
    height, width = model_image_size(model, image_size)
    shape = flat_graph.input_shape(model)
    if shape[1] is not None and shape[2] is not None:
        return model
    return surgery.rewrite(model, input_shape=(height, width, shape[3]))
