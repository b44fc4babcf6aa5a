"""
Title: Layer-wise schemes: filter pruning, decoupling, low rank, sparsity
Author: keras_practise
Date created: 2026/12/03
Last modified: 2026/12/04
Description: Compress with `compress(scheme="filters", keep=0.5)` and the other layer-wise schemes, read the SchemeReport, and compare with block dropping at the same latency.
Accelerator: None
"""

"""
## Introduction

PRACTISE drops whole blocks. Its predecessor (Wang & Wu's earlier paper on
few-shot compression) recovered *layer-wise* schemes with the same trick
instead: compress a conv, put trainable 1x1 convolutions around it, train
only those to mimic the teacher's next feature map on the tiny set, and fold
them into the neighbouring convs. `compress(..., scheme=...)` runs four of
them:

- `"filters"`: each prunable conv keeps the `keep` fraction of its filters
  with the largest L1 norm (fewer channels, a plain smaller conv);
- `"decouple"`: each KxK conv becomes a depthwise KxK conv with `rank`
  filters per channel plus a 1x1;
- `"lowrank"`: each 3x3 conv keeps the principal components of its
  responses that explain the `energy` fraction of their variance, plus a 1x1;
- `"sparse"`: each conv gets a magnitude mask with the `sparsity` fraction
  of zeros (same shapes: no faster on a dense runtime).

The CVPR paper's argument for dropping blocks is about *latency*: at the
same MACs, fewer layers run faster than thinner ones, so at the same
measured latency block dropping should keep more accuracy. This tutorial
runs the schemes on the bundled digits ResNet-20 and puts one next to block
dropping at the latency it reaches. `benchmarks/scheme_accuracy.py` does
the full comparison; `docs/results.md` has its numbers and figure.

Set `KP_TUTORIAL_FAST=1` to shrink every size for a smoke run: it then
compresses one conv, runs only filter pruning and block dropping, and the
numbers it prints are meaningless.
"""

"""
## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np

import keras_practise
from keras_practise.demo import digits

FAST = os.environ.get("KP_TUTORIAL_FAST") == "1"
NUM_IMAGES = 16 if FAST else 50
TEST_IMAGES = 100 if FAST else 1000
STEPS = 2 if FAST else 50  # training steps per compressed layer
BLOCK_STEPS = 2 if FAST else 100  # adaptor steps per candidate block
FINETUNE_STEPS = 3 if FAST else 300  # recovery of the dropped network
# `layers=None` compresses every conv a scheme applies to.
LAYERS = ["conv2_block1_1_conv"] if FAST else None
LATENCY_BATCH, LATENCY_RUNS = (8, 2) if FAST else (64, 20)

teacher = keras.saving.load_model(digits.TEACHER_PATH)
tiny_set, _ = digits.load_cluttered_digits("train", num_images=NUM_IMAGES, seed=0)
test_images, test_labels = digits.load_cluttered_digits(
    "test", num_images=TEST_IMAGES, seed=1
)


def accuracy(model):
    """Top-1 accuracy of `model` on the test set."""
    probabilities = model.predict(test_images, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == test_labels))


"""
## Filter pruning

`scheme="filters"` with `keep=0.5` halves the filters of every conv whose
output map only other convs read: in a ResNet basic block that is the first
conv (the second one's output meets the shortcut in the add, so its width is
fixed). `keep` can also be a dict of fractions per conv name. The layers are
compressed one after the other in network order, each from the network with
all earlier ones already folded, so that a layer can correct the error the
earlier ones left. `steps` is per layer.
"""

pruned, report = keras_practise.compress(
    teacher,
    tiny_set,
    scheme="filters",
    keep=0.5,
    layers=LAYERS,
    steps=STEPS,
    return_report=True,
)

"""
## Read the SchemeReport

One line per compressed conv: what changed (filters kept), the mean squared
error of the next feature map against the teacher's before and after the
1x1 convs trained, whether the BatchNorm between them trained with updated
statistics or stayed frozen (the step tries both when updating does worse),
and the fold error: the largest difference between the network with the
trained 1x1 convs and the folded one, which should be float32 round-off.
Then parameters and MACs before and after, and the time per phase.
`report.to_dict()` gives the same as JSON-ready data.
"""

print(report)

"""
## The other schemes

