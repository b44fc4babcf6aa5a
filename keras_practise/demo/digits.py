"""Cluttered coloured digits: a small local image-classification task.

Each 32x32 RGB image shows one handwritten digit (from scikit-learn's
bundled 8x8 digits), randomly scaled, rotated, sheared, placed and inked in
one of three colour families, on top of a random crop of one of
scikit-image's bundled sample photographs and textures, with fragments of
other digits in any colour as clutter. The label is the pair
(digit, ink colour family): 30 classes.

Why this task instead of plain upsampled digits: those saturate (a CIFAR
ResNet-20 reaches 99.6%) and a block-dropped network recovers completely
from 50 images, so few-shot recovery methods cannot be told apart. Here the
network must find the one complete digit among distractor fragments on a
textured background and bind its shape to its colour; the nuisance
variation is large, so 50 images cover little of the input distribution.

Train and test never share a digit instance: the first 75% of the 1797
scikit-learn digits (in their stored order) feed the train split and the
rest the test split, so test accuracy measures generalisation to unseen
handwriting. The background photographs are split too: train crops come
from the top three quarters of each photograph, test crops from the bottom
quarter.

Images need no preprocessing: feed the float32 [0, 1] arrays as they are.

Generation is vectorised NumPy and deterministic: the same
`(split, num_images, seed, image_size)` always gives the same arrays.
"""

import functools
import os

import numpy as np

from keras_practise.data import augment
from keras_practise.data import natural_images
from keras_practise.utils import validation

NUM_CLASSES = 30
COLOUR_NAMES = ("red", "green", "blue")
CLASS_NAMES = tuple(
    f"{digit}_{colour}" for digit in range(10) for colour in COLOUR_NAMES
)
# The bundled teacher: a CIFAR ResNet-20 trained on this task by
# `benchmarks/train_teacher.py` (see docs/teacher.md).
TEACHER_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "assets",
    "digits_resnet20.keras",
)

# Fraction of the scikit-learn digits (and of every background photograph's
# rows) given to the train split.
_TRAIN_FRACTION = 0.75
# Side of the square every background photograph is resized to.
_BANK_SIZE = 256
_COLOUR_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
# Grey photographs get a random colour mix per image; text and page add
# stroke-like clutter that resembles handwriting.
_GREY_PHOTOS = (
    "brick",
    "grass",
    "gravel",
    "camera",
    "coins",
    "moon",
    "text",
    "page",
)
# Hue centre of each colour family, in turns (0 = red).
_HUE_CENTRES = (0.0, 1.0 / 3.0, 2.0 / 3.0)
_HUE_JITTER = 0.07
_NUM_DISTRACTORS = 2
# Ink candidates drawn per digit; the first far enough from the background
# under the digit wins, so digits stay visible without a fixed palette.
_NUM_INK_CANDIDATES = 8
_MIN_INK_DISTANCE = 0.45
_SPLITS = ("train", "test")
_CHUNK = 2048


