"""The `keras-practise` command: compress, list blocks, compare latency.

Compress a saved model with 50 images drawn from a class-per-folder tree,
dropping 3 blocks, and keep the report:

    keras-practise compress teacher.keras --data images/ --num-samples 50 \
        --drop 3 --out small.keras --report report.json

List the droppable blocks (names and `stage.position` labels that
`--blocks` accepts), and compare latencies:

    keras-practise blocks teacher.keras
    keras-practise latency teacher.keras small.keras --batch-size 8 --runs 30

`python -m keras_practise ...` is the same command. Results go to stdout;
progress bars and logs go to stderr. Bad input ends with exit status 1 (2 for
bad flags) and one line `keras-practise: error: <reason>`. Output files are
written whole or not at all.

`--backend tensorflow|torch|jax` picks the Keras backend. Importing
keras_practise imports Keras, which fixes the backend, so when the running
one differs the command runs again in a child process with `KERAS_BACKEND`
set; setting `KERAS_BACKEND` yourself saves that second start.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np

import keras_practise
from keras_practise import pipeline
from keras_practise import schemes
from keras_practise.export import exporter
from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import candidates
from keras_practise.graph import flat_graph as graph_lib
from keras_practise.profiling import runtime_latency
from keras_practise.recovery import recipes as recovery
from keras_practise.utils import model_io

PROG = "keras-practise"
# Each backend's package has the backend's name.
BACKENDS = ("tensorflow", "torch", "jax")
_NPZ_IMAGE_KEYS = ("images", "x")
_NPZ_LABEL_KEYS = ("labels", "y")


class _UsageError(Exception):
    """A command-line usage error, reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are raised, not printed with usage.

    `main` turns them into the one-line error every failure gets, and
    in-process callers get a return code instead of `SystemExit`.
    """

    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _number(text):
    """An integer when `text` is one (a count), else a float (a fraction)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number (e.g. 3 or 0.2), received {text!r}"
        ) from None


def _block_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            "expected comma-separated block names or stage.position labels "
            f"(e.g. 1.2,2.2), received {text!r}"
        )
    return names


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


