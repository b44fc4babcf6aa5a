"""The tiny set's views and the frozen teacher's features on them, computed once.

Everything the frozen teacher computes on the tiny set is computed once and
kept: its feature maps at the tap (the mimicking targets) and its activations
at the main-path cuts where a student's trainable part begins (the frozen
prefix is the same computation for teacher and student).
"""

from keras_practise import backend
from keras_practise.data import views as views_lib
from keras_practise.distillation import trainer
from keras_practise.graph import flat_graph
from keras_practise.graph import input_size
from keras_practise.graph import surgery
from keras_practise.graph import taps


class FeatureBank:
    """The tiny set's views and the teacher's features on them.

    Args:
        teacher: The user's model (never modified; copies are used).
        train_views: Augmented training views, an NHWC array.
        eval_views: Evaluation views (eval transform), an NHWC array.
        labels: Optional labels of the train views and of the eval views, as
            a pair of arrays.
        batch_size: Batch size of the teacher's forward passes.

    Attributes:
        targets: The teacher's features at the tap, per split.
        scale: `trainer.feature_scale` of the training targets: the unit of
            every reported feature MSE.
    """

    def __init__(self, teacher, train_views, eval_views, labels=None, batch_size=64):
        self.teacher = teacher
        self.views = {"train": train_views, "eval": eval_views}
        self.labels = (
            {"train": labels[0], "eval": labels[1]} if labels is not None else None
        )
        self.batch_size = batch_size
        self.tap = taps.feature_tap(teacher)
        self._input = flat_graph.FlatGraph(teacher).inputs[0]
        self._prefix = {}
        self._outputs = {}
        tap_model = surgery.rewrite(teacher, outputs=[self.tap])
        self.targets = {
            split: tap_model.predict(v, batch_size=batch_size, verbose=0)
            for split, v in self.views.items()
        }
        # Feature MSEs are reported in units of the teacher's own feature
        # variance, so scores do not depend on the model's feature scale.
        self.scale = trainer.feature_scale(self.targets["train"])

    def prefix(self, cut, split):
        """The teacher's activations at `cut` for the `split` views."""
        key = (flat_graph.tensor_key(cut), split)
        if key not in self._prefix:
            if cut is self._input:
                self._prefix[key] = self.views[split]
            else:
                prefix_model = surgery.rewrite(self.teacher, outputs=[cut])
                self._prefix[key] = prefix_model.predict(
                    self.views[split], batch_size=self.batch_size, verbose=0
                )
        return self._prefix[key]

    def outputs(self, split):
        """The teacher's outputs (logits or probabilities) on the `split` views."""
        if split not in self._outputs:
            self._outputs[split] = trainer.predict(self.teacher, self.views[split])
        return self._outputs[split]

    def release(self):
        """Frees the cached prefix activations (recovery needs none of them)."""
        self._prefix = {}


@backend.fused_kernels()
def build_bank(
    model,
    data,
    num_samples=None,
    per_class=None,
    seed=0,
    image_size=None,
    augment_views=None,
    preprocess=None,
    data_dir=None,
    batch_size=64,
):
    """Draws the tiny set, makes its views and the teacher's features.

    Args:
        model: The teacher.
        data: Anything `data.load_tiny_set` accepts, or a `TinySet`.
        num_samples: Images to draw. Defaults to all.
        per_class: Images per class to draw instead (1 = "1-shot").
        seed: Seed of the draw and the augmentation.
        image_size: Input size for models with a dynamic input shape.
        augment_views: See `prepare_views`.
        preprocess: Callable applied to the loaded images (e.g. the model's
            `preprocess_input`).
        data_dir: Folder of prepared tensorflow-datasets datasets.
        batch_size: Batch size of the teacher's forward passes.

    Returns:
        A tuple `(bank, tiny_set)`.
    """
    size = input_size.model_image_size(model, image_size)
    tiny_set = views_lib.load_for_model(
        model, data, num_samples, per_class, seed, image_size, preprocess, data_dir
    )
    channels = flat_graph.input_shape(model)[-1]
    train_views, eval_views, labels = views_lib.prepare_views(
        tiny_set, size, augment_views, seed, channels
    )
    bank = FeatureBank(model, train_views, eval_views, labels, batch_size)
    return bank, tiny_set
