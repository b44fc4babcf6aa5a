r"""Reproduces the PRACTISE latency tables on this machine.

For every model, the original network and its block-dropped variants (the
paper's schemes A, B, C, ...) are built with random weights, their trainable
parameters and MACs are counted, and their latencies are measured together,
interleaved run by run, so that load from other processes hits all variants
of a model alike. Each table shows, beside our numbers, the paper's (earlier
arXiv version: GPU = RTX 3090 at batch 512, CPU = one Xeon thread at batch 64).

The numbers in `docs/results.md` came from:

    KERAS_BACKEND=tensorflow python -m benchmarks.latency --device=cpu \
        --batch_size=8 --runs=15 --warmup=3 \
        --output=out/latency_tensorflow.md --plot=out/latency_tensorflow.png

`--runtime=onnxruntime` (or `litert`, `openvino`) exports every variant once
and times it in that runtime; `--threads=1 --batch_size=1` is what a small
edge device sees.

Default schemes (`stage.block`, 1-based, as `keras_practise.find_blocks`
labels them): ResNet-34/50 and VGG-16: A = 1.2, B = 1.2, 2.2, C = 1.2, 2.2,
3.2 (the paper lists only VGG-16-C; A and B are its prefixes). MobileNetV2:
D = 3.2, 4.2, 5.2, 6.2 (the paper's) and A to C its prefixes. Pass
`--schemes=NAME=BLOCKS` (repeatable) to measure other schemes instead.

keras is imported inside `main`, after `--device=cpu` has hidden the
accelerators: keras' torch backend picks its default device when imported.
"""

import dataclasses
import gc
import importlib
import os
import shlex
import sys
import time

from absl import app
from absl import flags
from absl import logging

from benchmarks import harness

# Display name and dotted path of each model's builder.
_MODELS = {
    "resnet34": ("ResNet-34", "keras_practise.models.ResNet34"),
    "resnet50": ("ResNet-50", "keras.applications.ResNet50"),
    "vgg16": ("VGG-16", "keras.applications.VGG16"),
    "mobilenet_v2": ("MobileNetV2", "keras.applications.MobileNetV2"),
}
_RESNET_SCHEMES = {
    "A": ("1.2",),
    "B": ("1.2", "2.2"),
    "C": ("1.2", "2.2", "3.2"),
}
_DEFAULT_SCHEMES = {
    "resnet34": _RESNET_SCHEMES,
    "resnet50": _RESNET_SCHEMES,
    "vgg16": _RESNET_SCHEMES,
    "mobilenet_v2": {
        "A": ("3.2",),
        "B": ("3.2", "4.2"),
        "C": ("3.2", "4.2", "5.2"),
        "D": ("3.2", "4.2", "5.2", "6.2"),
    },
}


@dataclasses.dataclass(frozen=True)
class _PaperRow:
    dropped: tuple
    params_m: float
    macs_g: float
    gpu_ms: float
    cpu_s: float


# The paper's latency tables (earlier arXiv version), keyed by row name.
_PAPER = {
    "ResNet-34": _PaperRow((), 21.80, 3.66, 162, 6.60),
    "ResNet-34-A": _PaperRow(("1.2",), 21.72, 3.43, 148, 6.03),
    "ResNet-34-B": _PaperRow(("1.2", "2.2"), 21.43, 3.20, 140, 5.72),
    "ResNet-34-C": _PaperRow(("1.2", "2.2", "3.2"), 20.25, 2.97, 133, 5.15),
    "ResNet-50": _PaperRow((), 25.56, 4.09, 374, 12.13),
    "ResNet-50-A": _PaperRow(("1.2",), 25.49, 3.87, 342, 11.21),
    "ResNet-50-B": _PaperRow(("1.2", "2.2"), 25.21, 3.65, 324, 10.65),
    "ResNet-50-C": _PaperRow(("1.2", "2.2", "3.2"), 24.09, 3.43, 312, 10.20),
    # Layer-wise schemes (nothing dropped), measured by benchmarks/schemes.py.
    "ResNet-34-50%": _PaperRow((), 19.25, 2.80, 145, 5.21),
    "ResNet-50-DW-PW": _PaperRow((), 18.11, 2.89, 407, 12.85),
    "ResNet-50-LRD": _PaperRow((), 16.65, 2.66, 371, 10.63),
    "MobileNetV2": _PaperRow((), 3.50, 0.301, 126, 3.90),
    "MobileNetV2-D": _PaperRow(
        ("3.2", "4.2", "5.2", "6.2"), 3.00, 0.241, 108, 3.27
    ),
    "VGG-16": _PaperRow((), 138.37, 15.47, 616, 30.91),
    "VGG-16-C": _PaperRow(("1.2", "2.2", "3.2"), 137.59, 9.92, 382, 18.41),
}

