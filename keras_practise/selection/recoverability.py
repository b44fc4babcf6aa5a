"""Recoverability: how well a network recovers when one block is dropped.

For each candidate block alone: drop it, insert adaptors around the hole,
train only the adaptors (everything else frozen, BatchNorm in inference mode)
so that the pruned network's last feature map mimics the teacher's, and
measure the remaining feature MSE on the tiny set's evaluation views. The
block's score is that MSE divided by the latency saved by dropping it; the
lowest scores are the best blocks to drop.

Only the part of the network after the first changed layer is trained and
run: its input, the teacher's activation at the last main-path cut before
the hole's adaptors, is computed once per cut and shared by every candidate
behind it, and the teacher's targets are computed once for all candidates.
"""

import dataclasses
import time

from keras_practise.distillation import adaptors as adaptors_lib
from keras_practise.distillation import feature_bank
from keras_practise.distillation import trainer as finetune
from keras_practise.graph import candidates as candidates_lib
from keras_practise.graph import taps
from keras_practise.profiling import runtime_latency
from keras_practise.selection import savings as savings_lib
from keras_practise.utils import progress
from keras_practise.utils import text_table
from keras_practise.utils import validation


@dataclasses.dataclass
class BlockScore:
    """Recoverability of one candidate block.

    Attributes:
        block: The block's name.
        label: Its `stage.position` label.
        mse: Feature MSE after adaptor training (lower recovers better).
        initial_mse: Feature MSE right after dropping, before training.
        latency_reduction: Fraction of the original latency (or MACs, see
            `latency_source`) saved by dropping this block alone.
        latency_source: `"measured"` or `"macs"`.
        score: `mse / latency_reduction`; lower is better.
        params: Parameters of the block.
        seconds: Wall time of this candidate's adaptor training.
        adaptors: Number of adaptors trained.
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


class RecoverabilityReport(list):
    """A list of `BlockScore`s in network order, printable as a table."""

    def best(self, k):
        """The `k` blocks with the lowest score, best first."""
        return sorted(self, key=lambda s: s.score)[:k]

    def table(self):
        """Formats the scores as a text table."""
        rows = [
            ("block", "label", "mse(init)", "mse", "latency cut", "score", "rank")
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


def score_block(model, block, bank, config):
    """Trains the adaptors of one dropped block and measures its feature MSE.

    Args:
        model: The original model (not modified).
        block: The candidate `Block`.
        bank: A `feature_bank.FeatureBank` built on `model`.
        config: A `finetune.TrainConfig` for the adaptor training.

    Returns:
        A tuple `(mse, initial_mse, seconds, number_of_adaptors)`.
    """
    sites = adaptors_lib.find_sites(model, [block])
    changed = [s.conv for s in sites] + block.layer_names
    cut = taps.frozen_prefix_cut(model, changed)
    student, sites = adaptors_lib.insert_adaptors(
        model, [block], sites, outputs=[bank.tap], start=cut
    )
    eval_x = bank.prefix(cut, "eval")
    initial = finetune.feature_mse(student, eval_x, bank.targets["eval"])
    start = time.perf_counter()
    if sites:
        finetune.set_trainable(student, "adaptors", [s.adaptor_name for s in sites])
        finetune.fit(
            student,
            bank.prefix(cut, "train"),
            [bank.targets["train"]],
            ["mse"],
            config,
        )
    seconds = time.perf_counter() - start
    mse = finetune.feature_mse(student, eval_x, bank.targets["eval"])
    return mse, initial, seconds, len(sites)


def score_blocks(model, candidates, bank, config, latency="measured", verbose=1):
    """Scores `candidates` (see `recoverability`) on a prepared feature bank."""
    reductions = latency_reductions(model, candidates, latency)
    report = RecoverabilityReport()
    progbar = progress.progbar(len(candidates), verbose, unit_name="block")
    for i, (block, reduction) in enumerate(zip(candidates, reductions)):
        mse, initial, seconds, count = score_block(model, block, bank, config)
        report.append(
            BlockScore(
                block=block.name,
                label=block.label,
                mse=mse,
                initial_mse=initial,
                latency_reduction=reduction,
                latency_source=runtime_latency.describe(latency),
                score=mse / reduction,
                params=block.param_count,
                seconds=seconds,
                adaptors=count,
            )
        )
        progbar.update(i + 1, [("mse", mse)])
    return report


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

    Returns:
        A `RecoverabilityReport`: a list of `BlockScore`s in network order;
        `print(report)` shows the table, `report.best(k)` the `k` best.

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
    model, candidates, chosen = candidates_lib.working_copy(
        model, image_size, blocks
    )
    if chosen is not None:
        candidates = chosen
    bank, _ = feature_bank.build_bank(
        model,
        data,
        num_samples=num_samples,
        seed=seed,
        image_size=image_size,
        augment_views=augment_views,
    )
    config = finetune.TrainConfig(
        steps=steps, batch_size=batch_size, seed=seed, callbacks=callbacks
    )
    return score_blocks(model, candidates, bank, config, latency, verbose)
