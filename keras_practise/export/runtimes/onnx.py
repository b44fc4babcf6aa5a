"""ONNX files in ONNX Runtime; int8 by ONNX Runtime's static quantizer.

`quantize_static` calibrates activation ranges on the tiny set and writes a
QDQ model (int8 weights per output channel, uint8 activations, the
combination ONNX Runtime recommends for x86 CPUs), which ONNX Runtime fuses
into integer kernels (QLinearConv, QLinearMatMul, ...) when it loads it. The
model's input and output stay float32; operators without an integer kernel
run in float between dequantize and quantize nodes.
"""

import os
import tempfile

from keras_practise.export import writer
from keras_practise.export.runtimes import runtime as runtime_lib


def load(path, threads):
    """An ONNX Runtime session on the CPU, as `f(x) -> first output`."""
    ort = RUNTIME.require()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        path, options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def quantize(model, path, calibration):
    """Writes an int8 ONNX file calibrated on `calibration` (see module)."""
    ort = RUNTIME.require(quantize=True)
    quantization = runtime_lib.require("onnxruntime.quantization", RUNTIME.extra)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as folder:
        float_path = os.path.join(folder, "float.onnx")
        writer.write(model, float_path, RUNTIME)
        prepared = os.path.join(folder, "prepared.onnx")
        # Shape inference and graph clean-up before quantizing, as ONNX
        # Runtime's quantization guide asks.
        quantization.shape_inference.quant_pre_process(float_path, prepared)
        name = ort.InferenceSession(
            prepared, providers=["CPUExecutionProvider"]
        ).get_inputs()[0].name
        quantization.quantize_static(
            prepared,
            path,
            _reader(quantization, name, calibration),
            quant_format=quantization.QuantFormat.QDQ,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
        )


def _reader(quantization, name, images):
    """A `CalibrationDataReader` giving one image at a time."""

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self._batches = iter(images[:, None])

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {name: batch}

    return Reader()


RUNTIME = runtime_lib.Runtime(
    format="onnx",
    name="onnxruntime",
    keras_format="onnx",
    suffix=".onnx",
    module="onnxruntime",
    extra="onnx",
    load=load,
    converters={"tensorflow": ("tf2onnx", "onnx"), "torch": ("onnxscript", "onnx")},
    quantize=quantize,
    quantizer_modules=("onnx",),
)
