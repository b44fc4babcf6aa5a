"""How much latency (or how many MACs) dropping blocks saves.

One home for the saving of a single block (its score's denominator) and of
a set of blocks (a latency target).
"""

from keras_practise.graph import surgery
from keras_practise.profiling import latency as latency_lib
from keras_practise.profiling import macs as macs_lib
from keras_practise.profiling import runtime_latency

LATENCY_SOURCES = ("measured", "macs")


def check_source(source):
    """Raises unless `source` is a way this library can assess a saving.

    That is one of `LATENCY_SOURCES`, a runtime name (`"onnxruntime"`,
    `"litert"`, `"openvino"`, whose package must be installed) or a callable
    `f(model) -> milliseconds`.

    Raises:
        ValueError: If `source` is none of these.
        ImportError: If the runtime's package is missing.
    """
    if callable(source) or source in LATENCY_SOURCES:
        return
    if source in runtime_latency.RUNTIMES:
        runtime_latency.check_runtime(source)
        return
    raise ValueError(
        f"`latency` must be one of {LATENCY_SOURCES}, a runtime "
        f"{sorted(runtime_latency.RUNTIMES)} or a callable "
        f"`f(model) -> milliseconds`. Received: latency={source!r}"
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
        source: `"macs"`, `"measured"` (wall-clock in Keras on the active
            device), a runtime name (the pruned copies exported and timed
            there) or a callable `f(model) -> milliseconds`.
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
    result = latency_lib.latency_reductions(
        {"original": model, **pruned}, source, batch_size, runs
    )
    return [result[f"drop {i}"] for i in range(len(groups))]


def _layer_names(group):
    return {name for block in group for name in block.layer_names}
