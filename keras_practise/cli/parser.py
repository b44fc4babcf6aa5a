"""The `keras-practise` command line: its flags.

Building the parser imports no Keras backend, so `--help` and `--version`
answer at once; scheme names and options come from `schemes.registry`.
Values are range-checked by the library itself (see `cli.commands`).
"""

import argparse

import keras_practise
from keras_practise.schemes import registry

PROG = "keras-practise"
# Each backend's package has the backend's name.
BACKENDS = ("tensorflow", "torch", "jax")


class UsageError(Exception):
    """A command-line usage error, reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are raised, not printed with usage.

    `main` turns them into the one-line error every failure gets, and
    in-process callers get a return code instead of `SystemExit`.
    """

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _block_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            "expected comma-separated block names or stage.position labels "
            f"(e.g. 1.2,2.2), received {text!r}"
        )
    return names


def _memory_budget(text):
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of GiB or 'none', received {text!r}"
        ) from None


class _ImageSizeAction(argparse.Action):
    """Parses `--image-size H W` or `--image-size HxW` into `(H, W)`."""

    def __call__(self, parser, namespace, values, option_string=None):
        parts = values
        if len(values) == 1:
            parts = values[0].lower().split("x")
        try:
            size = tuple(int(part) for part in parts)
        except ValueError:
            size = ()
        if len(size) != 2 or min(size) < 1:
            # nargs="+" also swallows a positional argument that follows.
            hint = "; put MODEL before the flags" if len(values) > 2 else ""
            raise argparse.ArgumentError(
                self,
                "expected H W or HxW with positive integers (e.g. 224 224 or "
                f"224x224), received {' '.join(values)!r}{hint}",
            )
        setattr(namespace, self.dest, size)


