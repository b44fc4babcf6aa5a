"""What the `keras-practise` commands do, once their flags are parsed.

Results go to stdout; progress bars and logs go to stderr. Output files are
written whole or not at all (`staged`).
"""

import contextlib
import json
import os
import shutil
import tempfile

import keras
import numpy as np

import keras_practise
from keras_practise import pipeline
from keras_practise.cli import parser
from keras_practise.export import exporter
from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import candidates
from keras_practise.graph import flat_graph as graph_lib
from keras_practise.profiling import runtime_latency
from keras_practise.schemes import registry
from keras_practise.utils import model_io

_NPZ_IMAGE_KEYS = ("images", "x")
_NPZ_LABEL_KEYS = ("labels", "y")


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


@contextlib.contextmanager
def _checking_flags():
    """Reports a `ValueError`/`TypeError` of the flag checks as a usage error.

    The checks that need the library (scheme, method, export format,
    runtime) run after parsing, before anything is loaded; their errors are
    bad flags like argparse's own, with exit status 2.
    """
    try:
        yield
    except (ValueError, TypeError) as error:
        # The library's own words, as the API would raise them.
        raise parser.UsageError(str(error)) from error


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
def staged(paths):
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
    if args.quantize is not None and args.export is None:
        raise ValueError(
            f"--quantize goes with --export. Received: --quantize {args.quantize}"
        )
    if args.export is not None:
        # An unknown format or a missing runtime is an error before any
        # loading or training.
        exporter.resolve_target((args.export, args.out), quantize=args.quantize)
        outputs["--export"] = exporter.path_beside(args.out, args.export)
    taken = {"the model": args.model}
    for flag, path in outputs.items():
        _check_output(path, flag, taken)
        taken[flag] = path
    return outputs


def run_compress(args):
    with _checking_flags():
        outputs, settings = _compress_settings(args)
    preprocess = _preprocess_function(args.preprocess)
    model = _load_model(args.model)
    data = _load_data(args.data)
    # Everything is written into staging folders and moved into place at the
    # end, so an interrupted or failed run leaves no output at all.
    with staged(list(outputs.values())) as temporary:
        paths = dict(zip(outputs, temporary))
        if args.export is not None:
            settings["export"] = (args.export, paths["--export"])
        small, report = keras_practise.compress(
            model, data=data, preprocess=preprocess, return_report=True,
            **settings,
        )
        if report.exported:
            report.exported["path"] = os.path.abspath(outputs["--export"])
        small.save(paths["--out"])
        if args.report is not None:
            with open(paths["--report"], "w") as file:
                json.dump(report.to_dict(), file, indent=2)
    lines = [report.table()]
    what = {
        "--out": "the compressed model", "--report": "the report",
        "--export": f"the {args.export} export",
    }
    lines += [f"Saved {what[flag]} to {path}" for flag, path in outputs.items()]
    return "\n".join(lines)


def _compress_settings(args):
    """Checks the compress flags; returns the output paths and `compress()`
    keyword arguments."""
    outputs = _outputs(args)
    settings = dict(
        steps=args.steps,
        batch_size=args.batch_size,
        num_samples=args.num_samples,
        per_class=args.per_class,
        seed=args.seed,
        image_size=args.image_size,
        augment_views=args.augment_views,
        validation_split=args.validation_split,
        memory_budget=args.memory_budget,
        data_dir=args.data_dir,
        verbose=0 if args.quiet else 1,
        latency_target=args.latency_target,
        blocks=args.blocks,
        method=args.method,
        finetune_steps=args.finetune_steps,
        latency=args.latency,
        min_agreement=args.min_agreement,
        strict=args.strict,
        quantize=args.quantize,
    )
    scheme_options = {
        o.name: getattr(args, o.name)
        for o in registry.cli_options()
        if getattr(args, o.name) is not None
    }
    block_options = {o.name for o in registry.entry("blocks").options}
    foreign = sorted(set(scheme_options) - block_options)
    if args.scheme == "blocks" and foreign:
        flags = ", ".join("--" + n.replace("_", "-") for n in foreign)
        raise ValueError(
            f"{flags} go with a layer-wise --scheme. Received: "
            f"{foreign} with --scheme blocks"
        )
    # Block options go with every scheme, for the API to refuse rather
    # than ignore them.
    settings.update(
        scheme=args.scheme, drop=args.drop,
        latency_batch_size=args.latency_batch_size, **scheme_options,
    )
    # The same checks as the API, before the model and data are loaded.
    pipeline.check_settings(settings)
    return outputs, settings


def run_blocks(args):
    model = _load_model(args.model)
    return blocks_lib.blocks_table(candidates.require_blocks(model))


def run_latency(args):
    if len(set(args.models)) != len(args.models):
        raise ValueError(f"Give each model once. Received: {args.models}")
    with _checking_flags():
        runtime_latency.check_runtime(args.runtime)
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
