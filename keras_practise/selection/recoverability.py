"""Recoverability: how well a network recovers when one block is dropped.

For each candidate block alone: drop it, insert adaptors around the hole,
train only the adaptors (everything else frozen, BatchNorm in inference mode)
so that the pruned network's last feature map mimics the teacher's, and
measure the remaining feature MSE on the tiny set's evaluation views. The
block's score is that MSE divided by the latency saved by dropping it; the
lowest scores are the best blocks to drop.

MSEs are relative: divided by the teacher's feature variance at the tap
(`FeatureBank.scale`), so they do not depend on the model's feature scale.
A candidate's MSE is never worse than with identity adaptors: a run that
diverges or ends above the identity MSE is retried with a smaller step and
finally replaced by the identity adaptors (`BlockScore.status` says so). A
candidate whose score is still not a finite number is ranked last, with a
warning.

Only the part of the network after the first changed layer is trained and
run: its input, the teacher's activation at the last main-path cut before
the hole's adaptors, is computed once per cut and shared by every candidate
behind it, and the teacher's targets are computed once for all candidates.
Short trainings (`switched.MAX_STEPS`) run on a few switched students
(`switched.StudentPool`, one per stage), each built and traced once for
every set it serves.
"""

import dataclasses
import math
import time
import warnings

from keras_practise import backend
from keras_practise.data import views
from keras_practise.distillation import adaptors as adaptors_lib
from keras_practise.distillation import feature_bank
from keras_practise.distillation import inference
from keras_practise.distillation import memory as memory_lib
from keras_practise.distillation import trainer as finetune
from keras_practise.graph import candidates as candidates_lib
from keras_practise.graph import taps
from keras_practise.profiling import runtime_latency
from keras_practise.selection import savings as savings_lib
from keras_practise.selection import switched
from keras_practise.utils import progress
from keras_practise.utils import text_table
from keras_practise.utils import validation


@dataclasses.dataclass
class BlockScore:
    """Recoverability of one candidate block.

    Attributes:
        block: The block's name.
        label: Its `stage.position` label.
        mse: Feature MSE after adaptor training (lower recovers better), in
            units of the teacher's feature variance; at most `initial_mse`.
        initial_mse: Feature MSE right after dropping, before training.
        latency_reduction: Fraction of the original latency (or MACs, see
            `latency_source`) saved by dropping this block alone.
        latency_source: `"measured"` or `"macs"`.
        score: `mse / latency_reduction`; lower is better.
        params: Parameters of the block.
        seconds: Wall time of this candidate's adaptor training.
        adaptors: Number of adaptors trained.
        status: `"ok"`; `"lr <rate>"` when training only succeeded after
            retries at a smaller learning rate; `"identity"` when no run
            beat the identity adaptors (so `mse == initial_mse`);
            `"failed"` when the score is not a finite number.
    """

    block: str
    label: str
    mse: float
    initial_mse: float
    latency_reduction: float
    latency_source: str
    score: float
    params: int
    seconds: float
    adaptors: int
    status: str = "ok"

    @property
    def finite(self):
        """Whether the score is a finite number (else it is ranked last)."""
        return math.isfinite(self.score)


class RecoverabilityReport(list):
    """A list of `BlockScore`s in network order, printable as a table."""

    def best(self, k):
        """The `k` blocks with the lowest score, best first.

        Scores that are not finite come last, in network order.
        """
        order = sorted(
            range(len(self)),
            key=lambda i: (not self[i].finite, self[i].score if self[i].finite else i),
        )
        return [self[i] for i in order[:k]]

    def table(self):
        """Formats the scores as a text table."""
        rows = [
            (
                "block", "label", "mse(init)", "mse", "latency cut", "score",
                "rank", "note",
            )
        ]
        ranks = {id(s): i + 1 for i, s in enumerate(self.best(len(self)))}
        for s in self:
            rows.append(
                (
                    s.block,
                    s.label,
                    f"{s.initial_mse:.4g}",
                    f"{s.mse:.4g}",
                    f"{100 * s.latency_reduction:.2f}% ({s.latency_source})",
                    f"{s.score:.4g}",
                    str(ranks[id(s)]),
                    "" if s.status == "ok" else s.status,
                )
            )
        return text_table.format_table(rows)

    def __str__(self):
        return self.table()


