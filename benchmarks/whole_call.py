"""Times one whole `compress()` of a keras.applications network, any checkout.

Issue 21's CPU target compares a whole `compress(drop=3, steps=20,
finetune_steps=20)` of ResNet-50 at 128 px from 50 images with the code of
the day the issue was filed. This binary imports nothing from `benchmarks`,
so it can time another checkout's library: run it with that checkout on
`PYTHONPATH`. It prints (and writes with `--output`) one JSON record: wall
seconds, the report's phases, the blocks chosen and the peak resident
memory (`ru_maxrss`).

Example:

```shell
KERAS_BACKEND=tensorflow OMP_NUM_THREADS=1 PYTHONPATH=/path/to/checkout \
    taskset -c 0 python benchmarks/whole_call.py --output=/tmp/call.json
```
"""

import json
import resource
import time

from absl import app
from absl import flags

_MODEL = flags.DEFINE_enum("model", "resnet50", ["resnet50", "mobilenet_v2"], "Network.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 128, "Input height and width.")
_IMAGES = flags.DEFINE_integer("num_images", 50, "Tiny-set images (uniform noise).")
_DROP = flags.DEFINE_integer("drop", 3, "Blocks to drop.")
_STEPS = flags.DEFINE_integer("steps", 20, "Adaptor and recovery steps.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Batch size.")
_OUTPUT = flags.DEFINE_string("output", None, "JSON file for the record.")


def main(argv):
    del argv
    import keras
    import numpy as np

    import keras_practise

    keras.utils.set_random_seed(0)
    build = {"resnet50": keras.applications.ResNet50,
             "mobilenet_v2": keras.applications.MobileNetV2}[_MODEL.value]
    size = _IMAGE_SIZE.value
    model = build(weights=None, input_shape=(size, size, 3))
    images = np.random.default_rng(0).uniform(
        size=(_IMAGES.value, size, size, 3)
    ).astype("float32")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    _, report = keras_practise.compress(
        model, images, drop=_DROP.value, steps=_STEPS.value,
        finetune_steps=_STEPS.value, batch_size=_BATCH_SIZE.value,
        latency="macs", verbose=0, return_report=True,
    )
    record = {
        "backend": keras.backend.backend(),
        "library": keras_practise.__file__,
        "seconds": time.perf_counter() - start,
        "phases": dict(report.phase_seconds),
        "blocks": list(report.labels),
        "resident_before_gib": before,
        "peak_resident_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    text = json.dumps(record)
    print(text)
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    app.run(main)