@functools.lru_cache(maxsize=1)
def _digit_pools():
    """Returns `{split: (images, labels)}` with disjoint digit instances."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype("float32") / 16.0
    labels = digits.target.astype("int64")
    cut = int(round(_TRAIN_FRACTION * len(labels)))
    # Sampling clamps coordinates to the source: a zero border of two
    # pixels makes everything outside the digit read as blank paper.
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return {
        "train": (images[:cut], labels[:cut]),
        "test": (images[cut:], labels[cut:]),
    }


@functools.lru_cache(maxsize=1)
def _background_banks():
    """Returns `{split: bank}`, each float32 `(photos, rows, cols, 3)`."""
    photos = []
    for name in _COLOUR_PHOTOS + _GREY_PHOTOS:
        photo = natural_images.load_photograph(name)
        if photo is None:
            raise ImportError(
                f"The digits task needs scikit-image's {name!r} photograph, "
                "which this scikit-image build cannot provide offline."
            )
        photos.append(
            augment.resize(
                photo[None], _BANK_SIZE, crop_to_aspect_ratio=False
            )[0]
        )
    bank = np.stack(photos)
    cut = int(round(_TRAIN_FRACTION * _BANK_SIZE))
    return {"train": bank[:, :cut], "test": bank[:, cut:]}


def _bilinear(source, index, rows, cols):
    """Samples `source[index]` at float pixel coordinates.

    Coordinates are clamped to the source, so sources that must read as
    zero outside carry a zero border (see `_digit_pools`).

    Args:
        source: array `(count, height, width)` or `(count, height, width, 3)`.
        index: int array `(n,)`, which source image each sample reads.
        rows: float32 array `(n, size, size)` of row coordinates.
        cols: float32 array `(n, size, size)` of column coordinates.

    Returns:
        float32 array `(n, size, size)` or `(n, size, size, 3)`.
    """
    height, width = source.shape[1:3]
    flat = source.reshape((-1,) + source.shape[3:])
    rows = np.clip(rows, 0.0, height - 1.001)
    cols = np.clip(cols, 0.0, width - 1.001)
    row0 = rows.astype("int32")  # floor, since coordinates are >= 0
    col0 = cols.astype("int32")
    row_w = rows - row0
    col_w = cols - col0
    top = (index.astype("int32")[:, None, None] * height + row0) * width + col0
    if source.ndim == 4:
        row_w = row_w[..., None]
        col_w = col_w[..., None]
    upper = flat[top] + col_w * (flat[top + 1] - flat[top])
    below = top + width
    lower = flat[below] + col_w * (flat[below + 1] - flat[below])
    return upper + row_w * (lower - upper)


def _hsv_to_rgb(hue, saturation, value):
    """Vectorised HSV to RGB; all inputs broadcast, hue in turns."""
    hue = np.mod(hue, 1.0)[..., None]
    k = np.mod(np.array([5.0, 3.0, 1.0]) + hue * 6.0, 6.0)
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return value[..., None] * (1.0 - saturation[..., None] * ramp)


def _sample_params(rng, num_images, labels_pool, num_bank, bank_rows):
    """Draws every per-image random choice (floats as float32).

    Drawing them all before rendering keeps each image's parameters
    independent of how rendering is chunked.
    """
    n = num_images
    p = {}
    p["label"] = rng.integers(0, NUM_CLASSES, n)
    digit = p["label"] // len(COLOUR_NAMES)
    # Pick a pool instance of the wanted digit for every image.
    order = np.argsort(labels_pool, kind="stable")
    starts = np.searchsorted(labels_pool[order], np.arange(10))
    counts = np.bincount(labels_pool, minlength=10)
    pick = (rng.random(n) * counts[digit]).astype("int64")
    p["digit_index"] = order[starts[digit] + pick]

    p["bg_index"] = rng.integers(0, num_bank, n)
    crop = rng.uniform(24.0, min(72.0, bank_rows), n)
    p["bg_crop"] = crop
    p["bg_row"] = rng.uniform(0.0, bank_rows - crop)
    p["bg_col"] = rng.uniform(0.0, _BANK_SIZE - crop)
    p["bg_flip"] = rng.random(n) < 0.5
    # Random colour mix: tints grey photographs, shifts colour ones.
    p["bg_mix"] = np.eye(3) * rng.uniform(0.5, 1.0, (n, 1, 1)) + rng.uniform(
        0.0, 0.35, (n, 3, 3)
    )
    p["bg_offset"] = rng.uniform(-0.15, 0.15, (n, 1, 3))

    k = _NUM_DISTRACTORS + 1  # distractors first, the target last
    p["scale"] = rng.uniform(1.7, 2.8, (n, k))  # canvas px per digit px
    p["angle"] = rng.uniform(-0.5, 0.5, (n, k))
    p["shear"] = rng.uniform(-0.3, 0.3, (n, k))
    p["aspect"] = rng.uniform(0.8, 1.25, (n, k))
    p["centre"] = rng.uniform(-1.0, 1.0, (n, k, 2))
    p["alpha"] = rng.uniform(0.75, 1.0, (n, k))
    p["piece_index"] = rng.integers(0, len(labels_pool), (n, k - 1))
    p["piece_normal"] = rng.uniform(0.0, 2.0 * np.pi, (n, k - 1))
    p["piece_offset"] = rng.uniform(0.0, 2.0, (n, k - 1))
    p["piece_present"] = rng.random((n, k - 1)) < 0.8
    p["piece_hue"] = rng.random((n, k - 1))

    colour = p["label"] % len(COLOUR_NAMES)
    c = _NUM_INK_CANDIDATES
    p["ink_hue"] = np.array(_HUE_CENTRES)[colour][:, None] + rng.uniform(
        -_HUE_JITTER, _HUE_JITTER, (n, c)
    )
    p["ink_sat"] = rng.uniform(0.6, 1.0, (n, c))
    p["ink_val"] = rng.uniform(0.35, 1.0, (n, c))
    p["piece_sat"] = rng.uniform(0.0, 1.0, (n, k - 1))
    p["piece_val"] = rng.uniform(0.2, 1.0, (n, k - 1))
    p["noise_std"] = rng.uniform(0.0, 0.05, n)
    return {
        key: v.astype("float32") if v.dtype == np.float64 else v
        for key, v in p.items()
    }


def _render(p, digits, bank, size, noise_rng):
    """Renders one chunk of images from its parameters.

    The chunk's pixel noise comes from `noise_rng`, one generator per chunk.
    """
    n = len(p["label"])
    k = _NUM_DISTRACTORS + 1
    grid = (np.arange(size, dtype="float32") + 0.5) / size  # in (0, 1)

    # Background: an axis-aligned crop, resampled to `size`, colour mixed.
    step = p["bg_crop"][:, None] * grid[None, :]
    rows = p["bg_row"][:, None] + step - 0.5
    cols = p["bg_col"][:, None] + step - 0.5
    flipped = (p["bg_col"] + p["bg_crop"])[:, None] - step
    cols = np.where(p["bg_flip"][:, None], flipped, cols)
    rows = np.broadcast_to(rows[:, :, None], (n, size, size))
    cols = np.broadcast_to(cols[:, None, :], (n, size, size))
    image = _bilinear(bank, p["bg_index"], rows, cols)
    image = np.einsum("nhwc,ncd->nhwd", image, p["bg_mix"])
    image = image + p["bg_offset"][:, None]
    image = np.clip(image, 0.0, 1.0).astype("float32")

    # Inverse affine map from canvas pixels to padded 8x8 digit pixels.
    # Scales are drawn for 32 px canvases; other sizes keep the proportions.
    scale = p["scale"] * (size / 32.0)
    cos, sin = np.cos(p["angle"]), np.sin(p["angle"])
    sx = scale * p["aspect"]
    sy = scale / p["aspect"]
    # Forward A = R @ Shear @ diag(sx, sy); its inverse, written out.
    a = cos * sx
    b = cos * p["shear"] * sy - sin * sy
    c = sin * sx
    d = sin * p["shear"] * sy + cos * sy
    det = a * d - b * c
    half_extent = 4.0 * scale * 1.2
    centre = size / 2.0 + p["centre"] * np.maximum(
        size / 2.0 - half_extent, 1.0
    )[..., None]
    pix = grid * size  # pixel centres in canvas coordinates
    dy = pix[None, None, :, None] - centre[..., 0, None, None]
    dx = pix[None, None, None, :] - centre[..., 1, None, None]
    a, b, c, d, det = (v[..., None, None] for v in (a, b, c, d, det))
    ex = (d * dx - b * dy) / det
    ey = (-c * dx + a * dy) / det
    digit_cols = ex + 5.5  # padded digit centre is at (5.5, 5.5)
    digit_rows = ey + 5.5
    index = np.concatenate(
        [p["piece_index"], p["digit_index"][:, None]], axis=1
    ).reshape(-1)
    ink = _bilinear(
        digits,
        index,
        digit_rows.reshape(n * k, size, size),
        digit_cols.reshape(n * k, size, size),
    ).reshape(n, k, size, size)
    # Sharpen the blurry upsampled strokes into solid ink.
    ink = np.clip((ink - 0.15) * 2.0, 0.0, 1.0)

    # Distractors keep only one side of a line through near the centre,
    # so they never show a whole digit.
    nx, ny = np.cos(p["piece_normal"]), np.sin(p["piece_normal"])
    side = (
        nx[..., None, None] * ex[:, :-1] + ny[..., None, None] * ey[:, :-1]
    ) > p["piece_offset"][..., None, None]
    ink[:, :-1] *= side * p["piece_present"][..., None, None]
    alpha = ink * p["alpha"][..., None, None]

    piece_ink = _hsv_to_rgb(p["piece_hue"], p["piece_sat"], p["piece_val"])
    for j in range(k - 1):
        a_j = alpha[:, j, ..., None]
        image = image * (1.0 - a_j) + a_j * piece_ink[:, j, None, None, :]

    # Target ink: the first candidate far enough from what lies beneath.
    a_t = alpha[:, -1]
    weight = a_t / np.maximum(a_t.sum(axis=(1, 2), keepdims=True), 1e-6)
    under = np.einsum("nhw,nhwc->nc", weight, image)
    candidates = _hsv_to_rgb(p["ink_hue"], p["ink_sat"], p["ink_val"])
    distance = np.linalg.norm(candidates - under[:, None], axis=-1)
    far = distance >= _MIN_INK_DISTANCE
    choice = np.where(
        far.any(axis=1), far.argmax(axis=1), distance.argmax(axis=1)
    )
    target_ink = candidates[np.arange(n), choice]
    a_t = a_t[..., None]
    image = image * (1.0 - a_t) + a_t * target_ink[:, None, None, :]

    noise = noise_rng.standard_normal(image.shape, dtype="float32")
    image = image + noise * p["noise_std"][:, None, None, None]
    return np.clip(image, 0.0, 1.0).astype("float32")


def load_cluttered_digits(
    split="train", num_images=1000, seed=0, image_size=32
):
    """Generates a split of the cluttered coloured digits task.

    The label of an image is `3 * digit + colour`, colour being 0 (red),
    1 (green) or 2 (blue); `CLASS_NAMES[label]` spells it out. Labels are
    drawn uniformly, so classes are balanced up to sampling noise.

    Args:
        split: `"train"` or `"test"`. The splits draw from disjoint digit
            instances and disjoint regions of the background photographs.
            Defaults to `"train"`.
        num_images: number of images to generate. Defaults to `1000`.
        seed: integer seed; the same arguments always give the same arrays,
            and the two splits differ even with equal seeds. Defaults to `0`.
        image_size: side of the square images in pixels, at least 16.
            Defaults to `32`.

    Returns:
        A tuple `(images, labels)`: float32 `(num_images, image_size,
        image_size, 3)` in `[0, 1]` (channels last, no preprocessing
        needed) and int64 `(num_images,)` in `[0, NUM_CLASSES)`.

    Raises:
        ValueError: if `split` is unknown, `num_images` or `seed` is
            negative, or `image_size` is below 16.
        TypeError: if `num_images`, `seed` or `image_size` is not an
            integer.

    Example:

    ```python
    x, y = load_cluttered_digits("test", num_images=300, seed=1)
    print(x.shape, CLASS_NAMES[y[0]])  # (300, 32, 32, 3) e.g. "7_green"
    ```
    """
    if split not in _SPLITS:
        raise ValueError(
            f"`split` must be one of {_SPLITS}. Received: split={split!r}"
        )
    for name, value, low in (
        ("num_images", num_images, 0),
        ("seed", seed, 0),
        ("image_size", image_size, 16),
    ):
        validation.check_int(name, value, low)
    digits, digit_labels = _digit_pools()[split]
    bank = _background_banks()[split]
    rng = np.random.default_rng([int(seed), _SPLITS.index(split)])
    params = _sample_params(
        rng, int(num_images), digit_labels, len(bank), bank.shape[1]
    )
    starts = range(0, num_images, _CHUNK)
    noise_seeds = rng.integers(0, 2**31, len(starts))
    images = np.zeros((num_images, image_size, image_size, 3), "float32")
    for start, noise_seed in zip(starts, noise_seeds):
        chunk = {key: v[start : start + _CHUNK] for key, v in params.items()}
        images[start : start + _CHUNK] = _render(
            chunk, digits, bank, image_size, np.random.default_rng(noise_seed)
        )
    return images, params["label"]
