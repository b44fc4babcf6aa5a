"""The tiny set: a small, reproducible in-memory sample of the user's images.

`load_tiny_set` turns whatever the user has (arrays, a `tf.data.Dataset`, a
`keras.utils.PyDataset`, a torch dataset or loader, an image folder or a
tensorflow-datasets name) into a `TinySet` of float32 NHWC images.

How items are drawn: every candidate item gets a random key from
`numpy.random.default_rng(seed)`, drawn in the source's order, and the draw
keeps the `num_samples` items (or the `per_class` items of each class) with
the smallest keys. That is a uniform sample without replacement; because keys
are drawn in order it does not depend on how a stream is batched, so the same
seed draws the same positions from an array and from the same data streamed.
Streams are read once, keeping only the current winners in memory.

Streams, and tensorflow-datasets datasets, are read up to `max_scan` items
(50,000 by default) and the draw is made among those; `TinySet.source` says
when that happened. Taking every item (neither `num_samples` nor `per_class`)
is refused for sources larger than `max_scan`.
"""

import dataclasses
import os

import keras
import numpy as np

from keras_practise.data import augment
from keras_practise.data import sources as data_sources
from keras_practise.utils import validation

_RESIZE_BATCH = 256
_ACCEPTED = (
    "a numpy array (N, H, W, C), an (images, labels) tuple, a dict with "
    "'images'/'labels', a tf.data.Dataset, a keras.utils.PyDataset, a torch "
    "Dataset or DataLoader, a path to an image folder, or a "
    "tensorflow-datasets name such as 'cifar10' or 'imagenet2012:validation'"
)


@dataclasses.dataclass(repr=False)
class TinySet:
    """A tiny set of images held in memory.

    Attributes:
        images: float32 numpy array `(N, H, W, C)`, channels last, values as
            the source had them (not rescaled) unless `preprocess` changed them.
        labels: int64 numpy array `(N,)`, or `None` for unlabeled data.
        source: where the images came from, in words.
        indices: which items were drawn: their positions in the source (an
            int array), or the file paths for an image folder.
        seed: the seed of the draw.
        class_names: names of the classes when the source has them (class
            folders, tensorflow-datasets), else `None`.
    """

    images: np.ndarray
    labels: np.ndarray = None
    source: str = ""
    indices: object = None
    seed: int = 0
    class_names: list = None

    def __post_init__(self):
        if not isinstance(self.images, np.ndarray) or self.images.ndim != 4:
            raise ValueError(
                "`images` must be a numpy array of shape (N, H, W, C). "
                f"Received: images of type {type(self.images).__name__} and "
                f"shape {getattr(self.images, 'shape', None)}"
            )
        finite = np.isfinite(self.images)
        if not finite.all():
            bad = np.flatnonzero(~finite.reshape(len(self.images), -1).all(axis=1))
            raise ValueError(
                "`images` must be finite numbers: every feature MSE and score "
                f"would be NaN. Received: {int((~finite).sum())} NaN or "
                f"infinite values in {len(bad)} of {len(self.images)} images "
                f"(first at index {int(bad[0])})"
            )
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(
                "`labels` must have one entry per image. Received: "
                f"{len(self.labels)} labels for {len(self.images)} images"
            )

    def __len__(self):
        return len(self.images)

    def __repr__(self):
        if self.labels is None:
            labels = "unlabeled"
        else:
            labels = f"{len(np.unique(self.labels))} classes"
        return (
            f"TinySet({len(self)} images of shape {self.images.shape[1:]}, "
            f"{labels}, seed={self.seed}, source={self.source!r})"
        )


