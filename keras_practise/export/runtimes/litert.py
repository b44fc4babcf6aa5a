"""LiteRT (`.tflite`) files in the LiteRT interpreter; int8 by the converter.

The int8 file comes from TensorFlow Lite's converter with the tiny set as
its `representative_dataset`, through Keras' own LiteRT export (converter
settings passed through `keras.Model.export`). Operators with an int8
kernel (convolutions, dense, additions, pooling, ...) are converted to
full-integer; the rest fall back to float kernels. The model's input and
output stay float32 (a quantize op after the input, a dequantize op before
the output), so the file is called like the float one.

Keras writes LiteRT from the TensorFlow backend only: on another backend
both the float and the int8 file are written in a TensorFlow subprocess.
"""

import os
import tempfile

import keras
import numpy as np

from keras_practise.export import writer
from keras_practise.export.runtimes import runtime as runtime_lib


def load(path, threads):
    """A LiteRT interpreter, as `f(x) -> first output`."""
    interpreter_lib = RUNTIME.require()
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


def quantize(model, path, calibration):
    """Writes an int8 `.tflite` file calibrated on `calibration`."""
    if keras.backend.backend() == "tensorflow":
        _write_int8(model, path, calibration)
        return
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as folder:
        calibration_path = os.path.join(folder, "calibration.npy")
        np.save(calibration_path, calibration)
        writer.in_tensorflow(
            model, f"{__name__}.write_int8_saved", path, calibration_path
        )


def write_int8_saved(model_path, path, calibration_path):
    """`quantize` for a `.keras` file (run in the TensorFlow subprocess)."""
    _write_int8(
        keras.saving.load_model(model_path), path, np.load(calibration_path)
    )


def _write_int8(model, path, calibration):
    tf = runtime_lib.require("tensorflow", "tensorflow")

    def representative_dataset():
        for image in calibration:
            yield [image[None]]

    writer.write(
        model,
        path,
        RUNTIME,
        optimizations=[tf.lite.Optimize.DEFAULT],
        representative_dataset=representative_dataset,
        target_spec={
            "supported_ops": [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
        },
    )


RUNTIME = runtime_lib.Runtime(
    format="litert",
    name="litert",
    keras_format="litert",
    suffix=".tflite",
    module="ai_edge_litert.interpreter",
    extra="litert",
    load=load,
    tensorflow_only=True,
    quantize=quantize,
)
