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


def _run_onnx(path, x):
    ort = require(*RUNTIMES["onnx"])
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _run_litert(path, x):
    interpreter_lib = require(*RUNTIMES["litert"])
    interpreter = interpreter_lib.Interpreter(model_path=path)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _run_saved_model(path, x):
    tf = require(*RUNTIMES["saved_model"])
    # The loaded object owns the variables: keep it alive while it runs.
    loaded = tf.saved_model.load(path)
    return np.asarray(loaded.serve(x))


def _run_openvino(path, x):
    ov = require(*RUNTIMES["openvino"])
    # OpenVINO runs in bfloat16 by default on CPUs that support it (AMX,
    # AVX512-BF16): differences of ~1e-2 there. The check wants float32.
    compiled = ov.Core().compile_model(
        path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    return np.asarray(compiled(x)[0])


_RUNNERS = {
    "onnx": _run_onnx,
    "litert": _run_litert,
    "saved_model": _run_saved_model,
    "openvino": _run_openvino,
}


def run_exported(path, format, x):
    """Runs an exported model on `x` in its runtime and returns the output.

    Args:
        path: The exported file (a folder for `"saved_model"`).
        format: One of `FORMATS`.
        x: A float32 numpy batch.

    Returns:
        The first output as a numpy array.

    Raises:
        ImportError: If the runtime is not installed (names the extra).
    """
    return np.asarray(_RUNNERS[format](path, np.asarray(x, dtype="float32")))
