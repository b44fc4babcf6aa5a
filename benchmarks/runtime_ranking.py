r"""Whether the ranking of single blocks by latency saving changes by runtime.

PRACTISE drops the blocks that recover best per unit of latency saved, so
which block looks cheap depends on where the latency is measured. For each
model, every droppable block is dropped alone and the fraction of the
original's latency that this saves is measured in each source of
`--sources`: Keras on the active backend (`measured`), ONNX Runtime, LiteRT
and OpenVINO (each variant exported once and timed there), and the fraction
of MACs (`macs`, from `keras_practise.selection.savings`). The variants of a
model are timed together, interleaved run by run, as in
`benchmarks/latency.py`, whose model, batch, input, rounds, weights, device,
threads and output flags this binary shares.

Each model gets a table of every block's saving and rank per source (1 = the
largest saving; tied savings share their mean rank), Spearman's rank
correlation between every pair of sources and how many of their top-3 blocks
agree. Two noise floors: a source listed twice is measured twice (`measured`
and `measured#2`), and each timed source's rounds, split into a first and a
second half, give a split-half rank correlation.

`--threads` applies to the exported runtimes; Keras runs on its default
threads. The timed sources call `keras_practise.compare_latency` rather than
`savings()` (the path `compress(latency=...)` takes) because `savings()`
has no threads or warm-up argument.

The numbers in `docs/results.md` came from:

    KERAS_BACKEND=tensorflow python -m benchmarks.runtime_ranking \
        --device=cpu --threads=1 --output=out/runtime_ranking.md
"""

import dataclasses
import gc
import itertools
import os
import shlex
import sys
import time

import numpy as np
from absl import app
from absl import flags
from absl import logging

from benchmarks import harness
from benchmarks import latency as latency_bench

# The shared flags are benchmarks.latency's (one absl registry); these
# defaults keep all four sources of two models within half an hour on a CPU.
flags.set_default(latency_bench._MODEL_NAMES, ["resnet34", "mobilenet_v2"])
flags.set_default(latency_bench._BATCH_SIZE, 1)
flags.set_default(latency_bench._INPUT_SIZE, 128)
flags.set_default(latency_bench._RUNS, 10)
flags.set_default(latency_bench._WARMUP, 2)

SOURCES = ("macs", "measured", "onnxruntime", "litert", "openvino")
TOP_K = 3

_SOURCES = flags.DEFINE_list(
    "sources",
    ["macs", "measured", "measured", "onnxruntime", "litert", "openvino"],
    f"Where savings are assessed, from {', '.join(SOURCES)}; a source "
    "listed twice is measured twice (its run-to-run noise).",
)
_BLOCKS = flags.DEFINE_list(
    "blocks",
    None,
    "Droppable blocks to rank (`stage.block` labels or block names), for "
    "every model. Defaults to all of each model's droppable blocks.",
)


def _sources_are_valid(values):
    unknown = [v for v in values if v not in SOURCES]
    if not values or unknown:
        raise flags.ValidationError(
            f"--sources must list names from {', '.join(SOURCES)}. "
            f"Received: {values}"
        )
    return True


