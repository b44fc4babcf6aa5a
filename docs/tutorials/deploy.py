"""
Title: Deploy: from a `.keras` teacher to a shipped, verified, faster file
Author: keras_practise
Date created: 2026/12/03
Last modified: 2026/12/06
Description: Choose blocks by latency in ONNX Runtime, compress, export to ONNX/LiteRT/OpenVINO (float and int8), check the file in its runtime.
Accelerator: None
"""

"""
## Introduction

PRACTISE's argument is wall-clock latency on the device that runs the model.
That device rarely runs Keras: models ship as ONNX (ONNX Runtime), LiteRT
(`.tflite`) or OpenVINO files. A block that is cheap in Keras can be
expensive there and the other way round, so this tutorial keeps the runtime
the model ships in in charge from the first choice to the file:

1. `compress(..., latency="onnxruntime")` times every candidate block in ONNX
   Runtime (each candidate-dropped model is exported once and timed against
   the original, interleaved);
2. `compress(..., export="small.onnx")` writes the result as ONNX, loads the
   file in ONNX Runtime and compares its outputs with the Keras model's on
   the tiny set; the report records the file, its size and the difference;
3. `keras_practise.export` writes the other formats the same way, each
   checked in its own runtime;
4. `measure_latency(..., runtime=...)` times teacher and result where they
   will run;
5. `keras_practise.export(..., quantize="int8", calibration=tiny_set)` adds
   an int8 file, quantized by the runtime's own quantizer with the tiny set
   as calibration data and checked against the float model.

The runtimes are optional extras: `pip install "keras-practise[onnx]"`
(`[litert]`, `[openvino]`, which brings NNCF); a missing one is an error
naming its extra.
Set `KP_TUTORIAL_FAST=1` to shrink every size (the numbers printed are then
meaningless).
"""

"""
## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import importlib.util

import keras

import keras_practise
from keras_practise.demo import digits

FAST = os.environ.get("KP_TUTORIAL_FAST") == "1"
NUM_IMAGES = 16 if FAST else 50
STEPS = 2 if FAST else 200
FINETUNE_STEPS = 3 if FAST else 500
RUNS = 3 if FAST else 30

teacher = keras.saving.load_model(digits.TEACHER_PATH)
tiny_set, _ = digits.load_cluttered_digits("train", num_images=NUM_IMAGES, seed=0)

"""
## Compress, choosing blocks by their saving in ONNX Runtime

`latency="onnxruntime"` replaces the Keras timing of each candidate. Any
other device or harness fits in as a callable `latency=f(model) -> ms`.
"""

small, report = keras_practise.compress(
    teacher,
    tiny_set,
    drop=2,
    steps=STEPS,
    finetune_steps=FINETUNE_STEPS,
    latency="onnxruntime",
    export="small.onnx",
    return_report=True,
    verbose=0,
)
print(report)
print(f"ONNX file checked: max |onnxruntime - keras| = "
      f"{report.exported['max_abs_diff']:.1e}")

"""
## Export to the other runtimes

Each file is written beside its target, loaded in its runtime, compared with
the Keras model on the sample, and only then renamed into place: a broken
export raises a `ValueError` and leaves no file. LiteRT and SavedModel are
written by Keras on the TensorFlow backend; on another backend a
TensorFlow-backend subprocess writes them from a `.keras` copy.
"""

for format, path, module in [
    ("litert", "small.tflite", "ai_edge_litert"),
    ("openvino", "small.xml", "openvino"),
]:
    if importlib.util.find_spec(module) is None:
        print(f"{format}: not installed (pip install \"keras-practise[{format}]\")")
        continue
    print(keras_practise.export(small, path, format=format, sample=tiny_set[:8]))

"""
## Latency where it runs

One thread at batch 1 is what a small edge device sees; the paper used one
GPU at batch 64. Both models are exported and timed in ONNX Runtime.
"""

comparison = keras_practise.compare_latency(
    {"teacher": teacher, "compressed": small},
    batch_size=1,
    runs=RUNS,
    runtime="onnxruntime",
    threads=1,
)
print(comparison)
print(f"ONNX Runtime latency saved: {100 * comparison.reductions['compressed']:.1f}%")

"""
## Ship it int8 too

A smaller network is usually quantized next. Each runtime has its own
post-training int8 quantizer, and all of them need what PRACTISE already
has: a few representative images. `export(..., quantize="int8",
calibration=tiny_set)` hands the tiny set to LiteRT's converter (as its
`representative_dataset`), to ONNX Runtime's `quantize_static` or to NNCF
for OpenVINO. No labels are needed.

The check is made for int8: the file's outputs are compared with the float
Keras model's on held-out inputs (here the last quarter of the tiny set,
which is then not used to calibrate), and the file is refused, leaving
nothing on disk, if its top-1 class agrees with the float model's on less
than `min_agreement` of them. Weights and activations of convolutions,
dense layers and additions become int8; each file's input and output stay
float32, so it is called like the float file.
"""

int8_files = {}
for format, path, module in [
    ("onnx", "small_int8.onnx", "onnxruntime"),
    ("litert", "small_int8.tflite", "ai_edge_litert"),
    ("openvino", "small_int8.xml", "nncf"),
]:
    if importlib.util.find_spec(module) is None:
        print(f"{format} int8: not installed (pip install \"keras-practise[{format}]\")")
        continue
    int8_files[format] = keras_practise.export(
        small, path, format=format, quantize="int8", calibration=tiny_set,
        min_agreement=0.0 if FAST else 0.9,
    )
    print(int8_files[format])

"""
Latency of the int8 file where it runs, against the float file, timed
interleaved round by round like `compare_latency`:
"""

from keras_practise.profiling import latency as latency_lib

if "onnx" in int8_files:
    comparison = latency_lib.compare_exported_latency(
        {"float": ("onnx", "small.onnx"), "int8": int8_files["onnx"]},
        input_shape=tiny_set.shape[1:],
        batch_size=1,
        runs=RUNS,
        threads=1,
    )
    print(comparison)

"""
How much int8 adds on top of block dropping on the bundled digits teacher,
per runtime, is measured by `benchmarks/quantization.py` (docs/results.md,
"Block dropping and int8").
"""
