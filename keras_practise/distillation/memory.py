"""How much memory a compression may take, and how it is shared out.

`compress(memory_budget=...)` bounds what the library holds beyond the
framework itself (about 1 GB resident for TensorFlow, torch or JAX with
Keras): the tiny set's training and evaluation views with the teacher's
features at the tap (the feature bank), the teacher's activations cached
at the cuts where students start, and what a training step keeps for its
backward pass. A `MemoryPlan` shares the budget out:

* views and tap features get at most `VIEW_SHARE` of it: a larger tiny set
  or image size gets fewer augmented views per image
  (`MemoryPlan.views_per_image`);
* cached cut activations get at most `CACHE_SHARE`: a student whose cut
  does not fit starts from the images instead and runs the frozen prefix
  in every step (`FeatureBank.start_of`);
* training gets the rest: a batch whose activations do not fit is split
  into equal micro-batches whose gradients are averaged before the
  optimizer steps (Keras' `gradient_accumulation_steps`), so a step still
  sees `batch_size` samples (`accumulation_steps`). Only BatchNorm layers
  that train see smaller batches. The switched students of a greedy choice
  (`selection.switched.StudentPool`) keep their adaptors and optimizer
  state between trainings: their `held_bytes` come off the training share.

What the plan cannot see is what the framework keeps once a pass has run.
glibc keeps freed memory in the process's heap (1.7-2.3 GiB on torch after
each ResNet-50 candidate training): `release_freed` returns it after the
bank and after every training, so the process is smaller between
trainings; later trainings had reused it, so it did not lower a call's
peak. On TensorFlow, oneDNN's kernels and buffers for
every layer shape stay live (1.3 GiB after the teacher's passes over 1,650
views of ResNet-50 at 128 px, gone with `TF_ENABLE_ONEDNN_OPTS=0`), and
more the first time each stage's student trains. A ResNet-50 call at 128
px peaked 1.5 GiB above its budget on TensorFlow (0.6 without oneDNN;
docs/results.md, "Memory").

The training estimate is measured, not derived: the resident memory a
training step added grew by 1.0-1.23 times the float32 size of the layer
outputs after the first trainable layer, per sample, for MobileNetV2 and
ResNet-50 at 224 px trained whole on TensorFlow, torch and JAX, and by up
to 1.44 times for ResNet-50's adaptor students on torch (`backend.
training_memory`). `benchmarks/memory.py` measures whole calls.
"""

import ctypes
import ctypes.util
import functools
import gc
import math
import weakref

from keras_practise import backend
from keras_practise.graph import flat_graph

GIB = 2**30
# Bounds the views, features and training of one `compress()` call; the
# framework (about 1 GB) comes on top, so a default call peaks near 5 GB.
DEFAULT_BUDGET_GIB = 4.0
VIEW_SHARE = 0.4
CACHE_SHARE = 0.25
# An inference pass outside a compiled graph (Keras' eager call on every
# backend, Keras' predict on torch) keeps every layer's output until it
# returns: 5 GB for 64 views of MobileNetV2 at 224 px. Its batches are
# sized to keep that under this.
INFERENCE_BYTES = 2**29
# Training steps planned at least this large collect garbage first
# (`collect_before_training`).
LARGE_STEP_BYTES = 2**30
# What a compiled SGD step keeps of each trainable weight between runs
# besides the weight itself: its momentum and Keras' gradient accumulator
# (float32).
STATE_BYTES_PER_PARAM = 8
_OUTPUT_BYTES = weakref.WeakKeyDictionary()


