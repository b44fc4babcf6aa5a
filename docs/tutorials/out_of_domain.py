"""
Title: Compressing without images from the task
Author: keras_practise
Date created: 2026/11/25
Last modified: 2026/11/25
Description: Recover a block-dropped network from unrelated photographs, and compare with in-domain images and noise.
Accelerator: None
"""

"""
## Introduction

Often the people who own a model cannot share its data, not even 50 images.
PRACTISE recovers by *feature mimicking*: the pruned network learns to
reproduce the original network's features on whatever images it is shown,
with no labels involved. So the images need not come from the task at all.
The paper recovers an ImageNet ResNet from bird photographs (CUB-200) or
scenes (Places365) nearly as well as from ImageNet itself, and badly from
random noise.

This tutorial repeats that experiment offline with the bundled digits
teacher (see `quickstart.py`), and shows how to tell beforehand whether a
source of images will work. Three tiny sets of the same size:

- **in-domain**: cluttered-digit training images, labels thrown away;
- **photographs**: random crops of the photographs bundled with
  scikit-image (an astronaut, a cat, coffee, coins, a galaxy field, ...),
  which contain no digits at all;
- **noise**: Gaussian noise in the teacher's input range, the paper's
  "FakeData" baseline.

Set `KP_TUTORIAL_FAST=1` to shrink every size for a smoke run; the
accuracies printed are then meaningless.
"""

"""
## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np

import keras_practise
from keras_practise.data import natural_images
from keras_practise.data import synthesis
from keras_practise.demo import digits

FAST = os.environ.get("KP_TUTORIAL_FAST") == "1"
NUM_IMAGES = 16 if FAST else 100
TEST_IMAGES = 100 if FAST else 1000
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
## Three tiny sets

All three are float32 arrays of 32x32 RGB images in `[0, 1]`, the range the
teacher was trained on. `sample_photographs` cuts random-resized crops (as
torchvision's `RandomResizedCrop` draws them) and mirrors half of them.
The noise is centred in the input range and clipped to it, so that it
differs from the real images in structure, not in scale.
"""

in_domain, _ = digits.load_cluttered_digits("train", num_images=NUM_IMAGES, seed=0)
photographs = natural_images.sample_photographs(NUM_IMAGES, (32, 32), seed=0)
noise = np.clip(
    synthesis.gaussian_noise(NUM_IMAGES, 32, mean=0.5, std=0.25, seed=0), 0.0, 1.0
)
tiny_sets = {"in-domain": in_domain, "photographs": photographs, "noise": noise}

"""
Before training anything, two cheap looks at how the teacher sees each set.
`bn_statistics_loss` compares the mean and variance that every
BatchNormalization layer receives with the statistics it stored during
training (DeepInversion's prior; lower means the inputs look more like the
training data from the inside). The teacher's confidence (mean top
probability) shows whether it reads digits into the images.
"""

print(f"{'tiny set':<14}{'BN statistics loss':>20}{'teacher confidence':>20}")
for name, images in tiny_sets.items():
    bn_loss = synthesis.bn_statistics_loss(teacher, images)
    confidence = teacher.predict(images, verbose=0).max(axis=-1).mean()
    print(f"{name:<14}{bn_loss:>20.2f}{confidence:>20.2f}")

"""
## Recover from each set

To compare the *data* and nothing else, the same three blocks are dropped
every time (`blocks=`), so only the recovery differs. In practice you would
let `compress` pick the blocks from the same images: recoverability is
measured by the same feature mimicking, so it works on out-of-domain images
too. `latency_batch_size=0` skips the before/after timing, which is the same
for all three.
"""

BLOCKS = ["1.2", "1.3", "2.3"]
compressed = {}
for name, images in tiny_sets.items():
    print(f"Recovering from {name}...")
    compressed[name] = keras_practise.compress(
        teacher,
        images,
        blocks=BLOCKS,
        finetune_steps=FINETUNE_STEPS,
        latency_batch_size=0,
        verbose=0,
    )

"""
## Side by side
"""

dropped = keras_practise.drop_blocks(teacher, BLOCKS)
print(f"Dropped blocks {', '.join(BLOCKS)}; {NUM_IMAGES} images per tiny set")
print(f"{'model':<30}{'test accuracy':>14}")
rows = [("teacher", teacher), ("dropped, no recovery", dropped)]
rows += [(f"recovered from {name}", model) for name, model in compressed.items()]
for name, model in rows:
    print(f"{name:<30}{100 * accuracy(model):>13.2f}%")

"""
What we measured with the default sizes (TensorFlow, CPU, one run): teacher
87.5%, dropped without recovery 17.7%; recovered from in-domain images
82.8%, from noise 67.3%, and from the photographs 16.9%, no better than no
recovery at all.

That is the opposite of the paper's ranking of photographs and noise, and
the statistics table above predicted it. The paper's teacher is an ImageNet
network and its out-of-domain sets are photographs too: birds and scenes
share the edges, textures and colours that ImageNet features respond to.
This teacher has only ever seen sharp, saturated coloured strokes on top of
photographic texture; a crop of a whole photograph at 32x32 pixels is smooth
and stroke-free, so the teacher's deep features on it (the targets the
pruned network mimics) look nothing like its features on digits: its
BatchNorm statistics loss is 13 times that of the real images and higher
even than that of noise, and the teacher is unsure what it sees. (Smaller
crops, `sample_photographs(..., scale=(0.01, 0.1))`, the size of the task's
own background patches, score no better: 358.) Mimicking the teacher there
teaches the pruned network nothing about digits.

So "any natural images will do" holds when they resemble what the teacher
was trained on at the level of features, not pixels. Before spending
compute on a recovery, compare candidate tiny sets the way the first table
does: a BatchNorm statistics loss close to that of real data, and a
confident teacher, are good signs. When there is nothing suitable, images
synthesised from the teacher itself are the next option (`data_free.py`).

## With a real model

For an ImageNet model the same idea reads, with tensorflow-datasets (not run
here: it needs the weights and the prepared dataset):

```python
model = keras.applications.ResNet50(weights="imagenet")
small = keras_practise.compress(
    model,
    "caltech_birds2011",  # a tensorflow-datasets name, or any image folder
    data_dir="~/tensorflow_datasets",
    num_samples=500,
    preprocess=keras.applications.resnet.preprocess_input,
    drop=3,
)
```

`natural_images.sample_photographs(500, (224, 224)) * 255.0` gives an
offline stand-in of the same kind.
"""