flags.register_validator(_SOURCES, _sources_are_valid)


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Single-block savings of one model in every source.

    Attributes:
        name: The model's display name.
        labels: `stage.block` labels of the dropped blocks, in model order.
        savings: Dict column -> fractions saved, one per label. Columns are
            the sources, a repeated one suffixed `#2`, `#3`, ...
        halves: Dict timed column -> (savings over the first half of the
            rounds, savings over the second half); absent below 2 rounds.
        original_ms: Dict timed column -> the original's median latency.
        seconds: Wall time of the whole model, exports included.
    """

    name: str
    labels: tuple
    savings: dict
    halves: dict
    original_ms: dict
    seconds: float


def column_names(sources):
    """Names the columns of `sources`: `measured`, `measured#2`, ...

    Args:
        sources: Source names, possibly repeated.

    Returns:
        A list of distinct column names, one per source.
    """
    seen = {}
    names = []
    for source in sources:
        seen[source] = seen.get(source, 0) + 1
        count = seen[source]
        names.append(source if count == 1 else f"{source}#{count}")
    return names


def ranks(values):
    """Ranks savings: 1 for the largest; ties share their mean rank.

    Args:
        values: A sequence of savings.

    Returns:
        A float numpy array of ranks, one per value.
    """
    values = np.asarray(values, dtype="float64")
    result = np.empty(len(values))
    result[np.argsort(-values, kind="stable")] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        result[tied] = result[tied].mean()
    return result


def spearman(a, b):
    """Spearman's rank correlation of two sequences of savings.

    Args:
        a: A sequence of savings.
        b: A sequence of savings of the same blocks.

    Returns:
        The correlation in [-1, 1], or NaN when either sequence is constant
        (e.g. the MACs of ResNet-34's blocks, which are all equal) or has
        fewer than 2 values.
    """
    rank_a, rank_b = ranks(a), ranks(b)
    if len(rank_a) < 2 or rank_a.std() == 0 or rank_b.std() == 0:
        return float("nan")
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


def top_blocks(labels, values, k=TOP_K):
    """The `k` blocks with the largest savings.

    Args:
        labels: Block labels.
        values: Their savings.
        k: How many. Defaults to `TOP_K`.

    Returns:
        A frozenset of labels, or `None` when a tie crosses the cut, so that
        no `k` blocks are the top ones.
    """
    ordered = sorted(zip(values, labels), reverse=True)
    if len(ordered) > k and ordered[k - 1][0] == ordered[k][0]:
        return None
    return frozenset(label for _, label in ordered[:k])


def _half_savings(comparison, labels):
    """Savings from the first and from the second half of the rounds."""
    halves = []
    for part in (0, 1):
        medians = {}
        for name, result in comparison.results.items():
            times = result.times_ms
            middle = len(times) // 2
            half = times[middle:] if part else times[:middle]
            medians[name] = np.median(half)
        halves.append(
            [1 - medians[label] / medians["original"] for label in labels]
        )
    return tuple(halves)


def rank_model(
    model_key, sources, blocks, batch_size, input_size, runs, warmup,
    threads=None, weights=None,
):
    """Measures every single-block saving of one model in every source.

    Args:
        model_key: A key of `benchmarks.latency._MODELS`.
        sources: Names from `SOURCES`, possibly repeated.
        blocks: Blocks to drop one at a time (labels or names), or `None`
            for all droppable blocks.
        batch_size: Images per timed call.
        input_size: Height and width of the input.
        runs: Timed rounds per timed source.
        warmup: Untimed rounds before them.
        threads: CPU threads of the exported runtimes.
        weights: Passed to the model builder. Defaults to `None`.

    Returns:
        A `Ranking`.

    Raises:
        ValueError: If `blocks` names a block the model cannot drop.
    """
    import keras_practise
    from keras_practise.graph import blocks as blocks_lib
    from keras_practise.selection import savings as savings_lib

    start = time.perf_counter()
    name, original = latency_bench.build_model(model_key, input_size, weights)
    candidates = keras_practise.find_blocks(original)
    if blocks:
        candidates = blocks_lib.resolve_blocks(original, blocks, candidates)
    labels = tuple(b.label for b in candidates)
    variants = {"original": original}
    variants.update(
        (b.label, keras_practise.drop_blocks(original, [b])) for b in candidates
    )
    savings, halves, original_ms = {}, {}, {}
    for column, source in zip(column_names(sources), sources):
        logging.info("%s: %s, %d blocks.", name, column, len(labels))
        if source == "macs":
            savings[column] = savings_lib.savings(
                original, [[b] for b in candidates], source="macs"
            )
            continue
        comparison = keras_practise.compare_latency(
            variants,
            batch_size=batch_size,
            input_shape=(input_size, input_size, 3),
            runs=runs,
            warmup=warmup,
            runtime="keras" if source == "measured" else source,
            threads=threads,
        )
        savings[column] = [comparison.reductions[label] for label in labels]
        original_ms[column] = comparison.results["original"].median_ms
        if runs >= 2:
            halves[column] = _half_savings(comparison, labels)
    return Ranking(
        name, labels, savings, halves, original_ms, time.perf_counter() - start
    )


def _format_rho(value):
    return "n/a (constant)" if np.isnan(value) else f"{value:.2f}"


def format_ranking(ranking):
    """Formats one model's ranking as markdown.

    Args:
        ranking: A `Ranking`.

    Returns:
        Markdown: the savings table (saving and rank per source), a table
        per source (original latency, its top blocks, split-half
        correlation) and a table per pair of sources (Spearman's rho, top
        blocks shared).
    """
    columns = list(ranking.savings)
    column_ranks = {c: ranks(ranking.savings[c]) for c in columns}
    rows = [
        [label]
        + [
            f"{ranking.savings[c][i]:.1%} ({column_ranks[c][i]:g})"
            for c in columns
        ]
        for i, label in enumerate(ranking.labels)
    ]
    parts = [
        f"## {ranking.name} ({ranking.seconds:.0f} s)",
        "",
        harness.markdown_table(
            ["block"] + [f"{c}: saving (rank)" for c in columns], rows
        ),
        "",
    ]
    tops = {c: top_blocks(ranking.labels, ranking.savings[c]) for c in columns}
    rows = []
    for c in columns:
        halves = ranking.halves.get(c)
        rows.append([
            c,
            f"{ranking.original_ms[c]:.1f}"
            if c in ranking.original_ms
            else "-",
            ", ".join(sorted(tops[c])) if tops[c] else "tied",
            _format_rho(spearman(*halves)) if halves else "-",
        ])
    parts += [
        harness.markdown_table(
            ["source", "original ms", f"top {TOP_K}", "split-half rho"], rows
        ),
        "",
    ]
    rows = []
    for a, b in itertools.combinations(columns, 2):
        shared = (
            f"{len(tops[a] & tops[b])}/{TOP_K}"
            if tops[a] and tops[b]
            else "n/a (tied)"
        )
        rows.append([
            a,
            b,
            _format_rho(spearman(ranking.savings[a], ranking.savings[b])),
            shared,
        ])
    parts.append(
        harness.markdown_table(
            ["source", "source", "Spearman rho", f"top {TOP_K} shared"], rows
        )
    )
    return "\n".join(parts) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    for holder in (
        latency_bench._RUNTIME, latency_bench._SCHEMES, latency_bench._PLOT
    ):
        if holder.present:
            raise app.UsageError(
                f"--{holder.name} is benchmarks.latency's; this binary "
                "takes --sources and --blocks."
            )
    latency_bench._select_device(latency_bench._DEVICE.value)
    import keras

    from keras_practise import backend

    device_name = backend.device_name()
    latency_bench._check_device(latency_bench._DEVICE.value, device_name)
    load_before = os.getloadavg()[0]
    size = latency_bench._INPUT_SIZE.value
    parts = []
    for key in latency_bench._MODEL_NAMES.value:
        ranking = rank_model(
            key,
            _SOURCES.value,
            _BLOCKS.value,
            batch_size=latency_bench._BATCH_SIZE.value,
            input_size=size,
            runs=latency_bench._RUNS.value,
            warmup=latency_bench._WARMUP.value,
            threads=latency_bench._THREADS.value,
            weights=latency_bench._WEIGHTS.value,
        )
        parts.append(format_ranking(ranking))
        print("\n" + parts[-1], flush=True)
        keras.utils.clear_session(free_memory=True)
        gc.collect()

    setup = [
        f"- command: `KERAS_BACKEND={keras.backend.backend()} python -m "
        f"benchmarks.runtime_ranking {shlex.join(sys.argv[1:])}`",
        f"- device: {device_name}, exported runtimes on "
        f"{latency_bench._THREADS.value or 'default'} threads",
        f"- input: batch {latency_bench._BATCH_SIZE.value} x {size} x {size}"
        f" x 3; {latency_bench._WARMUP.value} warm-up + "
        f"{latency_bench._RUNS.value} timed rounds per source",
        f"- load average (1 min) before / after: {load_before:.2f} / "
        f"{os.getloadavg()[0]:.2f}",
    ]
    document = "\n".join(
        ["# Ranking of single blocks by saving, per runtime", ""]
        + setup
        + [""]
        + parts
    )
    print("\n".join(setup))
    if latency_bench._OUTPUT.value:
        harness.write_atomically(latency_bench._OUTPUT.value, document)


if __name__ == "__main__":
    app.run(main)