def latency_reductions(model, candidates, source="measured", batch_size=8, runs=20):
    """Fraction of latency (or MACs) saved by dropping each candidate alone.

    Measured latencies are taken interleaved (original, each pruned model,
    original, ...) so that the ratios hold on a noisy machine.

    Args:
        model: The original model.
        candidates: `Block`s of `model`.
        source: `"measured"` (wall-clock in Keras on the active device),
            `"macs"`, a runtime (`"onnxruntime"`, `"litert"`, `"openvino"`:
            each model exported once and timed there) or a callable
            `f(model) -> milliseconds`.
        batch_size: Batch size of the latency measurement.
        runs: Timed runs per model.

    Returns:
        A list of reductions, one per candidate, each at least 1e-4 (a block
        that saves nothing measurable gets a very high score, not a division
        by zero).
    """
    values = savings_lib.savings(
        model, [[b] for b in candidates], source, batch_size, runs
    )
    return [max(v, 1e-4) for v in values]


@dataclasses.dataclass
class Trial:
    """The outcome of training the adaptors of one set of dropped blocks.

    Attributes:
        mse: Relative feature MSE after training (at most `initial_mse`).
        initial_mse: Relative feature MSE with identity adaptors.
        seconds: Wall time of the training.
        adaptors: Number of adaptors.
        status: See `BlockScore.status`.
    """

    mse: float
    initial_mse: float
    seconds: float
    adaptors: int
    status: str


def student_cut(model, blocks):
    """Where the trainable part of `model` without `blocks` begins.

    Args:
        model: The original model.
        blocks: The `Block`s dropped together.

    Returns:
        A tuple `(sites, cut)`: the adaptor sites of the hole and the
        tensor of `model`'s graph at the last main-path cut before the first
        changed layer (the student's input).
    """
    sites = adaptors_lib.find_sites(model, blocks)
    changed = [s.conv for s in sites] + [n for b in blocks for n in b.layer_names]
    return sites, taps.frozen_prefix_cut(model, changed)


def adaptor_student(model, blocks, output, start_of=None, found=None):
    """The student whose feature MSE scores `blocks` dropped together.

    `model` from the set's `student_cut` to `output`, the blocks replaced by
    identity adaptors (`adaptors.insert_adaptors`), the adaptors its only
    trainable weights.

    Args:
        model: The original model (not modified).
        blocks: The `Block`s dropped together.
        output: The tensor of `model`'s graph the student ends at (a feature
            tap).
        start_of: Optional callable mapping the cut to where the student
            starts (`FeatureBank.start_of`). Defaults to the cut itself.
        found: Optional `student_cut(model, blocks)`, if already computed.

    Returns:
        A tuple `(student, sites, start)`: the student, its adaptor `Site`s
        and the tensor of `model`'s graph it starts at.
    """
    sites, cut = found or student_cut(model, blocks)
    start = start_of(cut) if start_of is not None else cut
    student, sites = adaptors_lib.insert_adaptors(
        model, blocks, sites, outputs=[output], start=start
    )
    finetune.set_trainable(student, "adaptors", [s.adaptor_name for s in sites])
    return student, sites, start


def candidate_cuts(model, candidates):
    """The `student_cut` of each candidate dropped alone, in order.

    A set of dropped blocks starts at the cut of its earliest block, so
    these are all the cuts scoring `candidates` (alone or in sets) needs.
    """
    return [student_cut(model, [block])[1] for block in candidates]


