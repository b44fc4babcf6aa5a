"""What a compression scheme is to `compress()`, and the job it is given.

`compress()` checks the settings every scheme shares, builds the tiny-set
specification and hands a scheme a `Job`; the scheme returns an `Outcome`
(the working teacher, the compressed model at the working size, its report
and a few held-out views); `compress()` then runs the tail every scheme
shares: the user's input signature back, latency before/after, export.
"""

import contextlib
import dataclasses
import time

from keras_practise.data import views as views_lib
from keras_practise.distillation import memory as memory_lib
from keras_practise.distillation import trainer


@dataclasses.dataclass(frozen=True)
class Job:
    """The checked settings a scheme runs with.

    Attributes:
        tiny: A `views.TinySetSpec` (its `data` is `None` for data-free runs).
        method: The recovery recipe, one of the scheme's `methods`.
        steps: Training steps per candidate (blocks) or per layer.
        finetune_steps: Steps of the whole-network recovery.
        batch_size: Batch size, or `None` for `min(64, number of views)`.
        seed: Seed of the draw, augmentation and training.
        verbose: 0 silent, 1 progress.
        callbacks: Keras callbacks for every training `fit`.
        options: The scheme's own options (its registry `Option`s), with
            defaults filled in.
        settings: The shared arguments of `compress()` that shaped the run,
            by name, for the report.
        scheme: The scheme's registry name.
        memory: The `memory.MemoryPlan` of the call.
    """

    tiny: object
    method: str
    steps: int
    finetune_steps: int
    batch_size: int
    seed: int
    verbose: int
    callbacks: list
    options: dict
    settings: dict
    scheme: str
    memory: memory_lib.MemoryPlan = memory_lib.MemoryPlan()

    def train_config(self, steps, verbose=0, bank=None, **overrides):
        """A `trainer.TrainConfig` of `steps` with the job's shared settings.

        With the `feature_bank.FeatureBank` the training runs beside, its
        steps take at most the memory the bank leaves of the budget.
        """
        if bank is not None:
            overrides["activation_memory"] = self.memory.training_bytes(
                bank.held_bytes
            )
        return trainer.TrainConfig(
            steps=steps, batch_size=self.batch_size, seed=self.seed,
            verbose=verbose, callbacks=self.callbacks, **overrides,
        )

    def held_out_views(self, tiny_set, size, seed_offset=0, fold=None):
        """Views of `tiny_set` that no training step saw, to judge by.

        Crops of the images `validation_split` (or `fold`, an `(index,
        folds)` of `views.split_tiny_set`) held out whole, or of every
        image without either (`views.held_out_views`), drawn with the job's
        seed plus `seed_offset` (a choice made on one draw is then judged
        on another).

        Returns:
            A tuple `(views, labels)`; `labels` is `None` when unlabelled.
        """
        _, held_set = views_lib.split_tiny_set(
            tiny_set, self.tiny.validation_split, self.seed, fold=fold
        )
        return views_lib.held_out_views(
            held_set or tiny_set, size, seed=self.seed + seed_offset
        )


@dataclasses.dataclass
class Outcome:
    """What a scheme hands back to `compress()`.

    Attributes:
        teacher: The working copy of the model (fixed input size) that the
            "before" figures are measured on.
        compressed: The compressed model at the working size.
        report: The scheme's report; `compress()` fills its `fidelity`,
            `latency_ms`, `latency_reduction`, `latency_batch_size`,
            `device`, `phase_seconds`, `exported` and `int8_latency`.
        sample: Views of the tiny set to check an exported file on.
        tiny_set: The `TinySet` the scheme worked from (held-out views of
            it judge the result).
    """

    teacher: object
    compressed: object
    report: object
    sample: object
    tiny_set: object


@dataclasses.dataclass(frozen=True)
class Scheme:
    """A compression scheme `compress()` can dispatch to.

    Attributes:
        methods: The recovery recipes it accepts; the first is its default.
        needs_data: Whether it needs a tiny set (block dropping can
            synthesise one).
        check: Callable `(options) -> None` raising on bad options, run
            before the model is copied or any data is loaded.
        run: Callable `(model, job, phases) -> Outcome`; `phases` is a dict
            it records wall time per phase in. It must not modify `model`.
        min_steps: The smallest `steps` it accepts (`0`: fold untrained).
        knob: For a layer-wise scheme, the `layerwise.Knob` it turns to meet
            a `latency_target` (`None` when it cannot).
    """

    methods: tuple
    needs_data: bool
    check: object
    run: object
    min_steps: int = 1
    knob: object = None


def int8_latency_line(int8_latency):
    """The report line of `compress(..., quantize="int8")`'s runtime latency.

    Args:
        int8_latency: The report's `int8_latency` dict (`runtime`,
            `batch_size`, `runs`, `float_ms`, `int8_ms`, `ratio`).

    Returns:
        One line of text, e.g. `int8 file in onnxruntime (batch 8, 30
        interleaved runs): float 2.10 ms -> int8 1.60 ms (0.762x)`.
    """
    entry = int8_latency
    return (
        f"int8 file in {entry['runtime']} (batch {entry['batch_size']}, "
        f"{entry['runs']} interleaved runs): float {entry['float_ms']:.2f} ms "
        f"-> int8 {entry['int8_ms']:.2f} ms ({entry['ratio']:.3f}x)"
    )


@contextlib.contextmanager
def timed(phases, name):
    """Records the wall time of the `with` body as `phases[name]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = time.perf_counter() - start
