"""
Title: Choosing which blocks to drop
Author: keras_practise
Date created: 2026/11/25
Last modified: 2026/11/25
Description: Find droppable blocks, read recoverability scores, and drop blocks by count, by latency target or by hand.
Accelerator: None
"""

"""
## Introduction

`compress(model, data, drop=3)` decides on its own which three blocks to
remove. This tutorial opens that decision up:

- `find_blocks` lists the blocks that *can* be dropped;
- `recoverability` scores each one: how well the network recovers without
  it, per unit of latency saved;
- the latency saving can be measured on your device or estimated from MACs;
- instead of a count you can ask for a latency target, or name the blocks
  yourself;
- `drop_blocks` removes blocks without any training, to look at the result.

It uses the ResNet-20 teacher bundled with the package (see `quickstart.py`).
Set `KP_TUTORIAL_FAST=1` to shrink every size for a smoke run.
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
from keras_practise.graph.blocks import blocks_table
from keras_practise.selection import recoverability as scoring

FAST = os.environ.get("KP_TUTORIAL_FAST") == "1"
NUM_IMAGES = 16 if FAST else 50
TEST_IMAGES = 100 if FAST else 1000
STEPS = 2 if FAST else 100
FINETUNE_STEPS = 3 if FAST else 300

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
## Which blocks can be dropped?

A block can go if the network still fits together without it: its output
must have the same shape as its input, so that the input can flow straight
on. `find_blocks` reads that off the model graph: identity residual blocks
(the add of a ResNet block whose shortcut is the block's input), and plain
convolutions that keep their input's shape (VGG, MobileNetV2's expanded
blocks).

Each block gets a `stage.position` label like the paper's: `1.2` is the
second block of the first stage. The first block of each stage changes the
resolution or the width, so it is never a candidate; ResNet-20 has three
stages of three blocks and hence six candidates.
"""

blocks = keras_practise.find_blocks(teacher)
print(blocks_table(blocks))

"""
## Recoverability

For each candidate on its own, `recoverability`:

1. drops the block and puts a 1x1 convolution (an *adaptor*, initialised to
   the identity) on each side of the hole;
2. trains only the adaptors, everything else frozen, so that the pruned
   network's last feature map matches the original's on the tiny set;
3. measures the remaining mean squared error (`mse`) between the two feature
   maps, next to the error right after dropping (`mse(init)`);
4. divides by the fraction of latency that dropping the block saves
   (`latency cut`).

The result is the **score = mse / latency cut**: the feature error paid per
unit of speed gained. Lower is better: a block is a good choice when the
network barely misses it (small `mse`) *or* when removing it saves a lot of
time. `rank` orders the blocks by score; `compress(drop=k,
selection="greedy")` starts from the best-ranked one and scores the others
again with it dropped (below: what `compress` chooses by default).

`steps` is the adaptor training per block. The authors use 1000 to 2000 on a
GPU; here 100 already rank the blocks the same way as 200 (compare the
quickstart).
"""

scores = keras_practise.recoverability(teacher, tiny_set, steps=STEPS)
print(scores)

"""
Every row is a `BlockScore`, so the numbers are there to use:
"""

best = scores.best(3)
print("Best 3 blocks by score:", ", ".join(s.label for s in best))
first = best[0]
print(
    f"{first.label}: mse {first.mse:.4g} / latency cut "
    f"{first.latency_reduction:.4f} = score {first.score:.4g}"
)

"""
Two things to look for in the table. The `mse` column alone would rank the
blocks by how dispensable they are; dividing by the latency cut trades that
against speed. And `mse(init)` against `mse` shows how much the adaptors
could repair: a block with a high initial error but a low final one is still
a good candidate, since the recovery has the same tools and more training.

## Measured latency or MACs?

`latency="measured"` (the default) times the original network and each
pruned one on the device you run on, interleaved so that background load
hits all of them alike. `latency="macs"` uses the fraction of
multiply-accumulates removed instead: deterministic and free, but blind to
how fast each layer actually runs.

In a CIFAR ResNet every residual block costs the same number of MACs (when
the resolution halves, the width doubles), so MACs cannot tell the blocks
apart at all, and the ranking falls back to the `mse` column. The measured
cuts are what this device actually saves: they differ from block to block
(stage 1 runs 16 channels on 32x32 maps, stage 3 runs 64 channels on 8x8
maps, and the two do not run equally efficiently), and on a busy machine
also from run to run.
"""