def score_block(model, blocks, bank, config, pool=None):
    """Trains the adaptors of dropped blocks and measures the feature MSE.

    Args:
        model: The original model (not modified).
        blocks: The candidate `Block`, or a list of `Block`s dropped
            together.
        bank: A `feature_bank.FeatureBank` built on `model`.
        config: A `finetune.TrainConfig` for the adaptor training.
        pool: Optional `switched.StudentPool` of `model`'s candidates and
            `config`: the set is trained on its switched student, whose
            train step is traced once for every set (see `switched`), when
            it has one for the set. Every set, on a student of the pool or
            its own, trains with `pool.config` (the memory left beside the
            pool's students).

    Returns:
        A `Trial`. Its MSEs are divided by `bank.scale`.
    """
    blocks = list(blocks) if isinstance(blocks, (list, tuple)) else [blocks]
    if pool is not None:
        config = pool.config
    found = student_cut(model, blocks)
    sites = found[0]
    shared = pool.student(blocks, sites) if pool is not None else None
    if shared is not None:
        shared.switch(blocks, sites)
        student, cut, compiled = shared.model, shared.start, shared.compiled
    else:
        # The last set's student is garbage now: free it before this one.
        batch_size, _ = finetune.batching(model, config, len(bank.views["train"]))
        memory_lib.collect_before_training(model, batch_size)
        student, sites, cut = adaptor_student(
            model, blocks, bank.tap, bank.start_of, found
        )
        compiled = None
    eval_x = bank.prefix(cut, "eval")

    def evaluate():
        return inference.feature_mse(
            student, eval_x, bank.targets["eval"], scale=bank.scale,
            infer=None if compiled is None else compiled.infer,
        )

    initial = evaluate()
    start = time.perf_counter()
    mse, status = initial, "ok"
    if sites and math.isfinite(initial):
        outcome = {}

        def accept():
            # Never worse than doing nothing: a run that ends above the
            # identity adaptors' MSE is undone and retried.
            outcome["mse"] = evaluate()
            return outcome["mse"] <= initial

        # Retries are reported in the table's note, not as warnings.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", finetune.RetryWarning)
            try:
                finetune.fit(
                    student, bank.prefix(cut, "train"), [bank.targets["train"]],
                    ["mse"], config, accept=accept, normalize=True,
                    compiled=compiled,
                )
                mse = outcome["mse"]
            except finetune.TrainingDiverged:
                status = "identity"
        retries = [w for w in caught if w.category is finetune.RetryWarning]
        for w in caught:
            if w.category is not finetune.RetryWarning:
                warnings.warn(w.message, w.category, stacklevel=2)
        if retries and status == "ok":
            status = f"lr {config.learning_rate / 10 ** len(retries):g}"
    seconds = time.perf_counter() - start
    if not math.isfinite(mse):
        status = "failed"
    return Trial(mse, initial, seconds, len(sites), status)


def dropped_mse(model, blocks, bank):
    """Relative feature MSE right after dropping `blocks` together.

    No training: the identity adaptors' MSE on the bank's evaluation views,
    in units of `bank.scale` (`Trial.initial_mse` of the set, without the
    adaptor training). One forward pass of the suffix after the set's cut.

    Args:
        model: The original model (not modified).
        blocks: `Block`s of `model` dropped together.
        bank: A `feature_bank.FeatureBank` built on `model`, not released.

    Returns:
        The MSE, a float (`inf` or `nan` when the features are not finite).
    """
    student, _, cut = adaptor_student(model, list(blocks), bank.tap, bank.start_of)
    return inference.feature_mse(
        student, bank.prefix(cut, "eval"), bank.targets["eval"], scale=bank.scale
    )


def student_pool(model, candidates, bank, config):
    """The `switched.StudentPool` that scores sets of `candidates`.

    Args:
        model: The original model.
        candidates: The candidate `Block`s, in network order.
        bank: A `feature_bank.FeatureBank` built on `model`.
        config: The `finetune.TrainConfig` of every adaptor training.

    Returns:
        A `switched.StudentPool`: pass it to `score_block(s)` so that every
        set is trained on one of a few students traced once.
    """
    return switched.StudentPool(
        model, candidates, bank, config,
        lambda block: bank.start_of(student_cut(model, [block])[1]),
    )


def score_blocks(model, candidates, bank, config, latency="measured", verbose=1,
                 reductions=None, dropped=(), pool=None):
    """Scores `candidates` (see `recoverability`) on a prepared feature bank.

    Args:
        model: The original model.
        candidates: `Block`s to score.
        bank: A `feature_bank.FeatureBank` built on `model`.
        config: A `finetune.TrainConfig` for the adaptor training.
        latency: `"measured"` or `"macs"` (ignored when `reductions` are
            given).
        verbose: 0 silent, 1 progress bar.
        reductions: Optional latency reductions of the candidates (from
            `latency_reductions`), to avoid measuring them again.
        dropped: `Block`s already dropped: each candidate is scored dropped
            together with them (conditional recoverability), its MSE being
            that of the whole set.
        pool: Optional `StudentPool` (`student_pool`) to train the sets
            on (pass one of every candidate when `dropped` are not among
            `candidates`, as `block_sets.choose_blocks` does). Defaults to
            one of `candidates` when `switched.pays_off(config)`, else a
            student per set.

    Returns:
        A `RecoverabilityReport`. A candidate whose score is not finite is
        ranked last and named in a warning.
    """
    if reductions is None:
        reductions = latency_reductions(model, candidates, latency)
    if pool is None and switched.pays_off(config):
        pool = student_pool(model, candidates, bank, config)
    report = RecoverabilityReport()
    progbar = progress.progbar(len(candidates), verbose, unit_name="block")
    for i, (block, reduction) in enumerate(zip(candidates, reductions)):
        trial = score_block(model, list(dropped) + [block], bank, config, pool)
        report.append(
            BlockScore(
                block=block.name,
                label=block.label,
                mse=trial.mse,
                initial_mse=trial.initial_mse,
                latency_reduction=reduction,
                latency_source=runtime_latency.describe(latency),
                score=trial.mse / reduction,
                params=block.param_count,
                seconds=trial.seconds,
                adaptors=trial.adaptors,
                status=trial.status,
            )
        )
        progbar.update(i + 1, [("mse", trial.mse)])
    for score in report:
        if score.status == "identity":
            warnings.warn(
                f"Adaptor training for block {score.block} ({score.label}) "
                "diverged or ended above its starting MSE at every learning "
                f"rate tried (from {config.learning_rate:g}, {config.retries} "
                "retries); its score uses identity adaptors.",
                stacklevel=2,
            )
        if not score.finite:
            warnings.warn(
                f"The recoverability of block {score.block} ({score.label}) is "
                f"not a finite number (mse={score.mse}); it is ranked last and "
                "chosen only when no other block is left.",
                stacklevel=2,
            )
    return report


