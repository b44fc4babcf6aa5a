"""How close a compressed model stays to its teacher, without labels.

Every `compress()` report carries a `Fidelity`, measured on held-out views
of the tiny set (`views.held_out_views`: crops no training step saw): the
top-1 agreement with the teacher, the relative error of the outputs and of
the features before the head, and with labels both accuracies. `check`
turns a low estimate into a warning, or an error with `strict=True`.
"""

import dataclasses
import warnings

import numpy as np

from keras_practise.distillation import inference
from keras_practise.graph import flat_graph
from keras_practise.graph import taps

# A model without class scores is judged by its relative output error: above
# this, its outputs are further from the teacher's than the teacher's own
# spread around their mean.
MAX_OUTPUT_ERROR = 1.0


class FidelityWarning(UserWarning):
    """The compressed model's estimated fidelity is below the threshold."""


class FidelityError(ValueError):
    """With `strict=True`: the compressed model is too far from its teacher."""


@dataclasses.dataclass
class Fidelity:
    """The compressed model against its teacher on held-out views.

    Attributes:
        views: Number of held-out views.
        agreement: Fraction of views where both models' top-1 class agree
            (`None` for outputs that are not class scores).
        output_error: Mean squared difference of the outputs divided by the
            teacher's output variance (0: identical; 1: as far as a
            constant guess at the teacher's mean).
        feature_error: The same for the features before the head (`None`
            when the two models' features differ in shape).
        accuracy: `(teacher, compressed)` top-1 accuracy on the views when
            the tiny set is labelled, else `None`.
        unseen_images: Whether the views are of images no training used
            (`validation_split`), rather than new crops of the training
            images, on which a recovery that learnt the tiny set's labels
            by heart looks better than it is.
    """

    views: int
    agreement: float
    output_error: float
    feature_error: float
    accuracy: tuple = None
    unseen_images: bool = False

    def __str__(self):
        parts = []
        if self.agreement is not None:
            parts.append(f"top-1 agreement {100 * self.agreement:.1f}%")
        parts.append(f"output error {self.output_error:.3g}")
        if self.feature_error is not None:
            parts.append(f"feature error {self.feature_error:.3g}")
        if self.accuracy is not None:
            parts.append(
                f"accuracy {100 * self.accuracy[0]:.1f}% -> {100 * self.accuracy[1]:.1f}%"
            )
        source = "held-out images" if self.unseen_images else "the training images"
        return f"on {self.views} unseen views of {source}: " + ", ".join(parts)


def pool(parts):
    """One `Fidelity` of several measured on disjoint views.

    Each figure is the views-weighted mean of the parts' (an error or
    accuracy that one part lacks is `None`), as if measured on all the views
    at once; the errors are relative to each part's own teacher variance.

    Args:
        parts: `Fidelity` objects.

    Returns:
        A `Fidelity` over the parts' views together.
    """
    weights = np.array([p.views for p in parts], dtype="float64")

    def mean(values):
        if any(v is None for v in values):
            return None
        average = np.average(
            np.asarray(values, dtype="float64"), axis=0, weights=weights
        )
        return float(average) if average.ndim == 0 else tuple(map(float, average))

    return Fidelity(
        views=int(weights.sum()),
        agreement=mean([p.agreement for p in parts]),
        output_error=mean([p.output_error for p in parts]),
        feature_error=mean([p.feature_error for p in parts]),
        accuracy=mean([p.accuracy for p in parts]),
        unseen_images=all(p.unseen_images for p in parts),
    )


def _relative_error(value, target):
    value = np.asarray(value, "float64").reshape(len(value), -1)
    target = np.asarray(target, "float64").reshape(len(target), -1)
    spread = np.mean((target - target.mean(axis=0)) ** 2)
    error = np.mean((value - target) ** 2)
    return float(error / spread) if spread > 0 else float(error)


def outputs(model, views, batch_size=64):
    """`[features before the head, output]` of `model` on `views`.

    Pass a teacher's to `estimate(reference=...)` to judge many students
    on the same views without running the teacher again.
    """
    graph = flat_graph.FlatGraph(model)
    tapped = taps.tap_model(model, [taps.feature_tap(model), graph.outputs[0]])
    return inference.activations(tapped, views, batch_size)


def estimate(teacher, compressed, views, labels=None, batch_size=64, reference=None,
             unseen_images=False):
    """Measures how close `compressed` stays to `teacher` on `views`.

    Args:
        teacher: The original model.
        compressed: The compressed model (same input and output shapes).
        views: Held-out views, an NHWC array.
        labels: Their class indices, or `None`.
        batch_size: Batch size of the forward passes.
        reference: Optional `outputs(teacher, views)`, computed before.
        unseen_images: Whether `views` are of images no training used.

    Returns:
        A `Fidelity`.
    """
    teacher_features, teacher_out = reference or outputs(teacher, views, batch_size)
    features, out = outputs(compressed, views, batch_size)
    classes = teacher_out.ndim == 2 and teacher_out.shape[-1] > 1
    agreement = accuracy = None
    if classes:
        top_teacher, top = teacher_out.argmax(-1), out.argmax(-1)
        agreement = float(np.mean(top_teacher == top))
        if labels is not None:
            accuracy = (
                float(np.mean(top_teacher == labels)), float(np.mean(top == labels))
            )
    feature_error = None
    if features.shape == teacher_features.shape:
        feature_error = _relative_error(features, teacher_features)
    return Fidelity(
        views=len(views),
        agreement=agreement,
        output_error=_relative_error(out, teacher_out),
        feature_error=feature_error,
        accuracy=accuracy,
        unseen_images=unseen_images,
    )


def check(fidelity, min_agreement, relax, strict=False):
    """Warns (or raises) when `fidelity` says the result is far off.

    Far off means a top-1 agreement below `min_agreement`, or, for outputs
    that are not class scores, a relative output error above
    `MAX_OUTPUT_ERROR`. Non-finite outputs are always far off.

    Args:
        fidelity: A `Fidelity`.
        min_agreement: The smallest agreement accepted, in [0, 1].
        relax: What to relax, for the message (e.g. `"drop (3)"`).
        strict: Raise instead of warning.

    Raises:
        FidelityError: With `strict=True`, when the result is far off.
    """
    if fidelity.agreement is not None and np.isfinite(fidelity.output_error):
        far = fidelity.agreement < min_agreement
        what = (
            f"agrees with its teacher on {100 * fidelity.agreement:.1f}% of "
            f"{fidelity.views} held-out views (min_agreement={min_agreement})"
        )
    else:
        far = not fidelity.output_error <= MAX_OUTPUT_ERROR
        what = (
            f"has a relative output error of {fidelity.output_error:.3g} on "
            f"{fidelity.views} held-out views (at most {MAX_OUTPUT_ERROR})"
        )
    if not far:
        return
    message = (
        f"The compressed model {what}: it may be far from the teacher. "
        f"Relax {relax} or give more images"
    )
    if strict:
        raise FidelityError(message + ". Nothing was returned or written.")
    warnings.warn(
        message + "; strict=True refuses such a result.", FidelityWarning,
        stacklevel=3,
    )