measured = scoring.latency_reductions(teacher, blocks, "measured")
macs = scoring.latency_reductions(teacher, blocks, "macs")
print(f"{'block':<8}{'measured cut':>14}{'MACs cut':>10}")
for block, measured_cut, macs_cut in zip(blocks, measured, macs):
    print(f"{block.label:<8}{measured_cut:>13.1%}{macs_cut:>10.1%}")

"""
Use `"measured"` when you run on the deployment device (or one like it),
and `"macs"` when you cannot, or when the machine is so busy that the
timings are mostly noise: `compress(model, data, latency="macs")`.

## A latency target instead of a count

`latency_target=0.2` asks for 20% less latency: blocks are added in score
order until dropping them together saves at least that much (measured the
same way as the scores). The report says what was reached.
"""

target_model, target_report = keras_practise.compress(
    teacher,
    tiny_set,
    latency_target=0.2,
    steps=STEPS,
    finetune_steps=FINETUNE_STEPS,
    return_report=True,
    verbose=0,
)
print(f"latency_target=0.2 dropped: {', '.join(target_report.labels)}")
print(f"measured latency reduction: {target_report.latency_reduction:.1%}")

"""
The report's figure is a fresh measurement, at `latency_batch_size` (8 by
default), so on a busy machine it can land a few points on either side of
the target that the selection measured. Where that matters, select with
`latency="macs"` (exact, but a proxy) or measure on a quiet machine.
"""

"""
## Choosing by brief recoveries (`selection`)

Scores measured before recovery predict only roughly which *set* of blocks
recovers best: on the project's selection benchmark, the feature error
right after dropping a set even ranked a plain VGG-style network's sets
backwards (docs/results.md, "Choosing blocks by brief recoveries"). The
`"shortlist"` rule asks the question directly: the sets whose dropping
changes the features least (up to `finalists` of them) are each
recovered for `finalist_steps` steps with the real recipe, and the one
that stays closest to the teacher (top-1 agreement, then output error) is
recovered in full. Each set is auditioned twice (`finalist_folds=2`):
recovered from half the images and judged on the other half, then the
other way round. Judged on new crops of the images it trained on, a brief
recovery that fits those images looks better than it is. (When no brief
recovery predicts the teacher on the held-out half better than a
constant, the sets are auditioned on every image and judged on new crops
instead.) The report lists every audition.

`compress` uses it by default (`selection="auto"`) when each audition gets
at least 100 steps, i.e. from `finetune_steps=500` (the default); shorter
auditions were measured to mislead, so with fewer steps it falls back to
the greedy recoverability choice. `finalists`, `finalist_steps` and
`finalist_folds` are the budget: fewer, shorter auditions cost less and
choose worse.
"""

shortlist_model, shortlist_report = keras_practise.compress(
    teacher,
    tiny_set,
    drop=2,
    selection="shortlist",
    finalists=4,
    finalist_steps=FINETUNE_STEPS // 3,
    finetune_steps=FINETUNE_STEPS,
    latency="macs",
    return_report=True,
    verbose=0,
)
print(shortlist_report.auditions)
print(
    f"chosen by {shortlist_report.selection}: {', '.join(shortlist_report.labels)}"
)

"""
## Naming the blocks yourself

`blocks=` skips the scoring and drops what you say: names
(`"conv2_block2"`), labels (`"1.2"`) or `Block` objects. Useful when you
already know the answer, or to reproduce a paper's scheme (the paper's
ResNet-34-B drops 1.2 and 2.2).
"""

chosen_model, chosen_report = keras_practise.compress(
    teacher,
    tiny_set,
    blocks=["1.2", "2.2"],
    finetune_steps=FINETUNE_STEPS,
    return_report=True,
    verbose=0,
)
print(chosen_report)

"""
## A manual look with `drop_blocks`

`drop_blocks` removes blocks and does nothing else: no adaptors, no
training. The copy keeps the teacher's weights (the teacher itself is not
touched), so it shows how much each block matters before any recovery and
which layers went.
"""

manual = keras_practise.drop_blocks(teacher, ["1.2", "2.2"])
removed = sorted({l.name for l in teacher.layers} - {l.name for l in manual.layers})
print(f"drop_blocks removed {len(removed)} layers: {', '.join(removed)}")

print(f"{'model':<28}{'MACs (M)':>10}{'test accuracy':>15}")
for name, model in [
    ("teacher", teacher),
    ("1.2 + 2.2, no recovery", manual),
    ("1.2 + 2.2, recovered", chosen_model),
    ("latency_target=0.2", target_model),
    ("shortlist, drop 2", shortlist_model),
]:
    print(
        f"{name:<28}{keras_practise.count_macs(model) / 1e6:>10.1f}"
        f"{100 * accuracy(model):>14.2f}%"
    )
