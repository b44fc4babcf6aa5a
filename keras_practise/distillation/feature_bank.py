"""The tiny set's views and the frozen teacher's features on them, computed once.

Everything the frozen teacher computes on the tiny set is computed once and
kept: its feature maps at the tap (the mimicking targets) and its activations
at the main-path cuts where a student's trainable part begins (the frozen
prefix is the same computation for teacher and student).

Activations at the cuts the caller plans to use are computed together, in
the teacher's pass for the targets and then in one pass per group, as many
as fit in `cache_bytes`; a cut that does not fit with the ones kept evicts
them, and a cut that does not fit alone is never cached: students start
from the images there (`start_of`), so the bank's memory stays bounded (one
cut of ResNet-50 at 224x224 on 2048 views takes 6.6 GB).
"""

import math

import numpy as np

from keras_practise import backend
from keras_practise.data import views as views_lib
from keras_practise.distillation import inference
from keras_practise.distillation import memory as memory_lib
from keras_practise.distillation import trainer
from keras_practise.graph import flat_graph
from keras_practise.graph import input_size
from keras_practise.graph import taps

CACHE_BYTES = 2 * 2**30


class FeatureBank:
    """The tiny set's views and the teacher's features on them.

    Args:
        teacher: The user's model (never modified; copies are used).
        train_views: Augmented training views, an NHWC array.
        eval_views: Evaluation views (eval transform), an NHWC array: of
            the training images, or of images held out from training.
        labels: Optional labels of the train views and of the eval views, as
            a pair of arrays.
        batch_size: Batch size of the teacher's forward passes.
        cuts: Tensors of `teacher`'s graph whose activations `prefix` will be
            asked for, in the order they will be (computed ahead, in groups).
        cache_bytes: Memory for cached activations at the cuts; a cut that
            does not fit beside those cached evicts them. Defaults to
            `CACHE_BYTES` (2 GiB).
        held_out: Whether the evaluation views are of images that no
            training view comes from (recovery then stops at its best on
            them).

    Raises:
        ValueError: If the teacher's features on the views are not finite.

    Attributes:
        targets: The teacher's features at the tap, per split.
        scale: `trainer.feature_scale` of the training targets: the unit of
            every reported feature MSE.
    """

    def __init__(
        self, teacher, train_views, eval_views, labels=None, batch_size=64,
        cuts=(), cache_bytes=None, held_out=False,
    ):
        self.teacher = teacher
        self.held_out = held_out
        self.views = {"train": train_views, "eval": eval_views}
        self.labels = (
            {"train": labels[0], "eval": labels[1]} if labels is not None else None
        )
        self.batch_size = batch_size
        self.cache_bytes = CACHE_BYTES if cache_bytes is None else cache_bytes
        self.tap = taps.feature_tap(teacher)
        self._input = flat_graph.FlatGraph(teacher).inputs[0]
        self._plan = []
        for cut in cuts:
            if self.start_of(cut) is cut and all(cut is not c for c in self._plan):
                self._plan.append(cut)
        self._prefix = {}
        self._outputs = {}
        self._runner = None
        self._released = False
        self.targets = {}
        for split in self.views:
            group = self._reserve(None, split)
            outputs = self._run([self.tap] + group, split)
            self.targets[split] = outputs[0]
            self._store(group, outputs[1:], split)
        for split, features in self.targets.items():
            if not np.isfinite(features).all():
                raise ValueError(
                    "The model's features on the tiny set must be finite to "
                    f"mimic them. Received: {int((~np.isfinite(features)).sum())} "
                    f"NaN or infinite values at '{flat_graph.tensor_key(self.tap)}' "
                    f"on the {split} views (check the model's weights and the "
                    "images' range)."
                )
        # Feature MSEs are reported in units of the teacher's own feature
        # variance, so scores do not depend on the model's feature scale.
        self.scale = trainer.feature_scale(self.targets["train"])

    def start_of(self, cut):
        """Where a student that could start at `cut` starts: `cut`, or the
        model's input when the activations there do not fit `cache_bytes`.
        """
        if cut is self._input:
            return cut
        fits = sum(self._bytes(cut, split) for split in self.views) <= self.cache_bytes
        return cut if fits else self._input

    @property
    def held_bytes(self):
        """Memory the bank holds or may hold: its views and tap features, and
        `cache_bytes` for cut activations until `release`."""
        arrays = [*self.views.values(), *self.targets.values()]
        # Without augmentation the training views are the evaluation views.
        data = sum({id(a): a.nbytes for a in arrays}.values())
        return data + (0 if self._released else self.cache_bytes)

    def prefix(self, cut, split):
        """The teacher's activations at `cut` for the `split` views."""
        if cut is self._input:
            return self.views[split]
        key = (flat_graph.tensor_key(cut), split)
        if key not in self._prefix:
            group = self._reserve(cut, split)
            self._store(group, self._run(group, split), split)
        return self._prefix[key]

    def _run(self, tensors, split):
        """The teacher's activations at `tensors` on the `split` views."""
        if not tensors:
            return []
        # The splits usually ask for the same tensors: one model serves all.
        keys = tuple(flat_graph.tensor_key(t) for t in tensors)
        if self._runner is None or self._runner[0] != keys:
            self._runner = (keys, taps.tap_model(self.teacher, tensors))
        return inference.activations(self._runner[1], self.views[split], self.batch_size)

    def _reserve(self, cut, split):
        """Makes room for `cut` and returns the cuts to compute with it.

        Those are `cut` and the planned cuts after it (from the first with
        `cut=None`) not yet cached, as many as fit beside what stays cached;
        the cache is emptied when `cut` alone does not fit beside it.
        """
        keys = [flat_graph.tensor_key(c) for c in self._plan]
        if cut is None:
            group, after = [], self._plan
        else:
            key = flat_graph.tensor_key(cut)
            group = [cut]
            after = self._plan[keys.index(key) + 1 :] if key in keys else []
        size = sum(self._bytes(c, split) for c in group)
        if self._cached_bytes() + size > self.cache_bytes:
            self._prefix = {}
        size += self._cached_bytes()
        for planned in after:
            if (flat_graph.tensor_key(planned), split) in self._prefix:
                continue
            size += self._bytes(planned, split)
            if size > self.cache_bytes:
                break
            group.append(planned)
        return group

    def _bytes(self, cut, split):
        """Memory of the activations at `cut` on the `split` views (float32)."""
        dims = tuple(cut.shape[1:])
        if any(d is None for d in dims):
            return math.inf
        return len(self.views[split]) * math.prod(dims) * 4

    def _cached_bytes(self):
        return sum(a.nbytes for a in self._prefix.values())

    def _store(self, tensors, activations, split):
        for tensor, value in zip(tensors, activations):
            self._prefix[(flat_graph.tensor_key(tensor), split)] = value

    def outputs(self, split):
        """The teacher's outputs (logits or probabilities) on the `split` views."""
        if split not in self._outputs:
            self._outputs[split] = inference.predict(self.teacher, self.views[split])
        return self._outputs[split]

    def release(self):
        """Frees the cached prefix activations (recovery needs none of them)."""
        self._prefix = {}
        self._runner = None
        self._released = True