def build_parser():
    parser = _Parser(
        prog=PROG,
        description=(
            "PRACTISE: make a trained CNN faster by dropping blocks and "
            "recovering from a tiny set of images."
        ),
    )
    parser.add_argument(
        "--version", action="version",
        version=f"%(prog)s {keras_practise.__version__}",
    )
    backend_help = (
        "Keras backend to run on (defaults to KERAS_BACKEND or Keras' "
        "configured backend)."
    )
    parser.add_argument("--backend", choices=BACKENDS, help=backend_help)
    # The flag is also accepted after the command; SUPPRESS keeps a missing
    # one there from resetting a value given before it.
    common = _Parser(add_help=False)
    common.add_argument(
        "--backend", choices=BACKENDS, default=argparse.SUPPRESS,
        help=backend_help,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_compress(commands, common)
    _add_blocks(commands, common)
    _add_latency(commands, common)
    return parser


def _add_compress(commands, common):
    command = commands.add_parser(
        "compress", parents=[common],
        help="drop blocks and recover from a tiny set; save the result",
        description=(
            "Drop blocks of MODEL, chosen by recoverability on a tiny set, "
            "recover by feature mimicking and save a plain Keras model."
        ),
    )
    command.set_defaults(run="compress")
    command.add_argument(
        "model", help="trained model, a .keras file or a KerasHub preset folder"
    )
    command.add_argument(
        "--out", required=True,
        help="where to save the compressed model (a .keras file)",
    )
    command.add_argument(
        "--export", metavar="FORMAT",
        help=(
            "also export the compressed model beside --out: onnx, litert, "
            "saved_model or openvino (small.onnx, "
            "small.tflite, small.xml, small_saved_model/), checked in its runtime"
        ),
    )
    command.add_argument(
        "--quantize", metavar="int8",
        help=(
            "with --export: quantize the exported file to int8 with its "
            "runtime's own quantizer, calibrated on the tiny set and checked "
            "against the float model"
        ),
    )
    command.add_argument(
        "--data",
        help=(
            "the tiny set: an image folder (one subfolder per class, or flat "
            "and unlabeled), a .npz file (arrays 'images' or 'x', optional "
            "'labels' or 'y'), a .npy file of images, or a "
            "tensorflow-datasets name such as cifar10 or "
            "imagenet2012:validation; omitted: images are synthesised from "
            "the model (data-free)"
        ),
    )
    command.add_argument(
        "--data-dir", help="folder of prepared tensorflow-datasets datasets"
    )
    _add_what_to_remove(command)
    _add_tiny_set_and_training(command)


def _add_what_to_remove(command):
    """Flags choosing the scheme and what it removes."""
    target = command.add_mutually_exclusive_group()
    target.add_argument(
        "--drop", type=int, default=3,
        help="number of blocks to drop (default: 3)",
    )
    target.add_argument(
        "--latency-target", type=float,
        help="fraction of latency to remove instead of a block count, e.g. 0.2",
    )
    target.add_argument(
        "--blocks", type=_block_list,
        help=(
            "blocks to drop, skipping selection: comma-separated names or "
            "stage.position labels, e.g. 1.2,2.2 (see the blocks command)"
        ),
    )
    command.add_argument(
        "--scheme", choices=registry.SCHEMES, default="blocks",
        help=(
            "; ".join(f"{e.name}: {e.summary}" for e in registry.ENTRIES)
            + ". With a layer-wise scheme --steps is per layer, --method "
            "picks its recovery and block options are refused"
        ),
    )
    for option in registry.cli_options():
        command.add_argument(
            "--" + option.name.replace("_", "-"), type=option.parse,
            help=option.help,
        )
    command.add_argument(
        "--method",
        help=(
            "recovery recipe: mimic (default; label-free feature mimicking), "
            "mimic_ce, ce, kd, fitnet, stagewise or none; with a layer-wise "
            "--scheme: layerwise (default; the per-layer adaptors alone), "
            "mimic, mimic_ce, ce, kd or fitnet"
        ),
    )


def _add_tiny_set_and_training(command):
    """Flags of the tiny set, the training, the guard and the report."""
    command.add_argument(
        "--min-agreement", type=float, default=0.8,
        help=(
            "warn when the result agrees with the teacher's top-1 class on "
            "fewer held-out views than this (default: 0.8; 0: no guard)"
        ),
    )
    command.add_argument(
        "--strict", action="store_true",
        help="fail instead of warning when --min-agreement is not met",
    )
    command.add_argument(
        "--num-samples", type=int,
        help="images to draw from --data (or to synthesise; default 64)",
    )
    command.add_argument(
        "--per-class", type=int,
        help="images to draw per class instead (needs labels)",
    )
    command.add_argument(
        "--seed", type=int, default=0,
        help="seed of the draw, augmentation and training (default: 0)",
    )
    command.add_argument(
        "--steps", type=int, default=200,
        help="adaptor-training steps per candidate block (default: 200)",
    )
    command.add_argument(
        "--finetune-steps", type=int, default=500,
        help="optimizer steps of the recovery (default: 500)",
    )
    command.add_argument(
        "--batch-size", type=int,
        help="training batch size (default: min(64, number of views))",
    )
    command.add_argument(
        "--augment-views", type=int,
        help="augmented views per image (0: the images themselves)",
    )
    command.add_argument(
        "--memory-budget", type=_memory_budget, default=4.0,
        help=(
            "GiB the views, teacher features and training may take beyond "
            "the framework ('none': unbounded; default: 4)"
        ),
    )
    command.add_argument(
        "--validation-split", type=float, default=0.0,
        help=(
            "fraction of the images held out whole from training: selection, "
            "the recovery's early stop and the fidelity estimate judge on "
            "them (default: 0)"
        ),
    )
    command.add_argument(
        "--latency", default="measured",
        help=(
            "how a block's latency saving is assessed: timed in Keras on this "
            "machine, estimated from MACs, or timed in the runtime the model "
            "ships in (onnxruntime, litert, openvino) (default: measured)"
        ),
    )
    command.add_argument(
        "--latency-batch-size", type=int, default=8,
        help=(
            "batch size of the before/after latency figures (and, with "
            "--quantize, of the int8 file against the float one in its "
            "runtime); 0 skips them (default: 8)"
        ),
    )
    command.add_argument(
        "--image-size", nargs="+", action=_ImageSizeAction, metavar="SIZE",
        help="H W or HxW: input size for models that accept any size",
    )
    command.add_argument(
        "--preprocess",
        help=(
            "applied to loaded images: 'rescale' (divide by 255) or a "
            "keras.applications module whose preprocess_input to use, e.g. "
            "resnet, resnet_v2, vgg16, mobilenet_v2 (default: none)"
        ),
    )
    command.add_argument(
        "--report", help="also write the report as JSON to this file"
    )
    command.add_argument(
        "-q", "--quiet", action="store_true",
        help="no progress output on stderr",
    )


def _add_blocks(commands, common):
    command = commands.add_parser(
        "blocks", parents=[common],
        help="list the droppable blocks of a model",
        description="List the blocks of MODEL that compress can drop.",
    )
    command.set_defaults(run="blocks")
    command.add_argument("model", help="a .keras file or a KerasHub preset folder")


def _add_latency(commands, common):
    command = commands.add_parser(
        "latency", parents=[common],
        help="compare the inference latency of models",
        description=(
            "Measure the latency of MODELs interleaved on the same random "
            "input; the first is the reference for ratios."
        ),
    )
    command.set_defaults(run="latency")
    command.add_argument("models", nargs="+", metavar="MODEL", help=".keras files or KerasHub preset folders")
    command.add_argument(
        "--batch-size", type=int, default=64,
        help="examples per timed call (default: 64)",
    )
    command.add_argument(
        "--runs", type=int, default=30,
        help="timed runs (default: 30)",
    )
    command.add_argument(
        "--warmup", type=int, default=5,
        help="untimed runs before them (default: 5)",
    )
    command.add_argument(
        "--image-size", nargs="+", action=_ImageSizeAction, metavar="SIZE",
        help="H W or HxW: input size for models that accept any size",
    )
    command.add_argument(
        "--runtime", default="keras",
        help=(
            "where to time the models: keras, or exported to onnxruntime, "
            "litert or openvino (default: keras)"
        ),
    )
    command.add_argument(
        "--threads", type=int,
        help="CPU threads of a --runtime other than keras (default: its own)",
    )
    command.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar on stderr"
    )
