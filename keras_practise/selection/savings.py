"""How much latency (or how many MACs) dropping blocks saves.

One home for the saving of a single block (its score's denominator) and of
a set of blocks (a latency target).
"""

from keras_practise.graph import surgery
from keras_practise.profiling import latency as latency_lib
from keras_practise.profiling import macs as macs_lib

LATENCY_SOURCES = ("measured", "macs")


def check_source(source):
    """Raises `ValueError` unless `source` is one of `LATENCY_SOURCES`."""
    if source not in LATENCY_SOURCES:
        raise ValueError(
            f"`latency` must be one of {LATENCY_SOURCES}. Received: "
            f"latency={source!r}"
        )


def savings(model, groups, source="measured", batch_size=8, runs=20):
    """Fraction of latency (or MACs) saved by dropping each group of blocks.

    MACs come from per-layer counts: dropping blocks keeps every other
    shape, so a group saves exactly the MACs of its own layers and no pruned
    copy is built. Measured latencies are taken interleaved (original, each
    pruned model, original, ...) so the ratios hold on a noisy machine.

    Args:
        model: The original model.
        groups: A list of lists of `Block`s of `model`; each list is dropped
            together.
        source: `"measured"` (wall-clock on the active device) or `"macs"`.
        batch_size: Batch size of the latency measurement.
        runs: Timed runs per model.

    Returns:
        A list of fractions of the original, one per group.

    Raises:
        ValueError: If `source` is unknown.
    """
    check_source(source)
    if source == "macs":
        report = macs_lib.count_macs(model, per_layer=True)
        per_name = {}
        for row in report.rows:
            per_name[row.name] = per_name.get(row.name, 0) + row.macs
        return [
            sum(per_name.get(name, 0) for name in _layer_names(group))
            / report.total
            for group in groups
        ]
    pruned = {
        f"drop {i}": surgery.drop_blocks(model, group)
        for i, group in enumerate(groups)
    }
    result = latency_lib.compare_latency(
        {"original": model, **pruned}, batch_size=batch_size, runs=runs
    )
    return [result.reductions[f"drop {i}"] for i in range(len(groups))]


def _layer_names(group):
    return {name for block in group for name in block.layer_names}
