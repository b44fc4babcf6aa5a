"""
Title: Measuring latency properly
Author: keras_practise
Date created: 2026/11/25
Last modified: 2026/11/25
Description: Time models with `measure_latency` and `compare_latency`, read the spread, vary the batch size, run on a GPU, count MACs per layer.
Accelerator: GPU
"""

"""
## Introduction

PRACTISE drops whole blocks because fewer layers in a row means less
*wall-clock* time, which is what users wait for; multiply-accumulates (MACs)
are only a proxy. Timing a network well takes some care: the first calls
compile graphs and warm caches, GPUs run asynchronously, and a shared
machine adds noise. keras_practise's latency helpers take care of this:

- `measure_latency` times one model: compiled inference
  (`tf.function`, `jax.jit`, or a frozen TorchScript trace on torch), warm-up runs
  discarded, the device synchronised around every timed run, the median and
  percentiles reported;
- `compare_latency` times several models *interleaved*, so that background
  load hits all of them alike and their ratios hold;
- `count_macs(model, per_layer=True)` says where the arithmetic is.

This tutorial uses the bundled digits teacher (see `quickstart.py`) and runs
on a CPU or a GPU. Set `KP_TUTORIAL_FAST=1` to shrink the run counts for a
smoke run.
"""

"""
## Setup: CPU or GPU

keras_practise times on the device the Keras backend computes on; nothing in
the calls below changes between CPU and GPU.

- **Backend**: `KERAS_BACKEND=tensorflow`, `torch` or `jax`, set before
  Keras is imported.
- **GPU builds**: `pip install "tensorflow[and-cuda]"`, a CUDA wheel of
  torch, or `pip install "jax[cuda12]"`. Each backend then uses the first
  visible GPU by itself.
- **Which GPU**: `CUDA_VISIBLE_DEVICES=1 python latency.py` shows the
  process only GPU 1; `CUDA_VISIBLE_DEVICES=-1` hides every GPU, to time the
  CPU on a GPU machine (with JAX also set `JAX_PLATFORMS=cpu`). Set them
  before the process starts.
- **Check**: `keras_practise.backend.device_name()` names the device; every
  result records it.

```shell
KERAS_BACKEND=torch CUDA_VISIBLE_DEVICES=0 python docs/tutorials/latency.py
```

On a shared CPU, more threads than free cores make every run slow and noisy
(on a 2-core machine with other jobs running, torch's two threads were 9
times slower than one). If the spread below is wide, try
`OMP_NUM_THREADS=1` and compare.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras

import keras_practise
from keras_practise import backend
from keras_practise.demo import digits
from keras_practise.profiling.macs import MacsReport

FAST = os.environ.get("KP_TUTORIAL_FAST") == "1"
RUNS = 3 if FAST else 30
WARMUP = 1 if FAST else 5
BATCH_SIZES = (1, 8) if FAST else (1, 8, 64)

print(f"Backend: {keras.backend.backend()}, device: {backend.device_name()}")
teacher = keras.saving.load_model(digits.TEACHER_PATH)

"""
## One model: `measure_latency`

The input is random (latency does not depend on the pixel values) with the
model's input shape. `warmup` untimed runs come first: the first call of a
compiled function traces or compiles it, which can take seconds.
"""

result = keras_practise.measure_latency(
    teacher, batch_size=8, runs=RUNS, warmup=WARMUP
)
print(
    f"batch {result.batch_size}: median {result.median_ms:.2f} ms "
    f"(p10 {result.p10_ms:.2f}, p90 {result.p90_ms:.2f}; "
    f"mean {result.mean_ms:.2f} +- {result.std_ms:.2f}; "
    f"min {result.min_ms:.2f}, max {result.max_ms:.2f}) over {result.runs} runs"
)

"""
How to read it:

- **median**: the number to report. A run that another process interrupts
  takes longer, never shorter, so timings have a long right tail; the median
  ignores it, the mean does not.
- **p10 to p90**: the spread of the middle 80% of runs. A narrow band means
  a quiet machine; when it is wide, compare models only with
  `compare_latency` and use more `runs`.
