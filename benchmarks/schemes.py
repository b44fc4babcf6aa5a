r"""The paper's Table 1 on this machine: layer-wise schemes beside block dropping.

ResNet-34 and ResNet-50 are built with random weights (latency, parameters
and MACs do not depend on the weights), with their block-dropped variants
A, B, C (as in `benchmarks/latency.py`) and the earlier paper's layer-wise
schemes, built by `keras_practise.schemes` without recovery:

* ResNet-34-50%: filter pruning of the first conv of the basic blocks as in
  Li et al.'s ResNet-34-pruned-B (`filters.RESNET34_LI_B`).
* ResNet-50-DW-PW: every 3x3 conv decoupled into a depthwise 3x3 with
  `--dw_rank` filters per channel and a pointwise 1x1 (rank 3 gives the
  paper's 18.11 M parameters).
* ResNet-50-LRD: every 3x3 conv as a 3x3 conv keeping `--lrd_rank` of its
  filters plus a 1x1 conv (the paper's PCA rank needs trained weights; a
  uniform fraction of 0.19 gives about its 16.65 M parameters).

All variants of a model are timed together, interleaved run by run
(`keras_practise.compare_latency`). The tables in `docs/results.md` are
rewritten by `python -m benchmarks.report --tables
schemes_tensorflow,schemes_torch`, which runs

    KERAS_BACKEND=torch python -m benchmarks.schemes --device=cpu \
        --batch_size=4 --runs=20 --warmup=3 --output=out/schemes_torch.md

and the same with `KERAS_BACKEND=tensorflow`.
"""

import os
import time

from absl import app
from absl import flags
from absl import logging

from benchmarks import harness
from benchmarks import latency as latency_bench

# The model, batch, input, runs, warm-up, device and output flags are
# benchmarks.latency's (one absl registry); these defaults suit this table.
flags.set_default(latency_bench._MODEL_NAMES, ["resnet34", "resnet50"])
flags.set_default(latency_bench._BATCH_SIZE, 8)
flags.set_default(latency_bench._RUNS, 10)
flags.set_default(latency_bench._WARMUP, 2)
_MODEL_NAMES = latency_bench._MODEL_NAMES
_BATCH_SIZE = latency_bench._BATCH_SIZE
_INPUT_SIZE = latency_bench._INPUT_SIZE
_RUNS = latency_bench._RUNS
_WARMUP = latency_bench._WARMUP
_DEVICE = latency_bench._DEVICE
_OUTPUT = latency_bench._OUTPUT
_DW_RANK = flags.DEFINE_integer("dw_rank", 3, "Depthwise filters per channel.", lower_bound=1)
_LRD_RANK = flags.DEFINE_float("lrd_rank", 0.19, "Kept fraction of 3x3 filters (LRD).")


def layerwise_variants(model_key, original, dw_rank, lrd_rank):
    """The layer-wise scheme variants of `original`, by row name."""
    import numpy as np

    from keras_practise.graph import surgery
    from keras_practise.schemes import core
    from keras_practise.schemes import decouple
    from keras_practise.schemes import filters
    from keras_practise.schemes import lowrank

    if model_key == "resnet34":
        return {"ResNet-34-50%": filters.l1_pruned(original, filters.RESNET34_LI_B)}
    flat = core.flat_copy(original)
    convs = [n for n in lowrank.candidates(flat)]

    def basis(conv):
        rank = max(1, int(round(lrd_rank * conv.filters)))
        return np.zeros(conv.filters), np.eye(conv.filters)[:, :rank]

    return {
        "ResNet-50-DW-PW": surgery.rewrite(
            flat,
            replace={
                n: core.applier(*decouple.decoupled_layers(flat.get_layer(n), dw_rank))
                for n in convs
            },
        ),
        "ResNet-50-LRD": surgery.rewrite(
            flat,
            replace={
                n: core.applier(
                    *lowrank.lowrank_layers(flat.get_layer(n), *basis(flat.get_layer(n)))
                )
                for n in convs
            },
        ),
    }


def measure(model_key, batch_size, input_size, runs, warmup, dw_rank, lrd_rank):
    """Measures a model, its A/B/C block drops and its layer-wise schemes.

    Returns:
        A list of `latency_bench.SchemeRow`s, the original first.
    """
    import keras

    import keras_practise
    from keras_practise.graph import blocks as blocks_lib

    display_name, original = latency_bench.build_model(model_key, input_size)
    candidates = keras_practise.find_blocks(original)
    variants = {display_name: (original, ())}
    for scheme, blocks in latency_bench._RESNET_SCHEMES.items():
        chosen = blocks_lib.resolve_blocks(original, blocks, candidates)
        variants[f"{display_name}-{scheme}"] = (
            keras_practise.drop_blocks(original, chosen),
            tuple(b.label for b in chosen),
        )
    for name, model in layerwise_variants(model_key, original, dw_rank, lrd_rank).items():
        variants[name] = (model, ())
    start = time.perf_counter()
    comparison = keras_practise.compare_latency(
        {name: model for name, (model, _) in variants.items()},
        batch_size=batch_size,
        input_shape=(input_size, input_size, 3),
        runs=runs,
        warmup=warmup,
    )
    logging.info("%s took %.0f s.", display_name, time.perf_counter() - start)
    return [
        latency_bench.SchemeRow(
            name=name,
            dropped=dropped,
            params=sum(int(keras.ops.size(w)) for w in model.trainable_weights),
            macs=keras_practise.count_macs(model),
            latency=comparison.results[name],
            reduction=comparison.reductions[name],
        )
        for name, (model, dropped) in variants.items()
    ]


def main(argv):
    del argv
    latency_bench._select_device(_DEVICE.value)
    import keras

    started = time.perf_counter()
    tables = {}
    for key in _MODEL_NAMES.value:
        if key not in ("resnet34", "resnet50"):
            raise app.UsageError(f"--models takes resnet34 and resnet50. Received: {key!r}")
        tables[key] = measure(
            key, _BATCH_SIZE.value, _INPUT_SIZE.value, _RUNS.value,
            _WARMUP.value, _DW_RANK.value, _LRD_RANK.value,
        )
    device = next(iter(tables.values()))[0].latency.device
    latency_bench._check_device(_DEVICE.value, device)
    lines = [
        "# Layer-wise schemes beside block dropping",
        "",
        f"- backend: {keras.backend.backend()}, device: {device}",
        f"- batch {_BATCH_SIZE.value}, input {_INPUT_SIZE.value}, "
        f"{_RUNS.value} interleaved runs after {_WARMUP.value} warm-up",
        f"- wall time: {time.perf_counter() - started:.0f} s",
    ]
    for rows in tables.values():
        lines += ["", f"## {rows[0].name}", "", latency_bench.format_table(rows)]
    text = "\n".join(lines) + "\n"
    print(text)
    if _OUTPUT.value:
        os.makedirs(os.path.dirname(_OUTPUT.value) or ".", exist_ok=True)
        harness.write_atomically(_OUTPUT.value, text)


if __name__ == "__main__":
    app.run(main)