class _Sampler:
    """Draws items with the smallest random keys, chunk by chunk.

    Args:
        num_samples: keep this many items overall, or `None`.
        per_class: keep this many items of each class, or `None`. With
            neither, every item is kept.
        seed: seed of the key generator.
    """

    def __init__(self, num_samples, per_class, seed):
        self.num_samples = num_samples
        self.per_class = per_class
        self._rng = np.random.default_rng(seed)
        self.seen = 0
        self.keys = np.zeros(0)
        self.positions = np.zeros(0, np.int64)
        self.labels = None
        self.items = []
        self._labelled = None

    @property
    def takes_all(self):
        return self.num_samples is None and self.per_class is None

    def add(self, count, labels=None, items=None):
        """Offers the next `count` items of the source.

        Args:
            count: number of items.
            labels: their int labels, or `None`.
            items: their payload (e.g. images) to keep for winners, or `None`.
        """
        if self._labelled is None:
            self._labelled = labels is not None
        if self._labelled != (labels is not None):
            raise ValueError(
                "Some elements of the source have labels and others do not. "
                f"Received: labels={'missing' if labels is None else 'present'} "
                f"after item {self.seen}"
            )
        keys = self._rng.random(count)
        positions = np.arange(self.seen, self.seen + count)
        self.seen += count
        keys = np.concatenate([self.keys, keys])
        positions = np.concatenate([self.positions, positions])
        if labels is not None and self.labels is not None:
            labels = np.concatenate([self.labels, labels])
        kept_before = len(self.items)
        if items is not None:
            items = self.items + list(items)
        keep = self._winners(keys, labels)
        self.keys, self.positions = keys[keep], positions[keep]
        self.labels = None if labels is None else labels[keep]
        # New winners are copied: a view would keep its whole batch alive.
        self.items = [] if items is None else [
            items[i] if i < kept_before else np.array(items[i]) for i in keep
        ]

    def _winners(self, keys, labels):
        """Sorted indices of the items the draw keeps so far."""
        if self.per_class is not None:
            # Sort by class then key; keep the first `per_class` of each class.
            order = np.lexsort((keys, labels))
            sorted_labels = labels[order]
            starts = np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]
            first = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
            return np.sort(order[np.arange(len(order)) - first < self.per_class])
        if self.takes_all:
            return np.arange(len(keys))
        return np.sort(np.argsort(keys, kind="stable")[: self.num_samples])

    def check(self, description):
        """Raises if the source could not fill the requested draw."""
        if self.seen == 0:
            raise ValueError(f"The source has no images. Received: {description}")
        if self.num_samples is not None and self.seen < self.num_samples:
            raise ValueError(
                f"Asked for num_samples={self.num_samples} but the source has only "
                f"{self.seen} items. Received: {description}"
            )
        if self.per_class is not None:
            classes, counts = np.unique(self.labels, return_counts=True)
            short = classes[counts < self.per_class]
            if len(short):
                raise ValueError(
                    f"Asked for per_class={self.per_class} but {len(short)} classes "
                    f"have fewer items, e.g. class {short[0]} has "
                    f"{counts[counts < self.per_class][0]}. Received: {description}"
                )


def _resolve(data, split, data_dir):
    """Returns an indexed source, or `(description, elements)` for a stream."""
    if isinstance(data, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(data))
        if os.path.isdir(path):
            return data_sources.FolderSource(path)
        # Whatever does not look like a path is taken as a dataset name.
        looks_like_path = path.startswith((os.sep, ".")) or os.path.exists(path)
        if isinstance(data, os.PathLike) or looks_like_path:
            raise ValueError(
                f"Expected an existing folder of images. Received: data={data!r}"
            )
        return data_sources.TfdsSource(data, split, data_dir)
    if isinstance(data, dict):
        if "images" not in data:
            raise ValueError(
                "A dict of arrays must hold the images under 'images'. "
                f"Received: keys={sorted(data)}"
            )
        return data_sources.ArraySource(
            data["images"], data.get("labels"), "dict of arrays"
        )
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(
                "A tuple must be (images, labels). "
                f"Received: tuple of length {len(data)}"
            )
        return data_sources.ArraySource(data[0], data[1], "(images, labels) arrays")
    stream = data_sources.find_stream(data)
    if stream is not None:
        return stream
    source = data_sources.find_torch_map_source(data)
    if source is not None:
        return source
    if hasattr(data, "__array__"):
        return data_sources.ArraySource(data, None, f"{type(data).__name__} of images")
    raise TypeError(
        f"`data` must be {_ACCEPTED}. Data-free compression does not go "
        f"through load_tiny_set. Received: data of type {type(data).__name__}"
    )


def _too_many_error(max_scan, description):
    return ValueError(
        f"The source has more than max_scan={max_scan} items; pass num_samples "
        f"or per_class to draw a tiny set. Received: {description}"
    )


def _draw_indexed(source, sampler, max_scan):
    """Draws from an indexed source; returns `(images, labels, indices, note)`."""
    if sampler.takes_all and source.length > max_scan:
        raise _too_many_error(max_scan, source.description)
    need_labels = sampler.per_class is not None
    count = source.scan_length(need_labels, max_scan)
    labels = source.read_labels(count) if need_labels else None
    if need_labels and labels is None:
        raise ValueError(f"per_class needs labels, but the source has none. "
                         f"Received: {source.description}")
    if count:
        sampler.add(count, labels)
    sampler.check(source.description)
    images, labels = source.fetch(sampler.positions)
    note = ""
    if count < source.length:
        note = f", first {count} of {source.length} items considered"
    return images, labels, source.record(sampler.positions), note


def _draw_stream(elements, description, sampler, max_scan):
    """Draws from a stream read once; returns `(images, labels, indices, note)`."""
    capped = False
    for images, labels in data_sources.stream_chunks(elements):
        room = max_scan - sampler.seen
        if room <= 0:
            capped = True
            break
        if len(images) > room:
            capped = True
            images = images[:room]
            labels = None if labels is None else labels[:room]
        if sampler.per_class is not None and labels is None:
            raise ValueError(f"per_class needs labels, but the source yields none. "
                             f"Received: {description}")
        sampler.add(len(images), labels, images)
        if capped:
            break
    if capped and sampler.takes_all:
        raise _too_many_error(max_scan, description)
    sampler.check(description)
    note = f", first {sampler.seen} items considered" if capped else ""
    return sampler.items, sampler.labels, sampler.positions, note