- **min**: the best case, useful on a noisy machine as a lower bound, but
  rarely what users get.

`result.times_ms` holds every run, for your own plots.

## Several models: `compare_latency`

Comparing two models timed one after the other is unfair: the machine's
load changes in between. `compare_latency` runs round after round; in each
round every model runs once, starting at a different model each round. The
first model is the reference for the ratio and reduction columns.
"""

models = {
    "teacher": teacher,
    "without 1.2": keras_practise.drop_blocks(teacher, ["1.2"]),
    "without 3.2": keras_practise.drop_blocks(teacher, ["3.2"]),
    "without 1.2, 2.2, 3.2": keras_practise.drop_blocks(teacher, ["1.2", "2.2", "3.2"]),
}
comparison = keras_practise.compare_latency(
    models, batch_size=8, runs=RUNS, warmup=WARMUP
)
print(comparison)
print("Latency reductions:", {k: round(v, 3) for k, v in comparison.reductions.items()})

"""
`reductions[name]` is `1 - median / reference median`: 0.25 means 25%
faster. This is the number that recoverability divides by
(`latency="measured"`), and what `compress(latency_target=...)` aims for.

## Batch size matters

Per image, a larger batch is cheaper: fixed costs per layer (launching a
kernel, dispatching an op, synchronising) are shared by more images. The
saving from dropping blocks shifts with it: at small batches those fixed
costs dominate and the saving follows the share of *layers* removed; at
large batches arithmetic and memory traffic dominate and it follows the
share of MACs removed. Measure at the batch size you deploy with; the paper
used 64 on a CPU and 512 on a GPU. `compress(latency_batch_size=...)`
picks the batch size of the report's before/after numbers.
"""

pruned = models["without 1.2, 2.2, 3.2"]
print(
    f"{'batch':>6}{'teacher ms':>12}{'ms / image':>12}"
    f"{'pruned ms':>11}{'reduction':>11}"
)
for batch_size in BATCH_SIZES:
    timing = keras_practise.compare_latency(
        {"teacher": teacher, "pruned": pruned},
        batch_size=batch_size,
        runs=RUNS,
        warmup=WARMUP,
    )
    teacher_ms = timing.results["teacher"].median_ms
    print(
        f"{batch_size:>6}{teacher_ms:>12.2f}{teacher_ms / batch_size:>12.3f}"
        f"{timing.results['pruned'].median_ms:>11.2f}"
        f"{timing.reductions['pruned']:>11.1%}"
    )

"""
In ResNet-20 the three dropped blocks are a third of the residual blocks and
35% of the MACs, so both shares are close and the reduction moves little
with the batch size; the cost per image (`ms / image`) is what falls.
"""

"""
## Where the MACs are: `count_macs(per_layer=True)`

`count_macs(model)` is the total for one image; with `per_layer=True` it
returns a `MacsReport` with one `MacsRow` per layer call, in network order
(`print(report)` shows them all). Convolutions and dense layers count;
BatchNorm, activations, adds and pooling count as 0, the convention of the
paper's tables. Here are the rows of block 1.2, as a table of their own:
"""

report = keras_practise.count_macs(teacher, per_layer=True)
print(f"Total: {report.total:,} MACs per image")
blocks = keras_practise.find_blocks(teacher)
rows = [row for row in report.rows if row.name in blocks[0].layer_names]
print(MacsReport(total=sum(row.macs for row in rows), rows=rows))

"""
Zero-MAC layers still take time: BatchNorm, ReLU and the add each read and
write a whole feature map, and each is one more op to dispatch. That is part
of why dropping a block saves more latency than its MACs suggest at small
batch sizes.

Summing the rows of each block gives its cost. In a CIFAR ResNet every
residual block costs the same (the width doubles when the resolution
halves), so MACs alone cannot say which block to drop; the measured
reductions above can.
"""

by_layer = {row.name: row.macs for row in report.rows}
for block in blocks:
    block_macs = sum(by_layer[name] for name in block.layer_names)
    print(f"block {block.label}: {block_macs:,} MACs ({block_macs / report.total:.1%})")