_MODEL_NAMES = flags.DEFINE_list(
    "models",
    list(_MODELS),
    f"Models to measure, from {', '.join(_MODELS)}.",
)
_SCHEMES = flags.DEFINE_multi_string(
    "schemes",
    None,
    "A scheme as NAME=BLOCKS, e.g. `--schemes=A=1.2 --schemes=B=1.2,2.2`; "
    "BLOCKS are `stage.block` labels or block names. Applies to every "
    "model. Defaults to the paper's schemes of each model.",
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 64, "Images per timed call (64 in the paper).", lower_bound=1
)
_INPUT_SIZE = flags.DEFINE_integer(
    "input_size", 224, "Height and width of the input images.", lower_bound=32
)
_RUNS = flags.DEFINE_integer(
    "runs", 30, "Timed rounds (each times every variant once).", lower_bound=1
)
_WARMUP = flags.DEFINE_integer(
    "warmup", 5, "Untimed rounds before the timed ones.", lower_bound=0
)
_DEVICE = flags.DEFINE_enum(
    "device",
    "auto",
    ["auto", "cpu", "gpu"],
    "`cpu` hides accelerators (CUDA_VISIBLE_DEVICES=-1, JAX_PLATFORMS=cpu) "
    "before keras is imported; `gpu` fails if none is visible; `auto` "
    "uses whatever the backend picks.",
)
_WEIGHTS = flags.DEFINE_string(
    "weights",
    None,
    "Passed to every model builder, e.g. `imagenet` for the "
    "keras.applications models (needs internet). Latency does not depend "
    "on the weights.",
)
_RUNTIME = flags.DEFINE_enum(
    "runtime",
    "keras",
    ["keras", "onnxruntime", "litert", "openvino"],
    "Where the variants run: Keras on the active backend, or each exported "
    "once and timed in that runtime (needs its keras-practise extra).",
)
_THREADS = flags.DEFINE_integer(
    "threads", None, "CPU threads of a --runtime other than keras "
    "(default: the runtime's own choice).", lower_bound=1
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Optional markdown file to write the tables to."
)
_PLOT = flags.DEFINE_string(
    "plot", None, "Optional PNG file for a bar chart of the latencies."
)


@dataclasses.dataclass(frozen=True)
class SchemeRow:
    """One row of a latency table.

    Attributes:
        name: Row name, e.g. `"ResNet-50-C"`; the model's display name for
            the original.
        dropped: `stage.block` labels of the dropped blocks.
        params: Trainable parameters (the paper's PyTorch count).
        macs: Multiply-accumulates for one image.
        latency: The `keras_practise.latency.LatencyResult`.
        reduction: Fraction of the original's median latency saved.
    """

    name: str
    dropped: tuple
    params: int
    macs: int
    latency: object
    reduction: float


def parse_scheme(text):
    """Parses a `NAME=BLOCKS` flag value.

    Args:
        text: E.g. `"C=1.2,2.2,3.2"`.

    Returns:
        A tuple `(name, blocks)` with `blocks` a tuple of strings.

    Raises:
        ValueError: If `text` lacks a name or blocks.
    """
    name, sep, blocks = text.partition("=")
    blocks = tuple(b.strip() for b in blocks.split(",") if b.strip())
    if not sep or not name.strip() or not blocks:
        raise ValueError(
            "A scheme must be NAME=BLOCKS with comma-separated `stage.block` "
            f"labels or block names, e.g. C=1.2,2.2,3.2. Received: {text!r}"
        )
    return name.strip(), blocks


def _schemes_are_valid(values):
    try:
        names = [parse_scheme(v)[0] for v in values or ()]
    except ValueError as e:
        raise flags.ValidationError(str(e)) from None
    if len(set(names)) != len(names):
        raise flags.ValidationError(
            f"Scheme names must be distinct. Received: {names}"
        )
    return True


def _models_are_valid(values):
    unknown = [v for v in values if v not in _MODELS]
    if not values or unknown or len(set(values)) != len(values):
        raise flags.ValidationError(
            f"--models must list distinct names from {', '.join(_MODELS)}. "
            f"Received: {values}"
        )
    return True


flags.register_validator(_SCHEMES, _schemes_are_valid)
flags.register_validator(_MODEL_NAMES, _models_are_valid)


def _select_device(device):
    """Hides accelerators for `device="cpu"`; must run before keras loads."""
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        os.environ["JAX_PLATFORMS"] = "cpu"


