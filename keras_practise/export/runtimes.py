"""Running an exported file in its own runtime (ONNX Runtime, LiteRT, ...).

Each runtime is an optional dependency; a missing one is an `ImportError`
that names the pip extra that installs it.
"""

import importlib

import numpy as np

# Format -> (module the runtime check imports, extra that installs it).
RUNTIMES = {
    "onnx": ("onnxruntime", "onnx"),
    "litert": ("ai_edge_litert.interpreter", "litert"),
    "saved_model": ("tensorflow", "tensorflow"),
    "openvino": ("openvino", "openvino"),
}


def require(module, extra):
    """Imports `module`, or raises an `ImportError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"This needs the `{module}` package: "
            f'`pip install "keras-practise[{extra}]"`.'
        ) from error


def _load_onnx(path, threads):
    ort = require(*RUNTIMES["onnx"])
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        path, options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _load_litert(path, threads):
    interpreter_lib = require(*RUNTIMES["litert"])
    interpreter = interpreter_lib.Interpreter(model_path=path, num_threads=threads)
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]["index"]
    shape = [None]

    def run(x):
        if shape[0] != x.shape:  # Resizing re-plans memory: only on change.
            interpreter.resize_tensor_input(detail["index"], x.shape)
            interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return run


def _load_saved_model(path, threads):
    tf = require(*RUNTIMES["saved_model"])
    # The loaded object owns the variables: the closure keeps it alive.
    loaded = tf.saved_model.load(path)
    return lambda x: np.asarray(loaded.serve(x))


def _load_openvino(path, threads):
    ov = require(*RUNTIMES["openvino"])
    # OpenVINO runs in bfloat16 by default on CPUs that support it (AMX,
    # AVX512-BF16): differences of ~1e-2 there. The check wants float32.
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(path, "CPU", config)
    return lambda x: np.asarray(compiled(x)[0])


_LOADERS = {
    "onnx": _load_onnx,
    "litert": _load_litert,
    "saved_model": _load_saved_model,
    "openvino": _load_openvino,
}


def load_runner(path, format, threads=None):
    """Loads an exported model in its runtime, once, for repeated calls.

    Args:
        path: The exported file (a folder for `"saved_model"`).
        format: One of `exporter.FORMATS`.
        threads: Number of CPU threads the runtime may use. Defaults to the
            runtime's own choice.

    Returns:
        A function `f(x)` from a float32 numpy batch to the first output.

    Raises:
        ImportError: If the runtime is not installed (names the extra).
    """
    return _LOADERS[format](path, threads)


def run_exported(path, format, x):
    """Runs an exported model on `x` in its runtime and returns the output.

    Args:
        path: The exported file (a folder for `"saved_model"`).
        format: One of `exporter.FORMATS`.
        x: A float32 numpy batch.

    Returns:
        The first output as a numpy array.

    Raises:
        ImportError: If the runtime is not installed (names the extra).
    """
    runner = load_runner(path, format)
    return np.asarray(runner(np.asarray(x, dtype="float32")))
