"""Where the tiny set comes from: the paper's Table 5 on what runs here.

Recovers the same compressed network (the bundled digits ResNet-20 with the
same `--blocks` dropped, label-free feature mimicking) from tiny sets of
`--sizes` images taken from:

* in-domain: the task's own training split;
* out-of-domain: crops of scikit-image's bundled natural photographs;
* data-free: images synthesised from the teacher's BatchNorm statistics
  (DeepInversion-style, as the authors made theirs);
* Gaussian noise (the paper's "FakeData").

and reports the held-out test accuracy of each.

Command (the figures in docs/results.md):

    KERAS_BACKEND=tensorflow python -m benchmarks.data_sources \
        --sizes 50,100,500 --output out/data_sources.md
"""

import time

from absl import app
from absl import flags

from benchmarks import harness

_TEACHER = flags.DEFINE_string("teacher", None, "A .keras teacher; default: bundled.")
_SIZES = flags.DEFINE_list("sizes", ["50", "100", "500"], "Tiny-set sizes.")
_SOURCES = flags.DEFINE_list(
    "sources", ["in_domain", "out_of_domain", "synthetic", "noise"], "Sources."
)
_BLOCKS = flags.DEFINE_list("blocks", ["1.2", "2.2", "3.2"], "Blocks to drop.")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 200, "Recovery steps.")
_SYNTHESIS_STEPS = flags.DEFINE_integer("synthesis_steps", 200, "DeepInversion steps.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every draw.")
_TEST_IMAGES = flags.DEFINE_integer("test_images", 2000, "Held-out test images.")
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file for the table.")
_SAVE_SYNTHETIC = flags.DEFINE_string(
    "save_synthetic", None, "Folder to write the synthesised images to (PNG)."
)

_NAMES = {
    "in_domain": "in-domain (digits train split)",
    "out_of_domain": "out-of-domain (scikit-image photographs)",
    "synthetic": "data-free (synthesised from BN statistics)",
    "noise": "Gaussian noise",
}


def tiny_set(source, teacher, size, seed, synthesis_steps):
    """Returns `size` images from `source` at the teacher's input size."""
    from keras_practise.data import natural_images
    from keras_practise.data import synthesis
    from keras_practise.demo import digits

    image_size = tuple(teacher.input.shape[1:3])
    if source == "in_domain":
        return digits.load_cluttered_digits("train", num_images=size, seed=100 + seed)[0]
    if source == "out_of_domain":
        return natural_images.sample_photographs(size, image_size=image_size, seed=seed)
    if source == "synthetic":
        return synthesis.synthesize_images(
            teacher, size, image_size=image_size, steps=synthesis_steps,
            value_range=(0.0, 1.0), seed=seed, verbose=0,
        ).images
    if source == "noise":
        # Noise with the in-domain images' mean and spread.
        return synthesis.gaussian_noise(size, image_size, mean=0.5, std=0.25, seed=seed)
    raise app.UsageError(f"Unknown source {source!r}: {sorted(_NAMES)}")


def main(argv):
    del argv
    import keras

    import keras_practise
    from keras_practise import backend
    from keras_practise.data import synthesis
    from keras_practise.demo import digits

    teacher = harness.load_teacher(_TEACHER.value)
    test_x, test_y = digits.load_cluttered_digits(
        "test", num_images=_TEST_IMAGES.value, seed=1
    )
    dropped = keras_practise.drop_blocks(teacher, _BLOCKS.value)
    sizes = list(map(int, _SIZES.value))
    started = time.perf_counter()
    rows = []
    for source in _SOURCES.value:
        row = [_NAMES[source]]
        for size in sizes:
            with harness.quiet():
                images = tiny_set(
                    source, teacher, size, _SEED.value, _SYNTHESIS_STEPS.value
                )
                if source == "synthetic" and _SAVE_SYNTHETIC.value:
                    synthesis.save_images(
                        images[:16], _SAVE_SYNTHETIC.value, prefix=f"synthetic_{size}"
                    )
                model = keras_practise.compress(
                    teacher, images, blocks=_BLOCKS.value, method="mimic",
                    finetune_steps=_FINETUNE_STEPS.value, seed=_SEED.value,
                    verbose=0, latency_batch_size=0,
                )
            accuracy = harness.accuracy(model, test_x, test_y)
            row.append(f"{100 * accuracy:.2f}")
            print(f"{source} n={size}: {100 * accuracy:.2f}% "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)
            keras.utils.clear_session()
        rows.append(tuple(row))
    header = ("tiny set",) + tuple(f"{n} images" for n in sizes)
    text = "\n\n".join([
        f"Teacher {teacher.name}: {100 * harness.accuracy(teacher, test_x, test_y):.2f}%; "
        f"blocks {','.join(_BLOCKS.value)} dropped without recovery: "
        f"{100 * harness.accuracy(dropped, test_x, test_y):.2f}%. Recovery: "
        f"feature mimicking, {_FINETUNE_STEPS.value} steps, seed {_SEED.value}; "
        f"backend {keras.backend.backend()}, device {backend.device_name()}, "
        f"wall time {time.perf_counter() - started:.0f}s.",
        "Test accuracy (%) after recovery from each tiny set:",
        harness.markdown_table(header, rows),
    ])
    print(text)
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, text + "\n")


if __name__ == "__main__":
    app.run(main)
