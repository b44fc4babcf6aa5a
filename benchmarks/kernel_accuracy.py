r"""Accuracy of `keras_practise.backend.fused_kernels()` on keras.applications.

The fused torch kernels must compute what Keras' own torch kernels compute.
For each model (random weights, logits, 4 images in [0, 255]) this compares
Keras' float32 kernels and the fused float32 kernels against the same
model in float64 (Keras' kernels), in inference and in training mode
(batch statistics), and prints the largest error relative to the largest
float64 output. The fused kernels pass when their error is of the order of
Keras' own float32 error.

Command (docs/results.md, "Lean torch kernels"):

    KERAS_BACKEND=torch python -m benchmarks.kernel_accuracy
"""

import contextlib
import time

import keras
import numpy as np
from absl import app
from absl import flags

from benchmarks import harness

_APPLICATIONS = {
    "MobileNetV2": keras.applications.MobileNetV2,
    "MobileNetV3Small": keras.applications.MobileNetV3Small,
    "EfficientNetB0": keras.applications.EfficientNetB0,
    "ResNet50V2": keras.applications.ResNet50V2,
    "DenseNet121": keras.applications.DenseNet121,
    "Xception": keras.applications.Xception,
    "ConvNeXtTiny": keras.applications.ConvNeXtTiny,
}
_MODELS = flags.DEFINE_list("models", list(_APPLICATIONS), "keras.applications names.")
_SIZE = flags.DEFINE_integer("size", 71, "Input height and width (Xception needs >= 71).")


def _build(name, size, dtype):
    keras.config.set_dtype_policy(dtype)
    try:
        return _APPLICATIONS[name](
            weights=None, input_shape=(size, size, 3), classes=5,
            classifier_activation=None,
        )
    finally:
        keras.config.set_dtype_policy("float32")


def errors(name, size):
    """`{(kernels, mode): relative error}` of float32 against float64."""
    import torch

    from keras_practise import backend

    keras.utils.set_random_seed(0)
    model = _build(name, size, "float32")
    reference = _build(name, size, "float64")
    weights = model.get_weights()
    reference_weights = [w.astype("float64") for w in weights]
    images = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3))

    def outputs(net, net_weights, x, fused):
        results = {}
        with backend.fused_kernels() if fused else contextlib.nullcontext():
            for mode, training in (("inference", False), ("training", True)):
                # Training mode moves the BatchNorm statistics: restart.
                net.set_weights(net_weights)
                results[mode] = backend.to_numpy(net(x, training=training))
        return results

    expected = outputs(reference, reference_weights, torch.tensor(images), False)
    found = {}
    for kernels, fused in (("Keras", False), ("fused", True)):
        actual = outputs(model, weights, torch.tensor(images.astype("float32")), fused)
        for mode, value in actual.items():
            scale = np.abs(expected[mode]).max() + 1e-30
            found[kernels, mode] = float(np.abs(value - expected[mode]).max() / scale)
    return found


def main(argv):
    del argv
    if keras.backend.backend() != "torch":
        raise app.UsageError(
            "fused_kernels() only changes the torch backend; run with "
            f"KERAS_BACKEND=torch. Received backend {keras.backend.backend()!r}."
        )
    started = time.perf_counter()
    rows = []
    for name in _MODELS.value:
        if name not in _APPLICATIONS:
            raise app.UsageError(
                f"--models takes {sorted(_APPLICATIONS)}. Received {name!r}."
            )
        found = errors(name, _SIZE.value)
        rows.append((name, *(
            f"{found[k, m]:.1e}" for m in ("inference", "training")
            for k in ("Keras", "fused")
        )))
        print(f"{name} done ({time.perf_counter() - started:.0f} s)", flush=True)
    print(harness.markdown_table(
        ("model", "inference: Keras", "inference: fused",
         "training: Keras", "training: fused"),
        rows,
    ))
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    app.run(main)
