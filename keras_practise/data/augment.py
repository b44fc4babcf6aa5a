"""Augmentation for tiny sets: random-resized-crop + flip, and the eval crop.

The authors train with torchvision's `RandomResizedCrop(224)` + horizontal flip
and evaluate with `Resize(256)` + `CenterCrop(224)`. Keras 3 has no
random-resized-crop layer, and `keras.ops.image.resize` cannot give every
image of a batch its own crop box, so both transforms are written here as one
separable resampler in numpy:

- a crop box followed by a resize is, along each axis, a linear map from input
  pixels to output pixels; `crop_and_resize` builds that map as a small matrix
  per image and axis (bilinear, antialiased when shrinking, like PIL and
  torchvision) and applies both with batched matrix products;
- a horizontal flip is the same column matrix read backwards, so it costs
  nothing extra.

Being numpy, the result is the same on every Keras backend for the same seed,
which is what `make_views` needs: the training engine draws a bank of
augmented views once and caches the teacher's features on it.
"""

import numpy as np

from keras_practise.data import sources
from keras_practise.utils import validation

_CROP_ATTEMPTS = 10
# Bytes of gathered source images processed per batched matrix product.
_CHUNK_BYTES = 64 * 1024 * 1024


def _check_range(name, value, upper=None):
    """Validates a `(low, high)` range of positive floats."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low, high = 0.0, -1.0
    if not 0 < low <= high or (upper is not None and high > upper):
        bound = f" and at most {upper}" if upper is not None else ""
        raise ValueError(
            f"`{name}` must be a (low, high) pair with 0 < low <= high{bound}. "
            f"Received: {name}={value}"
        )
    return low, high


def _as_image_batch(images):
    return sources.as_image_batch(images, allow_single=False).astype(np.float32)


def sample_crop_boxes(rng, num_boxes, height, width, scale=(0.08, 1.0),
                      ratio=(3 / 4, 4 / 3)):
    """Draws random-resized-crop boxes the way torchvision does.

    Each box covers a fraction of the image area drawn uniformly from `scale`,
    with an aspect ratio (width / height) drawn log-uniformly from `ratio`.
    Up to 10 draws are tried per box; a box that never fits falls back to the
    largest centred crop whose aspect ratio lies in `ratio`. Box sizes and
    offsets are whole pixels.

    Args:
        rng: `numpy.random.Generator` to draw from.
        num_boxes: number of boxes.
        height: image height in pixels.
        width: image width in pixels.
        scale: range of the crop area as a fraction of the image area.
            Defaults to `(0.08, 1.0)`.
        ratio: range of the crop aspect ratio. Defaults to `(3 / 4, 4 / 3)`.

    Returns:
        A float64 array of shape `(num_boxes, 4)` holding
        `(top, left, box_height, box_width)` per box.

    Raises:
        ValueError: if `scale` or `ratio` is not a valid range.
    """
    scale = _check_range("scale", scale, upper=1.0)
    ratio = _check_range("ratio", ratio)
    area = height * width * rng.uniform(*scale, size=(num_boxes, _CROP_ATTEMPTS))
    aspect = np.exp(rng.uniform(*np.log(ratio), size=(num_boxes, _CROP_ATTEMPTS)))
    box_w = np.round(np.sqrt(area * aspect))
    box_h = np.round(np.sqrt(area / aspect))
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    attempt = np.argmax(fits, axis=1)
    rows = np.arange(num_boxes)
    box_h, box_w = box_h[rows, attempt], box_w[rows, attempt]

    # Fallback for boxes none of whose attempts fit: a centred crop.
    if width / height < ratio[0]:
        fallback = (round(width / ratio[0]), width)
    elif width / height > ratio[1]:
        fallback = (height, round(height * ratio[1]))
    else:
        fallback = (height, width)
    missed = ~fits.any(axis=1)
    box_h[missed], box_w[missed] = fallback

    top = np.floor(rng.random(num_boxes) * (height - box_h + 1))
    left = np.floor(rng.random(num_boxes) * (width - box_w + 1))
    top[missed] = (height - fallback[0]) // 2
    left[missed] = (width - fallback[1]) // 2
    return np.stack([top, left, box_h, box_w], axis=1)


def resize(images, image_size, crop_to_aspect_ratio=True):
    """Resizes images with antialiasing, the library's one resizer.

    Args:
        images: array of shape `(N, H, W, C)`.
        image_size: output size, an int or a `(height, width)` pair.
        crop_to_aspect_ratio: whether to cut the largest centred box of the
            output's aspect ratio first, so that nothing is stretched.

    Returns:
        float32 numpy array of shape `(N, height, width, C)`.
    """
    images = _as_image_batch(images)
    out_h, out_w = validation.as_size(image_size)
    height, width = images.shape[1:3]
    box_h, box_w = float(height), float(width)
    if crop_to_aspect_ratio:
        box_h = min(height, width * out_h / out_w)
        box_w = min(width, height * out_w / out_h)
    box = ((height - box_h) / 2, (width - box_w) / 2, box_h, box_w)
    return crop_and_resize(images, np.tile(box, (len(images), 1)), (out_h, out_w))


def _resample_weights(start, length, in_size, out_size):
    """Per-box matrices mapping `in_size` input pixels to `out_size` outputs.

    Output pixel `i` samples the input at the centre of its footprint in the
    box; a triangle filter as wide as the footprint (at least one pixel)
    averages the inputs, which is bilinear interpolation when enlarging and
    antialiased bilinear when shrinking. Rows are normalised so that the
    filter's part that falls outside the image is dropped, i.e. edges clamp.

    Returns:
        float32 array of shape `(len(start), out_size, in_size)`.
    """
    step = (length / out_size)[:, None, None]
    centres = start[:, None, None] + (np.arange(out_size)[:, None] + 0.5) * step
    distance = np.abs(centres - (np.arange(in_size) + 0.5))
    weights = np.clip(1.0 - distance / np.maximum(step, 1.0), 0.0, None)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights.astype(np.float32)


def crop_and_resize(images, boxes, image_size, image_index=None, flip=None):
    """Crops a box out of images and resizes it, with one box per output.

    Args:
        images: array of shape `(N, H, W, C)`.
        boxes: array of shape `(V, 4)` with `(top, left, box_height,
            box_width)` in input pixels; fractional values are allowed.
        image_size: output size, an int or a `(height, width)` pair.
        image_index: int array of shape `(V,)`: which image each box is cut
            from. Defaults to `arange(N)` (then `V` must equal `N`).
        flip: bool array of shape `(V,)`: flip that output horizontally.
            Defaults to no flips.

    Returns:
        float32 numpy array of shape `(V, height, width, C)`.

    Raises:
        ValueError: if the shapes of the arguments do not agree.
    """
    images = _as_image_batch(images)
    out_h, out_w = validation.as_size(image_size)
    boxes = np.asarray(boxes, dtype=np.float64)
    if image_index is None:
        image_index = np.arange(len(images))
    image_index = np.asarray(image_index, dtype=np.int64)
    if boxes.shape != (len(image_index), 4):
        raise ValueError(
            "`boxes` must have shape (V, 4) with one row per entry of "
            f"`image_index`. Received: boxes.shape={boxes.shape}, "
            f"len(image_index)={len(image_index)}"
        )
    flip = np.zeros(len(boxes), bool) if flip is None else np.asarray(flip, bool)
    num, height, width, channels = images.shape
    if len(image_index) and not 0 <= image_index.min() <= image_index.max() < num:
        raise ValueError(
            f"`image_index` must lie in [0, {num}). Received: "
            f"image_index in [{image_index.min()}, {image_index.max()}]"
        )

    outputs = np.empty((len(boxes), out_h, out_w, channels), np.float32)
    chunk = max(1, _CHUNK_BYTES // images[0].nbytes) if num else 1
    for start in range(0, len(boxes), chunk):
        part = slice(start, start + chunk)
        views = len(boxes[part])
        row_weights = _resample_weights(boxes[part, 0], boxes[part, 2], height, out_h)
        col_weights = _resample_weights(boxes[part, 1], boxes[part, 3], width, out_w)
        col_weights[flip[part]] = col_weights[flip[part], ::-1]
        source = images[image_index[part]].reshape(views, height, width * channels)
        rows = np.matmul(row_weights, source).reshape(views, out_h, width, channels)
        rows = rows.transpose(0, 1, 3, 2).reshape(views, out_h * channels, width)
        cols = np.matmul(rows, col_weights.transpose(0, 2, 1))
        cols = cols.reshape(views, out_h, channels, out_w)
        outputs[part] = cols.transpose(0, 1, 3, 2)
    return outputs


class TrainAugmentation:
    """Random-resized-crop + horizontal flip, the authors' train transform.

    Each call draws fresh crop boxes and flips from the generator seeded at
    construction, so a sequence of calls is reproducible.

    Args:
        image_size: output size, an int or a `(height, width)` pair.
        scale: range of the crop area as a fraction of the image area.
            Defaults to `(0.08, 1.0)`, torchvision's default for ImageNet; for
            small images (e.g. 32x32) a floor such as 0.35 keeps enough of
            the object to be recognisable.
        ratio: range of the crop aspect ratio (width / height).
            Defaults to `(3 / 4, 4 / 3)`.
        flip: whether to flip half of the outputs horizontally.
            Defaults to `True`.
        seed: seed of the numpy generator. Defaults to `None` (fresh entropy).
    """

    def __init__(self, image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 flip=True, seed=None):
        self.image_size = validation.as_size(image_size)
        self.scale = _check_range("scale", scale, upper=1.0)
        self.ratio = _check_range("ratio", ratio)
        self.flip = bool(flip)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def __call__(self, images, num_views=1):
        """Returns `num_views` augmented views of each image, image-major.

        Args:
            images: array of shape `(N, H, W, C)`.
            num_views: views per image. Defaults to `1`.

        Returns:
            float32 array of shape `(N * num_views, height, width, C)`; the
            views of image `i` are rows `i * num_views` to
            `(i + 1) * num_views - 1`.
        """
        images = _as_image_batch(images)
        validation.check_int("num_views", num_views)
        image_index = np.repeat(np.arange(len(images)), num_views)
        boxes = sample_crop_boxes(self._rng, len(image_index), images.shape[1],
                                  images.shape[2], self.scale, self.ratio)
        flip = self._rng.random(len(image_index)) < 0.5 if self.flip else None
        return crop_and_resize(images, boxes, self.image_size, image_index, flip)

    def __repr__(self):
        return (f"TrainAugmentation(image_size={self.image_size}, scale={self.scale}, "
                f"ratio={self.ratio}, flip={self.flip}, seed={self.seed})")


class EvalTransform:
    """Resize the shorter side to `size / crop_fraction`, then centre-crop.

    With `image_size=224` and the default `crop_fraction` this is the usual
    `Resize(256)` + `CenterCrop(224)`. Both steps are done as one resample of
    the centred box, which samples exactly the pixels the two steps would.

    Args:
        image_size: output size, an int or a `(height, width)` pair.
        crop_fraction: fraction of the resized shorter side kept by the crop.
            Defaults to `0.875`.
    """

    def __init__(self, image_size, crop_fraction=0.875):
        self.image_size = validation.as_size(image_size)
        if not 0 < crop_fraction <= 1:
            raise ValueError(
                "`crop_fraction` must be in (0, 1]. "
                f"Received: crop_fraction={crop_fraction}"
            )
        self.crop_fraction = float(crop_fraction)

    def __call__(self, images):
        """Returns the centre crops, float32 of shape `(N, height, width, C)`."""
        images = _as_image_batch(images)
        height, width = images.shape[1:3]
        out_h, out_w = self.image_size
        shorter = int(min(out_h, out_w) / self.crop_fraction)
        zoom = shorter / min(height, width)
        resized_h, resized_w = round(height * zoom), round(width * zoom)
        # Like torchvision, the crop offset is a whole pixel of the resized
        # image; a crop larger than the resized image is clipped to it.
        crop_h, crop_w = min(out_h, resized_h), min(out_w, resized_w)
        top = round((resized_h - crop_h) / 2) / zoom
        left = round((resized_w - crop_w) / 2) / zoom
        box = [top, left, crop_h / zoom, crop_w / zoom]
        return crop_and_resize(images, np.tile(box, (len(images), 1)), self.image_size)

    def __repr__(self):
        return (f"EvalTransform(image_size={self.image_size}, "
                f"crop_fraction={self.crop_fraction})")


def train_augmentation(image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                       flip=True, seed=None):
    """Returns the authors' train transform: random-resized-crop + flip.

    Args:
        image_size: output size, an int or a `(height, width)` pair.
        scale: range of the crop area as a fraction of the image area.
            Defaults to `(0.08, 1.0)`; raise the floor for small images.
        ratio: range of the crop aspect ratio. Defaults to `(3 / 4, 4 / 3)`.
        flip: whether to flip half of the outputs horizontally.
            Defaults to `True`.
        seed: seed of the numpy generator. Defaults to `None`.

    Returns:
        A `TrainAugmentation`: call it on an `(N, H, W, C)` array.

    Example:

    ```python
    augment = train_augmentation(224, seed=0)
    views = augment(images, num_views=4)  # (4 * len(images), 224, 224, 3)
    ```
    """
    return TrainAugmentation(image_size, scale=scale, ratio=ratio, flip=flip, seed=seed)


def eval_transform(image_size, crop_fraction=0.875):
    """Returns the authors' eval transform: shorter-side resize + centre crop.

    Args:
        image_size: output size, an int or a `(height, width)` pair.
        crop_fraction: fraction of the resized shorter side that is kept.
            Defaults to `0.875` (resize to 256, crop 224).

    Returns:
        An `EvalTransform`: call it on an `(N, H, W, C)` array.

    Example:

    ```python
    crops = eval_transform(224)(images)  # (len(images), 224, 224, 3)
    ```
    """
    return EvalTransform(image_size, crop_fraction=crop_fraction)


def make_views(images, num_views, image_size, seed, scale=(0.08, 1.0),
               ratio=(3 / 4, 4 / 3), flip=True):
    """Pre-draws a bank of augmented views, reproducibly.

    The same `images` and `seed` give the same views on every backend, so
    features computed on the bank (e.g. the teacher's) can be cached.

    Args:
        images: array of shape `(N, H, W, C)`.
        num_views: views per image.
        image_size: output size, an int or a `(height, width)` pair.
        seed: seed of the numpy generator.
        scale: range of the crop area as a fraction of the image area.
            Defaults to `(0.08, 1.0)`. For small images such as 32x32 a crop
            of 8% is a handful of pixels: use e.g. `(0.35, 1.0)`.
        ratio: range of the crop aspect ratio. Defaults to `(3 / 4, 4 / 3)`.
        flip: whether to flip half of the views. Defaults to `True`.

    Returns:
        float32 array of shape `(N * num_views, height, width, C)`, image-major:
        `views.reshape(N, num_views, height, width, C)[i]` are image `i`'s
        views, so labels follow with `np.repeat(labels, num_views)`.

    Example:

    ```python
    bank = make_views(tiny.images, num_views=8, image_size=224, seed=0)
    ```
    """
    augment = TrainAugmentation(
        image_size, scale=scale, ratio=ratio, flip=flip, seed=seed
    )
    return augment(images, num_views=num_views)