def release_freed():
    """Returns the heap pages the process has freed to the system.

    glibc keeps what a process frees in its heap for later allocations: on
    torch (whose CPU tensors come straight from `malloc`) the resident
    memory of a ResNet-50 greedy choice at 128 px stayed 1.7-2.3 GiB above
    what was live after the bank and after each candidate training, and
    `malloc_trim` returned all of it (in milliseconds). Called after each
    of those: the process holds less between trainings, though the call's
    peak did not fall (later trainings had reused that memory). Does nothing where the C library has no
    `malloc_trim` (macOS, Windows, musl).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def collect_before_training(model, batch_size):
    """Frees unreachable models before a large training step is planned.

    A Keras model is a web of references (layers, nodes, traced functions)
    that only Python's cycle collector frees. On torch, where every
    candidate block gets a student of its own, the discarded students of a
    ResNet-50 greedy choice at 128 px waited for it: resident memory crept
    up by about 0.2 GiB per candidate, up to 1.9 GiB, before it ran. A
    collection costs 0.4-0.9 s in such a process, so it runs only when a
    training step of `model` at `batch_size` plans at least
    `LARGE_STEP_BYTES` (`activation_bytes`); small models never pay it.

    Args:
        model: The model whose students are about to train.
        batch_size: The training batch size.
    """
    per_sample = activation_bytes(model)
    if per_sample is not None and per_sample * batch_size >= LARGE_STEP_BYTES:
        gc.collect()
        release_freed()


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def check_budget(memory_budget):
    """Raises unless `memory_budget` is `None` or a positive number of GiB."""
    if memory_budget is None:
        return
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)):
        raise TypeError(
            "`memory_budget` must be a number of GiB or None. Received: "
            f"memory_budget={memory_budget!r} of type {type(memory_budget).__name__}"
        )
    if not (memory_budget > 0 and math.isfinite(memory_budget)):
        raise ValueError(
            "`memory_budget` must be a positive number of GiB. Received: "
            f"memory_budget={memory_budget!r}"
        )


class MemoryPlan:
    """Shares a memory budget between views, cached cuts and training.

    Args:
        budget_gib: The budget in GiB, or `None` for no bound (every view
            the defaults ask for, every cut cached, whole batches).

    Raises:
        TypeError: If `budget_gib` is not a number.
        ValueError: If it is not positive.

    Example:

    ```python
    plan = MemoryPlan(2.0)
    plan.cache_bytes  # 0.5 GiB for cached cut activations.
    ```
    """

    def __init__(self, budget_gib=DEFAULT_BUDGET_GIB):
        check_budget(budget_gib)
        self.budget_gib = budget_gib
        self.budget = None if budget_gib is None else int(budget_gib * GIB)

    @property
    def cache_bytes(self):
        """Memory for the teacher's activations cached at cuts."""
        return math.inf if self.budget is None else int(CACHE_SHARE * self.budget)

    def views_per_image(self, fit_images, view_bytes, wanted, held_images=0):
        """Augmented training views per image that fit the views' share.

        Args:
            fit_images: Images the training views are made from.
            view_bytes: Bytes of one view with its tap features.
            wanted: Views per image asked for (the default).
            held_images: Images held out from training, whose views are the
                evaluation views; `0`: the evaluation views are one view
                of each training image.

        Returns:
            `wanted`, or fewer (at least 1; `0` when only the evaluation
            views fit and they are of the training images).

        Raises:
            ValueError: If even one view per image does not fit.
        """
        if self.budget is None:
            return wanted
        eval_images = held_images or fit_images
        room = VIEW_SHARE * self.budget - eval_images * view_bytes
        fit = math.floor(room / (fit_images * view_bytes)) if room > 0 else 0
        if fit >= 1:
            return min(wanted, fit)
        if room >= 0 and not held_images:
            return 0  # Train on the evaluation views themselves.
        need = (fit_images + eval_images) * view_bytes / VIEW_SHARE / GIB
        raise ValueError(
            f"memory_budget={self.budget_gib} GiB cannot hold the tiny set's "
            f"views: {fit_images} training and {eval_images} evaluation "
            f"images take {view_bytes / 2**20:.2f} MiB each as views with the "
            f"model's features, and views may take {VIEW_SHARE:.0%} of the "
            f"budget. Pass memory_budget={math.ceil(need)} or more, or fewer "
            "images (`num_samples`)."
        )

    def beside(self, held):
        """The plan of what the budget leaves beside `held` bytes, for a
        second bank built while the first is kept (cross-fitted auditions)."""
        if self.budget is None:
            return MemoryPlan(None)
        return MemoryPlan(max(self.budget - held, 1) / GIB)

    def training_bytes(self, held):
        """Memory left for training activations beside `held` bytes."""
        if self.budget is None:
            return None
        return max(0, self.budget - held)


def activation_bytes(model):
    """Estimated bytes a training step of `model` keeps per sample.

    The float32 size of every layer output from the first layer with
    trainable weights on (nothing before it needs a gradient), times
    the backend's measured factor (`backend.training_memory`).

    Returns:
        A number of bytes, `0` when nothing trains, or `None` when a
        layer's output size is not known (a dynamic input size).
    """
    graph = flat_graph.FlatGraph(model)
    first = next(
        (i for i, node in enumerate(graph.nodes) if node.layer.trainable_weights),
        None,
    )
    if first is None:
        return 0
    elements = elements_per_sample(_outputs(graph.nodes[first:]))
    if elements is None:
        return None
    factor, _ = backend.training_memory()
    return int(elements * 4 * factor)


def _outputs(nodes):
    return [output for node in nodes for output in node.outputs]


def elements_per_sample(tensors):
    """Elements per sample of symbolic `tensors` (`None` when a size is not
    known, e.g. a dynamic input size)."""
    shapes = [tuple(t.shape[1:]) for t in tensors]
    if any(d is None for shape in shapes for d in shape):
        return None
    return sum(math.prod(shape) for shape in shapes)


def inference_batch(model, batch_size):
    """The batch size of an inference pass of `model`: at most `batch_size`,
    and small enough that all its layer outputs take `INFERENCE_BYTES`."""
    if model not in _OUTPUT_BYTES:
        elements = elements_per_sample(_outputs(flat_graph.FlatGraph(model).nodes))
        _OUTPUT_BYTES[model] = 0 if elements is None else 4 * elements
    per_sample = _OUTPUT_BYTES[model]
    if not per_sample:
        return batch_size
    return max(1, min(batch_size, INFERENCE_BYTES // per_sample))


def accumulation_steps(model, batch_size, memory):
    """Micro-batches per optimizer step for `model`'s training to fit `memory`.

    Args:
        model: The model about to train (its trainable flags set).
        batch_size: Samples per optimizer step.
        memory: Bytes the step may take (`MemoryPlan.training_bytes`), or
            `None` for no bound.

    Returns:
        The smallest divisor `k` of `batch_size` whose micro-batches of
        `batch_size // k` samples fit, or `batch_size` (micro-batches of
        one sample) when none does.
    """
    if memory is None or batch_size <= 1:
        return 1
    per_sample = activation_bytes(model)
    if not per_sample:
        return 1
    _, fixed = backend.training_memory()
    # Weights, gradients, momenta and accumulators: four float32 copies.
    fixed += 16 * sum(math.prod(w.shape) for w in model.trainable_weights)
    for steps in range(1, batch_size + 1):
        if batch_size % steps == 0 and fixed + per_sample * batch_size // steps <= memory:
            return steps
    return batch_size