The same call with another `scheme` and its own option. Decoupling keeps
`rank` depthwise filters per input channel (the SVD of each channel's kernel
slice, 9 would be exact for 3x3); low rank keeps as many principal
components as `energy` asks for, so its MACs depend on the data; sparsity
changes no shape, so it saves neither MACs nor dense latency.
"""

others = {} if FAST else {
    "decouple": {"rank": 3},
    "lowrank": {"energy": 0.95},
    "sparse": {"sparsity": 0.9},
}
models = {"teacher": teacher, "filters keep=0.5": pruned}
for scheme, options in others.items():
    name = f"{scheme} " + " ".join(f"{k}={v}" for k, v in options.items())
    models[name], scheme_report = keras_practise.compress(
        teacher,
        tiny_set,
        scheme=scheme,
        layers=LAYERS,
        steps=STEPS,
        verbose=0,
        return_report=True,
        **options,
    )
    before, after = scheme_report.macs
    print(f"{name}: {len(scheme_report.layers)} convs, MACs {before:,} -> {after:,}")

"""
## Residual streams between blocks

The map *between* blocks meets the shortcuts in the adds, so plain filter
pruning leaves it whole. It can still shrink as one (the earlier paper's
Figure 4c/d): every conv writing it through the adds (each block's last
conv, the projection shortcut) keeps the same channels, gets a trainable
1x1 after it, every conv reading it gets one before it, and the identity
shortcuts carry the kept channels. A stream is named by its first
producing conv; `filters.prunable_streams` lists them (the last stage's
stream reaches the classifier and stays whole), and `keep` / `layers`
accept them beside the ordinary maps.
"""

from keras_practise.schemes import filters

streams = filters.prunable_streams(teacher)
print(f"prunable streams: {streams}")
models["streams keep=0.5"], stream_report = keras_practise.compress(
    teacher,
    tiny_set,
    scheme="filters",
    keep=0.5,
    layers=streams[:1] if FAST else streams,
    steps=STEPS,
    verbose=0,
    return_report=True,
)
for record in stream_report.steps:
    # channels (before, after) and how many convs write the stream.
    print(f"{record.layer}: {record.detail}, fold error {record.fold_error:.1g}")

"""
## Block dropping at the same latency

How much latency filter pruning saves is measured, not read off the MACs:
`compare_latency` times the models interleaved, run by run, so that load on
the machine hits them alike. Block dropping is then asked for the same
saving with `latency_target`: `compress` drops the most recoverable blocks
until their measured cut reaches the target. (The fast smoke run drops
block 1.2 directly instead, to skip the scoring.)
"""

if FAST:
    block_choice = {"blocks": ["1.2"]}
else:
    timing = keras_practise.compare_latency(
        models, batch_size=LATENCY_BATCH, runs=LATENCY_RUNS
    )
    # `latency_target` takes a fraction in (0, 1).
    target = max(timing.reductions["filters keep=0.5"], 0.05)
    block_choice = {"latency_target": target}
dropped, block_report = keras_practise.compress(
    teacher,
    tiny_set,
    steps=BLOCK_STEPS,
    finetune_steps=FINETUNE_STEPS,
    latency_batch_size=0,  # timed with the others below
    verbose=0,
    return_report=True,
    **block_choice,
)
models[f"blocks {','.join(block_report.blocks)}"] = dropped
timing = keras_practise.compare_latency(
    models, batch_size=LATENCY_BATCH, runs=LATENCY_RUNS
)
print(timing.table())
print(f"{'model':<32}{'MACs':>12}{'latency cut':>13}{'accuracy':>10}")
for name, model in models.items():
    print(
        f"{name:<32}{keras_practise.count_macs(model):>12,}"
        f"{100 * timing.reductions[name]:>12.1f}%{100 * accuracy(model):>9.2f}%"
    )

"""
On the 2-core CPU of `docs/results.md` ("Accuracy at matched latency"),
with TensorFlow, block dropping kept more accuracy than every layer-wise
scheme at the same measured latency cut (84.5% at a 22% cut against filter
pruning's 60.0% at 29%), and decoupling and low rank saved MACs but no
latency at all: their extra layers cost more than their smaller convs save.
Latency is a property of the device and runtime; measure on yours.

## Save and reload

Every scheme folds its 1x1 convs away, so the result is a plain Functional
model of standard layers that reloads without `custom_objects`.
"""

pruned.save("pruned.keras")
reloaded = keras.saving.load_model("pruned.keras")
sample = test_images[:8]
same = np.allclose(
    pruned.predict(sample, verbose=0), reloaded.predict(sample, verbose=0), atol=1e-5
)
print(f"Reloaded pruned model predicts the same: {same}")
