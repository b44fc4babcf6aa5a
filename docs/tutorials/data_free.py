"""
Title: Data-free compression: images synthesised from the teacher
Author: keras_practise
Date created: 2026/11/25
Last modified: 2026/11/25
Description: Invert the teacher into a tiny set with DeepInversion, look at it, and compress with `data=None`.
Accelerator: None
"""

"""
## Introduction

Sometimes there are no images at all: not from the task, and no suitable
photographs either. The network itself still holds a lot about its training
data. Every BatchNormalization layer stores the mean and variance of the
features it saw during training, and the classifier knows what each class
looks like to it. *DeepInversion* (Yin et al., CVPR 2020) turns this around:
start from noise and optimise the pixels until every BatchNormalization layer
sees its stored statistics and the classifier assigns the wanted classes. The
PRACTISE paper uses such images as its data-free tiny set.

`compress(model, data=None)` does exactly that before compressing. This
tutorial first synthesises images by hand to look at them, then runs the
one-call version on the bundled digits teacher (see `quickstart.py`).

Synthesis is the slow part: every image costs a few hundred forward and
backward passes. Set `KP_TUTORIAL_FAST=1` to shrink every size for a smoke
run; the images and accuracies are then meaningless.
"""

"""
## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np

import keras_practise
from keras_practise.data import synthesis
from keras_practise.demo import digits

FAST = os.environ.get("KP_TUTORIAL_FAST") == "1"
NUM_IMAGES = 16 if FAST else 64  # one synthesis batch
SYNTHESIS_STEPS = 3 if FAST else 300
TEST_IMAGES = 100 if FAST else 1000
STEPS = 2 if FAST else 100
FINETUNE_STEPS = 3 if FAST else 300

teacher = keras.saving.load_model(digits.TEACHER_PATH)
test_images, test_labels = digits.load_cluttered_digits(
    "test", num_images=TEST_IMAGES, seed=1
)


def accuracy(model):
    """Top-1 accuracy of `model` on the test set."""
    probabilities = model.predict(test_images, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == test_labels))


"""
## Synthesise a tiny set

`synthesize_images` optimises `num_images` images in batches (64 by
default; the batch statistics are what gets matched, so batches should not
be tiny). Target classes default to round-robin over all 30 classes. The
call below is the one `compress(data=None)` makes internally.

`steps` is the number of optimiser steps per batch. The DeepInversion
default is 2000 on a GPU; a few hundred give recognisable statistics.
"""

images, targets = synthesis.synthesize_images(
    teacher, NUM_IMAGES, steps=SYNTHESIS_STEPS, seed=0
)
print(f"Synthesised {images.shape}, pixels in [{images.min():.2f}, {images.max():.2f}]")

"""
## Look at them

`save_images` writes PNG files, each stretched to its own minimum and
maximum. Do not expect pictures of digits: the images are what makes the
teacher's *statistics* look right, which is enough for feature mimicking.
"""

paths = synthesis.save_images(images[:8], "synthetic", prefix="digits")
print(f"Wrote {len(paths)} images, e.g. {paths[0]}")

"""
Two numbers check the synthesis. The teacher should classify the images as
their targets, and the BatchNormalization statistics loss should be far
below that of noise and not far above that of real training images.
"""

agreement = np.mean(np.argmax(teacher.predict(images, verbose=0), axis=-1) == targets)
print(f"Teacher agrees with the target class on {agreement:.0%} of the images")

real, _ = digits.load_cluttered_digits("train", num_images=NUM_IMAGES, seed=0)
noise = synthesis.gaussian_noise(NUM_IMAGES, 32, seed=0)
print(f"{'images':<14}{'BN statistics loss':>20}")
for name, batch in [("real", real), ("synthesised", images), ("noise", noise)]:
    print(f"{name:<14}{synthesis.bn_statistics_loss(teacher, batch):>20.2f}")

"""
## Compress with `data=None`

Without data, `num_samples` is the number of images to synthesise and
`synthesis_steps` the steps per batch; the rest is the usual pipeline
(recoverability, recovery by feature mimicking, folding) on the synthesised
set.
"""

small, report = keras_practise.compress(
    teacher,
    data=None,
    num_samples=NUM_IMAGES,
    synthesis_steps=SYNTHESIS_STEPS,
    drop=3,
    steps=STEPS,
    finetune_steps=FINETUNE_STEPS,
    return_report=True,
    verbose=0,
)
print(report)
print(f"Tiny set: {report.tiny_set['size']} images from {report.tiny_set['source']}")

dropped = keras_practise.drop_blocks(teacher, report.blocks)
print(f"{'model':<24}{'test accuracy':>14}")
for name, model in [
    ("teacher", teacher),
    ("dropped, no recovery", dropped),
    ("data-free compressed", small),
]:
    print(f"{name:<24}{100 * accuracy(model):>13.2f}%")

"""
What we measured with the default sizes (TensorFlow, CPU, one run): the
teacher agreed with 62% of the targets, the BatchNorm statistics loss was
34 for the synthesised images against 24 for real ones and 2111 for noise,
and the data-free network reached 78.4% test accuracy (teacher 87.5%, the
same blocks dropped without recovery 11.1%). From 50 real images the
quickstart reaches about 85%: synthesis costs a few points, and no data.

## Doing it yourself

`compress(data=None)` cannot know the range of the model's inputs, so it
synthesises unbounded images from a standard-normal start, which suits
models that take standardised inputs. When you know the range, tell the
synthesis: with `value_range=(0, 1)` (this teacher), `(-1, 1)` (MobileNetV2)
or `(0, 255)` (models that rescale internally, like EfficientNet) the pixels
are optimised in that range and clipped to it, which keeps the images
plausible. Then pass them as ordinary data; you can also mix them with any
real images you have.

```python
images, _ = synthesis.synthesize_images(
    teacher, 256, steps=1000, value_range=(0, 1)
)
small = keras_practise.compress(teacher, images, drop=3)
```

For an ImageNet model (not run here: it downloads the weights), synthesise
at the model's input size:

```python
model = keras.applications.MobileNetV2(weights="imagenet")
images, _ = synthesis.synthesize_images(model, 256, value_range=(-1, 1))
small = keras_practise.compress(model, images, drop=3)
```

Out-of-domain photographs are usually the better choice when you have any
(see `out_of_domain.py`); synthesis is the fallback when you have none.
"""
