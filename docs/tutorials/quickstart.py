"""
Title: Quickstart: a faster network from 50 unlabelled images
Author: keras_practise
Date created: 2026/11/25
Last modified: 2026/11/25
Description: Compress a trained ResNet-20 with `compress()`, check its accuracy, save and reload it.
Accelerator: None
"""

"""
## Introduction

You have a trained convolutional network that is too slow, and only a handful
of images from its task: perhaps 50, perhaps without labels. Retraining a
smaller network is out of the question. PRACTISE (*Practical Network
Acceleration with Tiny Sets*, Wang & Wu, CVPR 2023) makes the network faster
anyway:

1. it removes whole **blocks** (a residual block, or a convolution that keeps
   the shape of its input): fewer layers run one after the other, which cuts
   wall-clock latency, not only multiply-accumulates;
2. it picks the blocks whose loss the rest of the network can make up for
   best, their **recoverability**;
3. it **recovers** the accuracy by training the pruned network to mimic the
   original network's last feature map on the tiny set, so labels are not
   needed;
4. it **folds** the 1x1 helper convolutions used during recovery into their
   neighbours, so the result is a plain Functional `keras.Model`.

`keras_practise.compress()` runs all four steps. This tutorial applies it to
the teacher that ships with the package, a CIFAR-style ResNet-20 trained on a
small local task, and checks the result: accuracy, parameters, MACs and
latency before and after, and a save/reload round trip.

Everything runs offline on a CPU in a few minutes. Set `KP_TUTORIAL_FAST=1`
to shrink every size (the test suite does this to keep the script from
rotting); the numbers printed are then meaningless.
"""

"""
## Setup

Keras 3 runs on TensorFlow, PyTorch or JAX: choose with the `KERAS_BACKEND`
environment variable before Keras is imported. keras_practise works on all
three.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np

import keras_practise
from keras_practise.demo import digits

FAST = os.environ.get("KP_TUTORIAL_FAST") == "1"
NUM_IMAGES = 16 if FAST else 50  # the tiny set
TEST_IMAGES = 100 if FAST else 1000
STEPS = 2 if FAST else 200  # adaptor training per candidate block
FINETUNE_STEPS = 3 if FAST else 500  # recovery of the pruned network

"""
## The teacher and its task

`digits.TEACHER_PATH` points at a ResNet-20 (275k parameters) trained on
*cluttered digits*: 32x32 colour images, each showing one handwritten digit
(from scikit-learn's bundled digits) in red, green or blue ink on a crop of a
photograph, among fragments of other digits. The label is the pair (digit,
ink colour), 30 classes. `load_cluttered_digits` generates the images
locally; the train and test splits never share a handwritten digit. The
images need no preprocessing: the model takes the float32 `[0, 1]` arrays as
they are.

The saved model loads with plain `keras.saving.load_model`.
"""

teacher = keras.saving.load_model(digits.TEACHER_PATH)
print(f"Teacher: {teacher.name}, {keras_practise.count_params(teacher):,} parameters, "
      f"{keras_practise.count_macs(teacher) / 1e6:.1f} M MACs per image")

"""
The tiny set: 50 training images. We throw their labels away, since feature
mimicking does not need them. The test set is only for us, to see what the
compression costs.
"""

tiny_set, _ = digits.load_cluttered_digits("train", num_images=NUM_IMAGES, seed=0)
test_images, test_labels = digits.load_cluttered_digits(
    "test", num_images=TEST_IMAGES, seed=1
)
print(f"Tiny set: {tiny_set.shape}, test set: {test_images.shape}")


def accuracy(model):
    """Top-1 accuracy of `model` on the test set."""
    probabilities = model.predict(test_images, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == test_labels))


"""
## Compress

One call. `drop=3` removes three of the six droppable residual blocks.
`compress` returns a new model and leaves `teacher` untouched; with
`return_report=True` it also returns a `CompressionReport`.

Two numbers control the training time: `finetune_steps`, the steps of the
final recovery, and the selection's. With `finetune_steps=500` (the
default) `compress` chooses the blocks by *auditions*: each candidate set
of three blocks is recovered for 100 steps and the one that stays closest
to the teacher is kept (`selection="shortlist"`; the `choosing_blocks`
tutorial shows it). With fewer recovery steps it chooses by
recoverability instead, spending `steps` optimizer steps on each candidate
block (the authors use 1000 to 2000 on a GPU). On a 2-core CPU the
settings below take several minutes.
"""

small, report = keras_practise.compress(
    teacher,
    tiny_set,
    drop=3,
    steps=STEPS,
    finetune_steps=FINETUNE_STEPS,
    return_report=True,
)

"""
## Read the report

`print(report)` shows how the blocks were chosen (every audition, or the
recoverability of every candidate: the `choosing_blocks` tutorial explains
the columns), the blocks that were dropped, and the parameters, MACs and
measured latency before and after. `report.to_dict()` gives the same as JSON-ready data.
"""

print(report)

"""
## Accuracy before and after

For scale we also drop the same blocks *without* recovery, with
`drop_blocks`. Removing three blocks from a trained network wrecks it;
recovery from the 50 images brings most of the accuracy back.
"""

dropped = keras_practise.drop_blocks(teacher, report.blocks)
print(f"{'model':<24}{'test accuracy':>14}")
for name, model in [
    ("teacher", teacher),
    ("dropped, no recovery", dropped),
    ("compressed", small),
]:
    print(f"{name:<24}{100 * accuracy(model):>13.2f}%")

"""
## Save and reload

The compressed model is an ordinary Functional model: the 1x1 adaptors used
during recovery were folded into the neighbouring convolutions, so no custom
layer is left and it reloads without `custom_objects`.
"""

small.save("compressed.keras")
reloaded = keras.saving.load_model("compressed.keras")
sample = test_images[:8]
same = np.allclose(
    small.predict(sample, verbose=0), reloaded.predict(sample, verbose=0), atol=1e-5
)
print(f"Reloaded model predicts the same: {same}")

"""
## Your own model

The same call works on any Functional or Sequential model with identity
residual blocks or shape-preserving convolutions (ResNets, VGG, MobileNetV2,
your own). With ImageNet weights and a folder of images (the folder is read
with `keras.utils.image_dataset_from_directory` conventions), it looks like
this (not run here: it downloads weights):

```python
model = keras.applications.ResNet50(weights="imagenet")
small = keras_practise.compress(
    model,
    "path/to/images",  # or an array, a tf.data.Dataset, a DataLoader, ...
    num_samples=500,
    preprocess=keras.applications.resnet.preprocess_input,
    drop=3,
)
```

Next: `choosing_blocks.py` (which blocks, and how to decide yourself),
`out_of_domain.py` (no images from the task), `data_free.py` (no images at
all) and `latency.py` (measuring speed properly).
"""