def _check_device(device, device_name):
    on_accelerator = not device_name.startswith("CPU")
    if device == "gpu" and not on_accelerator:
        raise ValueError(
            "--device=gpu but the backend sees no accelerator. "
            f"Received: device={device!r} ({device_name})"
        )
    if device == "cpu" and on_accelerator:
        raise ValueError(
            "--device=cpu could not hide the accelerator because keras was "
            "imported before main() ran; run the binary in a fresh process. "
            f"Received: device={device!r} ({device_name})"
        )


def build_model(model_key, input_size, weights=None):
    """Builds one of `_MODELS`.

    Args:
        model_key: A key of `_MODELS`, e.g. `"resnet34"`.
        input_size: Height and width of the input.
        weights: Passed to the model builder. Defaults to `None`.

    Returns:
        A tuple `(display_name, model)`.
    """
    display_name, builder_path = _MODELS[model_key]
    module_name, builder_name = builder_path.rsplit(".", 1)
    builder = getattr(importlib.import_module(module_name), builder_name)
    return display_name, builder(
        weights=weights, input_shape=(input_size, input_size, 3)
    )


def measure_model(
    model_key, schemes, batch_size, input_size, runs, warmup, weights=None,
    runtime="keras", threads=None,
):
    """Measures a model and its block-dropped variants together.

    Args:
        model_key: A key of `_MODELS`, e.g. `"resnet50"`.
        schemes: Dict scheme name -> blocks to drop (labels or names).
        batch_size: Images per timed call.
        input_size: Height and width of the input.
        runs: Timed rounds.
        warmup: Untimed rounds.
        weights: Passed to the model builder. Defaults to `None`.
        runtime: `"keras"` or a runtime the variants are exported to and
            timed in (see `keras_practise.compare_latency`).
        threads: CPU threads of a non-Keras runtime.

    Returns:
        A list of `SchemeRow`s, the original first.

    Raises:
        ValueError: If a scheme names a block the model cannot drop.
    """
    import keras

    import keras_practise
    from keras_practise.graph import blocks as blocks_lib

    display_name, original = build_model(model_key, input_size, weights)
    candidates = keras_practise.find_blocks(original)
    variants = {display_name: (original, ())}
    for scheme, blocks in schemes.items():
        chosen = blocks_lib.resolve_blocks(original, blocks, candidates)
        variants[f"{display_name}-{scheme}"] = (
            keras_practise.drop_blocks(original, chosen),
            tuple(b.label for b in chosen),
        )

    logging.info(
        "Measuring %s: %d variants, %d + %d rounds.",
        display_name,
        len(variants),
        warmup,
        runs,
    )
    start = time.perf_counter()
    comparison = keras_practise.compare_latency(
        {name: model for name, (model, _) in variants.items()},
        batch_size=batch_size,
        input_shape=(input_size, input_size, 3),
        runs=runs,
        warmup=warmup,
        runtime=runtime,
        threads=threads,
    )
    logging.info("%s took %.0f s.", display_name, time.perf_counter() - start)
    return [
        SchemeRow(
            name=name,
            dropped=dropped,
            # The paper counts PyTorch parameters: BatchNorm's moving
            # statistics are buffers there, so count trainable weights.
            params=sum(
                int(keras.ops.size(w)) for w in model.trainable_weights
            ),
            macs=keras_practise.count_macs(model),
            latency=comparison.results[name],
            reduction=comparison.reductions[name],
        )
        for name, (model, dropped) in variants.items()
    ]


def _paper_row(row):
    """The paper's row for `row`, if the paper measured the same blocks."""
    paper = _PAPER.get(row.name)
    if paper is None or paper.dropped != row.dropped:
        return None
    return paper


def format_table(rows):
    """Formats one model's rows as a markdown table beside the paper's.

    Args:
        rows: `SchemeRow`s of one model, the original first.

    Returns:
        A markdown table string.
    """
    paper_original = _paper_row(rows[0])
    header = (
        "scheme",
        "dropped",
        "params M",
        "MACs G",
        "latency ms: median (p10-p90)",
        "reduction",
        "paper params M",
        "paper MACs G",
        "paper GPU ms (reduction)",
        "paper CPU s (reduction)",
    )
    table_rows = []
    for row in rows:
        latency = row.latency
        cells = [
            row.name,
            ", ".join(row.dropped) or "-",
            f"{row.params / 1e6:.2f}",
            _format_macs(row.macs / 1e9),
            f"{latency.median_ms:.1f} ({latency.p10_ms:.1f}-"
            f"{latency.p90_ms:.1f})",
            f"{row.reduction:.1%}",
        ]
        paper = _paper_row(row)
        if paper is None or paper_original is None:
            cells += ["-"] * 4
        else:
            gpu_cut = 1 - paper.gpu_ms / paper_original.gpu_ms
            cpu_cut = 1 - paper.cpu_s / paper_original.cpu_s
            cells += [
                f"{paper.params_m:.2f}",
                _format_macs(paper.macs_g),
                f"{paper.gpu_ms:g} ({gpu_cut:.1%})",
                f"{paper.cpu_s:.2f} ({cpu_cut:.1%})",
            ]
        table_rows.append(cells)
    return harness.markdown_table(header, table_rows)