def _stack_images(images, image_size):
    """Stacks (and resizes) images to one float32 NHWC array."""
    if isinstance(images, np.ndarray):
        groups = {images.shape[1:]: np.arange(len(images))}
    else:
        groups = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape, []).append(i)
    channels = {shape[-1] for shape in groups}
    if len(channels) > 1:
        raise ValueError(
            "Images must share one channel count. "
            f"Received: channels={sorted(channels)}"
        )
    if image_size is None:
        if len(groups) > 1:
            raise ValueError(
                "Images differ in size; pass image_size=(height, width) to "
                "resize them. "
                f"Received: sizes={sorted(shape[:2] for shape in groups)[:5]}"
            )
        stacked = images if isinstance(images, np.ndarray) else np.stack(images)
        return stacked.astype(np.float32)
    out = np.empty((len(images), *image_size, channels.pop()), np.float32)
    for shape, members in groups.items():
        members = np.asarray(members)
        for start in range(0, len(members), _RESIZE_BATCH):
            part = members[start:start + _RESIZE_BATCH]
            batch = np.stack([images[i] for i in part]).astype(np.float32)
            if shape[:2] != image_size:
                batch = augment.resize(batch, image_size)
            out[part] = batch
    return out


def load_tiny_set(data, num_samples=None, per_class=None, seed=0, image_size=None,
                  preprocess=None, data_dir=None, split="train", *, max_scan=50_000):
    """Draws a reproducible tiny set of images from what the user has.

    Args:
        data: the images. One of: a numpy (or tensor) array `(N, H, W, C)`;
            an `(images, labels)` tuple; a dict with `"images"` and optionally
            `"labels"`; a `tf.data.Dataset` yielding images, `(images,
            labels)` or dicts with `"image"`/`"label"`, batched or not; a
            `keras.utils.PyDataset`; a torch `Dataset` or `DataLoader` (tensors
            may be channels-first); a path to a folder of .jpg/.png/.bmp
            images, either one subfolder per class (label = index of the
            sorted subfolder) or flat (unlabeled); or a tensorflow-datasets
            name, optionally with a split (`"imagenet2012:validation"`), which
            must already be prepared under `data_dir`.
            Labels may be ints or one-hot.
        num_samples: draw this many items at random. Defaults to `None`.
        per_class: draw this many items of each class (`1` is "1-shot");
            needs labels. Defaults to `None`. With neither, every item is kept.
        seed: seed of the draw; the same seed draws the same items.
            Defaults to `0`.
        image_size: `(height, width)` or an int: resize every image, cropping
            the centre to the target aspect ratio first (antialiased bilinear).
            Required when the images differ in size. Defaults to `None`.
        preprocess: callable applied to the float32 images after resizing,
            e.g. `keras.applications.resnet.preprocess_input`.
            Defaults to `None`.
        data_dir: folder of prepared tensorflow-datasets datasets.
            Defaults to `None` (`~/tensorflow_datasets`).
        split: tensorflow-datasets split when `data` names none.
            Defaults to `"train"`.
        max_scan: most items read from a stream or a tensorflow-datasets
            dataset; the draw is made among them. Defaults to `50_000`.

    Returns:
        A `TinySet`, items in source order.

    Raises:
        TypeError: if `data` is none of the accepted kinds.
        ValueError: if the source is empty, has fewer items than asked for,
            lacks labels for `per_class`, or does not hold images.
        FileNotFoundError: if a tensorflow-datasets dataset is not prepared.

    Example:

    ```python
    tiny = load_tiny_set("path/to/train", num_samples=100, image_size=224,
                         preprocess=keras.applications.resnet.preprocess_input)
    one_shot = load_tiny_set((x_train, y_train), per_class=1, seed=2021)
    ```
    """
    validation.check_int("num_samples", num_samples, allow_none=True)
    validation.check_int("per_class", per_class, allow_none=True)
    validation.check_int("max_scan", max_scan, allow_none=True)
    if num_samples is not None and per_class is not None:
        raise ValueError(
            "Pass num_samples or per_class, not both. "
            f"Received: num_samples={num_samples}, per_class={per_class}"
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int. Received: seed={seed}")
    if image_size is not None:
        image_size = validation.as_size(image_size)
    if preprocess is not None and not callable(preprocess):
        raise TypeError(
            f"`preprocess` must be callable. Received: preprocess={preprocess!r}"
        )

    source = _resolve(data, split, data_dir)
    sampler = _Sampler(num_samples, per_class, seed)
    if isinstance(source, tuple):
        description, elements = source
        class_names = None
        drawn = _draw_stream(elements, description, sampler, max_scan)
    else:
        description, class_names = source.description, source.class_names
        drawn = _draw_indexed(source, sampler, max_scan)
    images, labels, indices, note = drawn

    images = _stack_images(images, image_size)
    if preprocess is not None:
        processed = keras.ops.convert_to_numpy(preprocess(images))
        processed = np.asarray(processed, np.float32)
        if processed.ndim != 4 or len(processed) != len(images):
            raise ValueError(
                "`preprocess` must return a batch of the same length. "
                f"Received: shape={processed.shape} for {len(images)} images"
            )
        images = processed
    return TinySet(
        images=images,
        labels=labels,
        source=description + note,
        indices=indices,
        seed=int(seed),
        class_names=class_names,
    )