@backend.fused_kernels()
def build_bank(model, tiny, batch_size=64, cuts=(), memory=None):
    """Draws the tiny set, makes its views and the teacher's features.

    Args:
        model: The teacher.
        tiny: A `views.TinySetSpec`, or anything `data.load_tiny_set`
            accepts (a `TinySet` too), drawn with the spec's defaults. With
            its `validation_split` or `fold`, the evaluation views are the
            held-out images (`views.split_tiny_set`) and the training views
            come from the others.
        batch_size: Batch size of the teacher's forward passes.
        cuts: Tensors of `model`'s graph whose activations will be asked for
            (see `FeatureBank`).
        memory: A `memory.MemoryPlan`: unless the spec sets
            `augment_views`, fewer views per image are made when the
            default number does not fit its views' share, and its
            `cache_bytes` bound the cached cut activations. Defaults to the
            default budget.

    Returns:
        A tuple `(bank, tiny_set)`; `tiny_set` is the whole draw.

    Raises:
        ValueError: If one view per image does not fit `memory`.
    """
    if not isinstance(tiny, views_lib.TinySetSpec):
        tiny = views_lib.TinySetSpec(tiny)
    size = input_size.model_image_size(model, tiny.image_size)
    tiny_set = tiny.load(model)
    channels = flat_graph.input_shape(model)[-1]
    fit_set, held_set = views_lib.split_tiny_set(
        tiny_set, tiny.validation_split, tiny.seed, fold=tiny.fold
    )
    memory = memory or memory_lib.MemoryPlan()
    augment_views = tiny.augment_views
    if augment_views is None:
        fit_count = len(fit_set.images)
        view_bytes = 4 * (
            math.prod(size) * tiny_set.images.shape[-1]
            + math.prod(taps.feature_tap(model).shape[1:])
        )
        augment_views = memory.views_per_image(
            fit_count, view_bytes, views_lib.default_augment_views(fit_count),
            held_images=0 if held_set is None else len(held_set.images),
        )
    train_views, eval_views, labels = views_lib.prepare_views(
        fit_set, size, augment_views, tiny.seed, channels
    )
    if held_set is not None:
        _, eval_views, held_labels = views_lib.prepare_views(
            held_set, size, augment_views=0
        )
        if labels is not None:
            labels = (labels[0], held_labels[1])
    bank = FeatureBank(
        model, train_views, eval_views, labels, batch_size, cuts,
        cache_bytes=memory.cache_bytes, held_out=held_set is not None,
    )
    # The teacher's passes freed far more than the bank keeps.
    memory_lib.release_freed()
    return bank, tiny_set
