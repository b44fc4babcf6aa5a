r"""Recovery on function-preserving twins of a model (issue 8, part 1).

A twin computes exactly what the model computes, in other units: every
conv followed by BatchNorm scaled by `c` (the BatchNorm's statistics and
epsilon scaled to match), images in `[0, 255]` (the first kernel / 255), or
the residual stream scaled by `c` (the BatchNorms writing it scale their
output, every layer reading it divides its kernel). `main` drops the same
blocks of the bundled teacher and of each twin, recovers them with each
recipe from the same tiny set, and compares test accuracy: a scale-free
recovery gets the same accuracy on every twin.

Command (docs/results.md, "Recovery on reparameterised twins"):

    KERAS_BACKEND=tensorflow python -m benchmarks.twins \
        --methods=mimic,mimic_ce,stagewise --output=out/twins.md
"""

import time

import keras
import numpy as np
from absl import app
from absl import flags

from benchmarks import harness
from benchmarks import twin_models

_TEACHER = flags.DEFINE_string("teacher", None, "A .keras teacher; default: bundled.")
_SIZE = flags.DEFINE_integer("size", 50, "Tiny-set size.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Tiny-set draws.")
_BLOCKS = flags.DEFINE_list("blocks", ["1.3", "2.3"], "Blocks to drop.")
_METHODS = flags.DEFINE_list(
    "methods", ["mimic", "mimic_ce", "stagewise"], "Recovery recipes."
)
_STEPS = flags.DEFINE_integer("finetune_steps", 200, "Recovery steps.")
_TEST_IMAGES = flags.DEFINE_integer("test_images", 1000, "Held-out test images.")
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file for the table.")
_TWINS = flags.DEFINE_multi_string(
    "twin", list(twin_models.TWINS),
    "A twin to recover (repeatable; names in benchmarks/twin_models.py); "
    "every twin's output is compared with the teacher's either way.",
)
_SMOKE = flags.DEFINE_bool(
    "smoke", False, "One 8-image set, 2 steps, 50 test images, mimic only."
)


def main(argv):
    del argv
    import keras_practise
    from keras_practise.demo import digits

    started = time.perf_counter()
    size, seeds, methods, steps, test_images = (
        _SIZE.value, [int(s) for s in _SEEDS.value], _METHODS.value,
        _STEPS.value, _TEST_IMAGES.value,
    )
    if _SMOKE.value:
        size, seeds, methods, steps, test_images = 8, [0], ["mimic"], 2, 50
    teacher = harness.load_teacher(_TEACHER.value)
    test_x, test_y = digits.load_cluttered_digits("test", num_images=test_images, seed=1)
    accuracy = {}
    unknown = set(_TWINS.value) - set(twin_models.TWINS)
    if unknown:
        raise app.UsageError(
            f"Unknown --twin {sorted(unknown)}: choose from {list(twin_models.TWINS)}."
        )
    for name, (build, factor) in twin_models.TWINS.items():
        twin = build(teacher)
        gap = np.max(np.abs(
            twin.predict(test_x[:64] * factor, verbose=0)
            - teacher.predict(test_x[:64], verbose=0)
        ))
        print(f"{name}: max output difference to the teacher {gap:.2g}", flush=True)
        if name not in _TWINS.value:
            continue
        for method in methods:
            for seed in seeds:
                x, y = digits.load_cluttered_digits(
                    "train", num_images=size, seed=100 + seed
                )
                data = (x * factor, y) if method != "mimic" else x * factor
                with harness.quiet():
                    small = keras_practise.compress(
                        twin, data, blocks=_BLOCKS.value, method=method,
                        finetune_steps=steps, seed=seed, latency_batch_size=0,
                        verbose=0,
                    )
                acc = harness.accuracy(small, test_x * factor, test_y)
                accuracy.setdefault((name, method), []).append(acc)
                print(f"  {method} seed {seed}: {100 * acc:.2f}% "
                      f"({time.perf_counter() - started:.0f}s)", flush=True)
        keras.utils.clear_session()
    rows = [
        (name, *(harness.mean_std(accuracy[(name, m)]) for m in methods))
        for name in twin_models.TWINS
        if name in _TWINS.value
    ]
    text = (
        f"Teacher {teacher.name}, {test_images} test images; {size} images, "
        f"seeds {','.join(map(str, seeds))}; blocks {'+'.join(_BLOCKS.value)} "
        f"dropped; {steps} recovery steps; backend {keras.backend.backend()}; "
        f"wall time {time.perf_counter() - started:.0f}s.\n\n"
        + harness.markdown_table(("twin", *methods), rows)
    )
    print(text)
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, text + "\n")


if __name__ == "__main__":
    app.run(main)
