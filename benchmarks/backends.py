r"""One `compress()` of the bundled digits teacher: wall and CPU seconds, accuracy.

The figure README's "Backends" table gives for each backend: the bundled
digits ResNet-20 compressed from `--num_images` training images with
`drop=2, steps=20, finetune_steps=50, latency="macs"` (`--steps`,
`--finetune_steps`), timed as a whole (wall clock and this process's CPU
seconds), then its top-1 accuracy on `--test_images` held-out images. Runs on the active backend; `--repeat`
runs the same call again in the same process (the later runs show the cost
without the first call's imports and kernel set-up).

Commands (README, "Backends"; one per backend):

    KERAS_BACKEND=tensorflow python -m benchmarks.backends
    KERAS_BACKEND=torch python -m benchmarks.backends
    KERAS_BACKEND=jax python -m benchmarks.backends
"""

import time

from absl import app
from absl import flags

from benchmarks import harness

_NUM_IMAGES = flags.DEFINE_integer("num_images", 50, "Tiny-set images.")
_TEST_IMAGES = flags.DEFINE_integer("test_images", 500, "Held-out test images.")
_REPEAT = flags.DEFINE_integer("repeat", 1, "Calls timed, one after the other.")
_STEPS = flags.DEFINE_integer("steps", 20, "Adaptor steps per candidate.")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 50, "Recovery steps.")


def main(argv):
    del argv
    import keras

    import keras_practise
    from keras_practise.demo import digits

    teacher = harness.load_teacher()
    images, _ = digits.load_cluttered_digits("train", _NUM_IMAGES.value, seed=0)
    test_x, test_y = digits.load_cluttered_digits("test", _TEST_IMAGES.value, seed=0)
    print(f"backend {keras.backend.backend()}, keras_practise from "
          f"{keras_practise.__file__}")
    print("| call | wall s | CPU s | blocks | accuracy |")
    print("|---|---|---|---|---|")
    for call in range(_REPEAT.value):
        wall, cpu = time.perf_counter(), time.process_time()
        with harness.quiet():
            model, report = keras_practise.compress(
                teacher, images, drop=2, steps=_STEPS.value,
                finetune_steps=_FINETUNE_STEPS.value,
                latency="macs", return_report=True, verbose=0,
            )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        accuracy = harness.accuracy(model, test_x, test_y)
        print(f"| {call + 1} | {wall:.0f} | {cpu:.0f} | "
              f"{', '.join(report.blocks)} | {100 * accuracy:.1f}% |", flush=True)


if __name__ == "__main__":
    app.run(main)