def _format_macs(giga):
    # MobileNetV2's 0.301 G needs three decimals, the others two.
    return f"{giga:.3f}" if giga < 1 else f"{giga:.2f}"


def format_document(rows_by_model, setup):
    """Formats all tables as one markdown document.

    Args:
        rows_by_model: Dict model key -> its `SchemeRow`s.
        setup: Dict of lines describing the run (command, device, ...),
            each written as `- key: value`.

    Returns:
        The markdown text.
    """
    parts = ["# Latency of block-dropped networks", ""]
    parts += [f"- {key}: {value}" for key, value in setup.items()]
    for rows in rows_by_model.values():
        parts += ["", f"## {rows[0].name}", "", format_table(rows)]
    return "\n".join(parts) + "\n"


def write_plot(path, rows_by_model, batch_size):
    """Draws one bar chart per model: median latency per scheme.

    Args:
        path: PNG file to write.
        rows_by_model: Dict model key -> its `SchemeRow`s.
        batch_size: Batch size of the measurements, for the axis label.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(
        1, len(rows_by_model), figsize=(3.2 * len(rows_by_model), 3.4)
    )
    axes = [axes] if len(rows_by_model) == 1 else axes
    for ax, rows in zip(axes, rows_by_model.values()):
        medians = [r.latency.median_ms for r in rows]
        spread = [
            [r.latency.median_ms - r.latency.p10_ms for r in rows],
            [r.latency.p90_ms - r.latency.median_ms for r in rows],
        ]
        labels = ["orig"] + [r.name[len(rows[0].name) + 1 :] for r in rows[1:]]
        bars = ax.bar(labels, medians, yerr=spread, capsize=3, color="C0")
        for bar, row in zip(bars[1:], rows[1:]):
            # The latency change, printed above the bar's p90 whisker.
            ax.annotate(
                f"{-row.reduction:+.0%}",
                (bar.get_x() + bar.get_width() / 2, row.latency.p90_ms),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_title(rows[0].name)
        ax.set_ylabel(f"ms per batch of {batch_size} (p10-p90)")
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _THREADS.value and _RUNTIME.value == "keras":
        raise app.UsageError(
            f"--threads={_THREADS.value} applies to an exported runtime; Keras "
            "(--runtime=keras) uses its backend's own threads."
        )
    _select_device(_DEVICE.value)
    import keras

    from keras_practise import backend

    device_name = backend.device_name()
    _check_device(_DEVICE.value, device_name)
    custom = dict(parse_scheme(s) for s in _SCHEMES.value or ())
    load_before = os.getloadavg()[0]

    rows_by_model = {}
    for key in _MODEL_NAMES.value:
        rows = measure_model(
            key,
            custom or _DEFAULT_SCHEMES[key],
            batch_size=_BATCH_SIZE.value,
            input_size=_INPUT_SIZE.value,
            runs=_RUNS.value,
            warmup=_WARMUP.value,
            weights=_WEIGHTS.value,
            runtime=_RUNTIME.value,
            threads=_THREADS.value,
        )
        rows_by_model[key] = rows
        print(f"\n{rows[0].name}\n{format_table(rows)}", flush=True)
        # Free one family before building the next: four VGG-16s hold 2 GB.
        keras.utils.clear_session(free_memory=True)
        gc.collect()

    setup = {
        "command": f"`KERAS_BACKEND={keras.backend.backend()} python -m "
        f"benchmarks.latency {shlex.join(sys.argv[1:])}`",
        "backend": f"{keras.backend.backend()} (keras {keras.__version__})",
        "runtime": f"{_RUNTIME.value}, threads {_THREADS.value or 'default'}",
        "device": device_name,
        "input": f"batch {_BATCH_SIZE.value} x {_INPUT_SIZE.value} x "
        f"{_INPUT_SIZE.value} x 3, random weights and data",
        "rounds": f"{_WARMUP.value} warm-up + {_RUNS.value} timed, the "
        "variants of a model interleaved",
        "load average (1 min) before / after": f"{load_before:.2f} / "
        f"{os.getloadavg()[0]:.2f}",
    }
    print("\n" + "\n".join(f"{k}: {v}" for k, v in setup.items()))
    document = format_document(rows_by_model, setup)
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, document)
    if _PLOT.value:
        write_plot(_PLOT.value, rows_by_model, _BATCH_SIZE.value)


if __name__ == "__main__":
    app.run(main)