def _build_parser():
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
    command.set_defaults(run=_run_compress)
    command.add_argument(
        "model", help="trained model, a .keras file or a KerasHub preset folder"
    )
    command.add_argument(
        "--out", required=True,
        help="where to save the compressed model (a .keras file)",
    )
    command.add_argument(
        "--export", choices=sorted(exporter.FORMATS),
        help=(
            "also export the compressed model beside --out (small.onnx, "
            "small.tflite, small.xml, small_saved_model/), checked in its runtime"
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
        "--scheme", choices=("blocks",) + schemes.SCHEMES, default="blocks",
        help=(
            "blocks (default), or a layer-wise scheme recovered by 1x1 "
            "adaptors: filters (--keep), decouple (--rank), lowrank "
            "(--energy or --rank), sparse (--sparsity); --steps is then per "
            "layer, --method picks its recovery (layerwise, mimic, mimic_ce, "
            "or the ce, kd, fitnet baselines) and block options are refused"
        ),
    )
    command.add_argument("--keep", type=float, help="filters: kept fraction (0.5)")
    command.add_argument(
        "--rank", type=_number,
        help="decouple: filters per channel (3); lowrank: kept fraction or count",
    )
    command.add_argument(
        "--layers", type=lambda text: [n for n in text.split(",") if n],
        help=(
            "layer-wise schemes: comma-separated convs to compress (default: "
            "every candidate); filters also takes residual streams, named by "
            "their first producing conv"
        ),
    )
    command.add_argument("--energy", type=float, help="lowrank: PCA energy (0.4)")
    command.add_argument("--sparsity", type=float, help="sparse: zeros (0.9)")
    command.add_argument(
        "--method",
        choices=recovery.METHODS + tuple(
            m for m in schemes.METHODS if m not in recovery.METHODS
        ),
        help=(
            "recovery recipe (default: mimic, label-free feature mimicking; "
            "with --scheme: layerwise, the per-layer adaptors alone)"
        ),
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
        "--latency",
        choices=("measured", "macs", *sorted(runtime_latency.RUNTIMES)),
        default="measured",
        help=(
            "how a block's latency saving is assessed: timed in Keras on this "
            "machine, estimated from MACs, or timed in the runtime the model "
            "ships in (onnxruntime, litert, openvino) (default: measured)"
        ),
    )
    command.add_argument(
        "--latency-batch-size", type=int, default=8,
        help=(
            "batch size of the before/after latency figures; 0 skips them "
            "(default: 8)"
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
    command.set_defaults(run=_run_blocks)
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
    command.set_defaults(run=_run_latency)
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
        "--runtime", choices=("keras", *sorted(runtime_latency.RUNTIMES)),
        default="keras",
        help="where to time the models: Keras, or exported to a runtime",
    )
    command.add_argument(
        "--threads", type=int,
        help="CPU threads of a --runtime other than keras (default: its own)",
    )
    command.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar on stderr"
    )


def _load_model(path):
    return model_io.load_model(path)


def _load_data(data):
    """Returns what `compress` takes as `data` for the `--data` argument.

    `.npz` and `.npy` files are read here; folders and dataset names are
    passed on to `load_tiny_set` as they are.
    """
    if data is None or not data.lower().endswith((".npz", ".npy")):
        return data
    if not os.path.isfile(data):
        raise FileNotFoundError(f"Data file not found. Received: --data {data!r}")
    if data.lower().endswith(".npy"):
        return np.load(data, allow_pickle=False)
    with np.load(data, allow_pickle=False) as arrays:
        keys = list(arrays.keys())
        image_key = next((k for k in _NPZ_IMAGE_KEYS if k in keys), None)
        if image_key is None:
            raise ValueError(
                f"The .npz file must hold the images under 'images' or 'x'. "
                f"Received: {data!r} with arrays {keys}"
            )
        label_key = next((k for k in _NPZ_LABEL_KEYS if k in keys), None)
        if label_key is None:
            return arrays[image_key]
        return arrays[image_key], arrays[label_key]


def _preprocess_function(name):
    if name is None:
        return None
    if name == "rescale":
        return lambda images: images / 255.0
    module = getattr(keras.applications, name, None)
    if not hasattr(module, "preprocess_input"):
        choices = sorted(
            m for m in dir(keras.applications)
            if hasattr(getattr(keras.applications, m), "preprocess_input")
        )
        raise ValueError(
            "--preprocess must be 'rescale' or a keras.applications module "
            f"with preprocess_input, one of {choices}. Received: {name!r}"
        )
    return module.preprocess_input


def _check_output(path, flag, taken):
    """Refuses output paths that would clobber an input or lead nowhere."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"The folder of {flag} does not exist. Received: {flag} {path!r}"
        )
    for other_flag, other in taken.items():
        if os.path.realpath(path) == os.path.realpath(other):
            raise ValueError(
                f"{flag} must differ from {other_flag}. Received: {path!r}"
            )


@contextlib.contextmanager
def _staged(paths):
    """Yields temporary paths that replace `paths` only if the block succeeds.

    Each temporary file lives in a fresh hidden folder beside its target, so
    `os.replace` is an atomic rename on the same file system and files get
    the usual permissions; whatever else is written into that folder (the
    `.bin` beside an OpenVINO `.xml`) moves beside the target with it. The
    folders are removed whatever happens.
    """
    folders, temporary = [], []
    try:
        for path in paths:
            folder = tempfile.mkdtemp(
                prefix=f".{os.path.basename(path)}.",
                dir=os.path.dirname(os.path.abspath(path)),
            )
            folders.append(folder)
            temporary.append(os.path.join(folder, os.path.basename(path)))
        yield temporary
        for folder, path in zip(folders, paths):
            target_folder = os.path.dirname(os.path.abspath(path))
            for name in os.listdir(folder):
                target = os.path.join(target_folder, name)
                if os.path.isdir(target) and not os.path.islink(target):
                    # A SavedModel folder written by an earlier run.
                    shutil.rmtree(target)
                os.replace(os.path.join(folder, name), target)
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _outputs(args):
    """Checks the output paths; returns `{flag: path}` of those requested."""
    if not args.out.endswith(".keras"):
        raise ValueError(
            f"--out must be a .keras file. Received: --out {args.out!r}"
        )
    outputs = {"--out": args.out}
    if args.report is not None:
        outputs["--report"] = args.report
    if args.export is not None:
        outputs["--export"] = exporter.path_beside(args.out, args.export)
    taken = {"the model": args.model}
    for flag, path in outputs.items():
        _check_output(path, flag, taken)
        taken[flag] = path
    return outputs


def _run_compress(args):
    outputs = _outputs(args)
    settings = dict(
        steps=args.steps,
        batch_size=args.batch_size,
        num_samples=args.num_samples,
        per_class=args.per_class,
        seed=args.seed,
        image_size=args.image_size,
        augment_views=args.augment_views,
        data_dir=args.data_dir,
        verbose=0 if args.quiet else 1,
        latency_target=args.latency_target,
        blocks=args.blocks,
        method=args.method,
        finetune_steps=args.finetune_steps,
        latency=args.latency,
    )
    scheme_options = {
        k: getattr(args, k)
        for k in ("keep", "layers", "rank", "energy", "sparsity")
        if getattr(args, k) is not None
    }
    if args.scheme != "blocks":
        # Block options go too, for the API to refuse rather than ignore.
        settings.update(scheme=args.scheme, **scheme_options)
    else:
        if scheme_options:
            raise ValueError(
                "--keep, --layers, --rank, --energy and --sparsity go with a layer-wise "
                f"--scheme. Received: {sorted(scheme_options)} with --scheme blocks"
            )
        settings.update(
            drop=args.drop, latency_batch_size=args.latency_batch_size
        )
        # The same checks as the API, before the model and data are loaded.
        pipeline.check_settings(settings)
    if args.export is not None:
        # A missing runtime is an error before any loading or training.
        exporter.resolve_target((args.export, outputs["--export"]))
    preprocess = _preprocess_function(args.preprocess)
    model = _load_model(args.model)
    data = _load_data(args.data)
    # Everything is written into staging folders and moved into place at the
    # end, so an interrupted or failed run leaves no output at all.
    with _staged(list(outputs.values())) as temporary:
        staged = dict(zip(outputs, temporary))
        if args.export is not None:
            settings["export"] = (args.export, staged["--export"])
        small, report = keras_practise.compress(
            model, data=data, preprocess=preprocess, return_report=True,
            **settings,
        )
        if report.exported:
            report.exported["path"] = os.path.abspath(outputs["--export"])
        small.save(staged["--out"])
        if args.report is not None:
            with open(staged["--report"], "w") as file:
                json.dump(report.to_dict(), file, indent=2)
    lines = [report.table()]
    what = {
        "--out": "the compressed model", "--report": "the report",
        "--export": f"the {args.export} export",
    }
    lines += [f"Saved {what[flag]} to {path}" for flag, path in outputs.items()]
    return "\n".join(lines)


def _run_blocks(args):
    model = _load_model(args.model)
    return blocks_lib.blocks_table(candidates.require_blocks(model))


def _run_latency(args):
    if len(set(args.models)) != len(args.models):
        raise ValueError(f"Give each model once. Received: {args.models}")
    models = {path: _load_model(path) for path in args.models}
    input_shape = None
    if args.image_size is not None:
        first = next(iter(models.values()))
        channels = graph_lib.input_shape(first)[-1]
        input_shape = (*args.image_size, channels)
    comparison = keras_practise.compare_latency(
        models,
        batch_size=args.batch_size,
        input_shape=input_shape,
        runs=args.runs,
        warmup=args.warmup,
        progress=not args.quiet,
        runtime=args.runtime,
        threads=args.threads,
    )
    return comparison.table()


def _rerun_with_backend(backend, argv):
    """Runs the command again in a child process on `backend`."""
    if os.environ.get("KERAS_BACKEND") == backend:
        # The child would end up here again: Keras was set up otherwise.
        raise ValueError(
            f"KERAS_BACKEND={backend} is set, but Keras runs on "
            f"{keras.backend.backend()}. Received: --backend {backend}"
        )
    if importlib.util.find_spec(backend) is None:
        raise ImportError(
            f"The {backend} backend needs the {backend} package "
            f"(pip install keras-practise[{backend}]). "
            f"Received: --backend {backend}"
        )
    # The child imports this very package first: `python -m` would look in
    # the working directory before it, where a folder of the same name may be.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        f"import sys; sys.path.insert(0, {package_root!r}); "
        "from keras_practise.cli import main; sys.exit(main())"
    )
    env = dict(os.environ, KERAS_BACKEND=backend)
    command = [sys.executable, "-c", code, *argv]
    return subprocess.run(command, env=env, check=False).returncode


def _error(message):
    # One line, whatever the library's message looks like.
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv=None):
    """Runs the `keras-practise` command.

    Args:
        argv: Command-line arguments without the program name. Defaults to
            `sys.argv[1:]`.

    Returns:
        The exit status: 0 on success, 1 on bad input or a failed run, 2 on
        bad flags, 130 when interrupted.

    Example:

    ```python
    from keras_practise import cli

    cli.main(["blocks", "teacher.keras"])
    ```
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _build_parser().parse_args(argv)
    except _UsageError as error:
        _error(error)
        return 2
    try:
        if args.backend is not None and args.backend != keras.backend.backend():
            return _rerun_with_backend(args.backend, argv)
        # Keras and the library print progress to stdout; stdout is kept for
        # the results, printed once the work has succeeded.
        with contextlib.redirect_stdout(sys.stderr):
            output = args.run(args)
    except (ValueError, TypeError, OSError, ImportError) as error:
        _error(error)
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    print(output)
    return 0
