"""OpenVINO IR files (`.xml` + `.bin`); int8 by NNCF.

`nncf.quantize` inserts FakeQuantize nodes, calibrated on the tiny set, on
the inputs of convolutions, matrix multiplications and the element-wise
operations around them (NNCF's default "performance" preset: symmetric
int8); OpenVINO's CPU plugin runs those operations in int8. The model's
input and output, and operations NNCF leaves unquantized (e.g. softmax),
stay float32.
"""

import contextlib
import io
import logging
import os
import tempfile

import numpy as np

from keras_practise.export import writer
from keras_practise.export.runtimes import runtime as runtime_lib


def load(path, threads):
    """An OpenVINO model compiled for the CPU, as `f(x) -> first output`."""
    ov = RUNTIME.require()
    # OpenVINO runs in bfloat16 by default on CPUs that support it (AMX,
    # AVX512-BF16): differences of ~1e-2 there. The check wants float32 for
    # everything that is not quantized.
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(path, "CPU", config)
    return lambda x: np.asarray(compiled(x)[0])


def quantize(model, path, calibration):
    """Writes an int8 OpenVINO IR calibrated on `calibration` (see module)."""
    ov = RUNTIME.require(quantize=True)
    nncf = runtime_lib.require("nncf", RUNTIME.extra)
    nncf.set_log_level(logging.ERROR)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as folder:
        float_path = os.path.join(folder, "float.xml")
        writer.write(model, float_path, RUNTIME)
        # NNCF draws progress bars on stdout; the export reports its own.
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(
                ov.Core().read_model(float_path),
                nncf.Dataset(list(calibration[:, None])),
                subset_size=len(calibration),
            )
    ov.save_model(quantized, path, compress_to_fp16=False)


RUNTIME = runtime_lib.Runtime(
    format="openvino",
    name="openvino",
    keras_format="openvino",
    suffix=".xml",
    module="openvino",
    extra="openvino",
    load=load,
    companions=(".bin",),
    quantize=quantize,
    quantizer_modules=("nncf",),
)