@backend.fused_kernels()
def recoverability(
    model,
    data,
    blocks=None,
    steps=200,
    batch_size=None,
    num_samples=None,
    seed=0,
    latency="measured",
    image_size=None,
    augment_views=None,
    verbose=1,
    callbacks=None,
    validation_split=0.0,
    memory_budget=memory_lib.DEFAULT_BUDGET_GIB,
):
    """Scores each candidate block by how well the network recovers without it.

    Args:
        model: A trained Functional or Sequential `keras.Model` (not modified).
        data: The tiny set: anything `keras_practise.data.load_tiny_set`
            accepts (arrays, `tf.data`, `PyDataset`, torch `DataLoader`, an
            image folder, a tensorflow-datasets name), or a `TinySet`.
        blocks: Candidates to score (names, labels or `Block`s). Defaults to
            every droppable block.
        steps: Optimizer steps of adaptor training per candidate. The
            authors use 1000-2000 on a GPU. Defaults to `200`.
        batch_size: Batch size. Defaults to `min(64, number of views)`.
        num_samples: Number of images drawn from `data`. Defaults to all.
        seed: Seed of the tiny-set draw, the augmentation and batch order.
        latency: `"measured"` (wall-clock latency in Keras on the active
            device), `"macs"` (a MACs-based estimate), a runtime the model
            will be deployed on (`"onnxruntime"`, `"litert"`, `"openvino"`:
            each candidate-dropped model is exported once and timed there,
            interleaved with the original), or a callable `f(model) ->
            milliseconds` for any other device. Defaults to `"measured"`.
        image_size: Input size `(height, width)` for models with a dynamic
            input shape.
        augment_views: Augmented views per image in the training bank.
            Defaults to enough for about 2048 views (at most 32 per image).
        verbose: 0 silent, 1 progress bar over blocks.
        callbacks: Keras callbacks passed to each candidate's adaptor
            `fit` (e.g. `keras.callbacks.CSVLogger`).
        validation_split: Fraction of the images held out whole from the
            adaptor training; the scores are then measured on those images
            (see `compress`).
        memory_budget: GiB the views, the teacher's features and the
            adaptor training may take (see `compress`).

    Returns:
        A `RecoverabilityReport`: a list of `BlockScore`s in network order;
        `print(report)` shows the table (its note column marks retried,
        identity-fallback and failed candidates), `report.best(k)` the `k`
        best, non-finite scores last.

    Raises:
        ValueError: If the model has no droppable blocks, or the data or an
            argument is invalid.

    Example:

    ```python
    report = keras_practise.recoverability(model, images, steps=100)
    print(report)
    ```
    """
    finetune.check_callbacks(callbacks)
    savings_lib.check_source(latency)
    validation.check_int("steps", steps)
    validation.check_int("batch_size", batch_size, allow_none=True)
    validation.check_fraction("validation_split", validation_split, allow_zero=True)
    memory = memory_lib.MemoryPlan(memory_budget)
    model, candidates, chosen = candidates_lib.working_copy(
        model, image_size, blocks
    )
    if chosen is not None:
        candidates = chosen
    tiny = views.TinySetSpec(
        data, num_samples=num_samples, seed=seed, image_size=image_size,
        augment_views=augment_views, validation_split=validation_split,
    )
    bank, _ = feature_bank.build_bank(
        model, tiny, cuts=candidate_cuts(model, candidates), memory=memory
    )
    config = finetune.TrainConfig(
        steps=steps, batch_size=batch_size, seed=seed, callbacks=callbacks,
        activation_memory=memory.training_bytes(bank.held_bytes),
    )
    return score_blocks(model, candidates, bank, config, latency, verbose)
