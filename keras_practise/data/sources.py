"""Readers for every kind of image source that `load_tiny_set` accepts.

Two kinds of reader:

- *indexed* sources know their length and can fetch chosen items, so the
  tiny set is drawn first and only the drawn items are decoded: in-memory
  arrays, image folders (file paths are drawn, then loaded), map-style torch
  datasets and tensorflow-datasets datasets;
- *streams* can only be iterated: `tf.data.Dataset`, `keras.utils.PyDataset`
  and torch iterable datasets or loaders with custom samplers. They yield
  chunks `(images, labels)` that `data.py` samples from as they pass.

Every reader returns images channels-last with their original values and
dtype; `data.py` converts, resizes and stacks them. TensorFlow, torch and
tensorflow-datasets are never imported here: a torch or TF object can only
be passed in if its library is already loaded, so its classes are looked up
in `sys.modules`, and tensorflow-datasets is imported when a dataset name is
given.
"""

import os
import sys

import keras
import numpy as np

from keras_practise import backend

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png")
# Single images from unbatched streams are grouped so that sampling works on
# chunks rather than on one item at a time.
_CHUNK_SIZE = 256


def split_element(element):
    """Returns the `(images, labels)` of one dataset element.

    An element is images alone, an `(images, labels[, sample_weight])` tuple
    or list, or a dict with an `"image"`/`"images"` key and optionally a
    `"label"`/`"labels"` key. Labels are `None` when absent.
    """
    if isinstance(element, dict):
        image_key = next((k for k in ("image", "images") if k in element), None)
        if image_key is None:
            raise ValueError(
                "A dict element must hold the images under 'image' or 'images'. "
                f"Received: keys={sorted(element)}"
            )
        label_key = next((k for k in ("label", "labels") if k in element), None)
        return element[image_key], (element[label_key] if label_key else None)
    if isinstance(element, (tuple, list)):
        if not 1 <= len(element) <= 3:
            raise ValueError(
                "A tuple element must be (images,), (images, labels) or "
                f"(images, labels, sample_weight). Received: length {len(element)}"
            )
        return element[0], (element[1] if len(element) > 1 else None)
    return element, None


def as_image_batch(images, allow_single=True):
    """Returns images as a channels-last numpy batch of rank 4.

    Args:
        images: a batch `(N, H, W, C)` or, if `allow_single`, one image
            `(H, W, C)`. Channels-first input (`C` of 1 or 3 on axis 1 while
            the last axis is neither) is transposed, which is how torch
            tensors arrive.
        allow_single: whether a rank-3 array is accepted as one image.

    Raises:
        ValueError: if the rank or dtype is not that of images.
    """
    images = backend.to_numpy(images)
    if allow_single and images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        expected = "(N, H, W, C) or (H, W, C)" if allow_single else "(N, H, W, C)"
        hint = " (add a channel axis with x[..., None])" if images.ndim == 3 else ""
        raise ValueError(
            f"Expected images of shape {expected}{hint}. "
            f"Received: shape={images.shape}"
        )
    if images.dtype == bool or not np.issubdtype(images.dtype, np.number):
        raise ValueError(
            f"Expected numeric images. Received: dtype={images.dtype}"
        )
    if images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)
    return images


def as_labels(labels, count):
    """Returns `count` integer class labels from ints or one-hot rows.

    Raises:
        ValueError: if the labels are not `count` class indices.
    """
    labels = backend.to_numpy(labels)
    if labels.ndim == 0:
        labels = labels[None]
    elif count == 1 and labels.ndim == 1 and labels.size > 1:
        labels = labels.argmax()[None]  # One one-hot label of a single image.
    if labels.ndim == 2:
        labels = labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0]
    if labels.shape != (count,):
        raise ValueError(
            f"Expected {count} labels (ints or one-hot rows) for {count} images. "
            f"Received: labels.shape={labels.shape}"
        )
    if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Expected integer class labels. Received: dtype={labels.dtype}"
        )
    return labels.astype(np.int64)


def stream_chunks(elements):
    """Yields `(images, labels)` chunks from an iterable of dataset elements.

    Batched elements (rank-4 images) pass through as arrays; runs of single
    images are gathered into lists of up to 256 images (they may differ in
    size). Labels are an int64 array or `None`.
    """
    images_run, labels_run = [], []

    def flush():
        labels = None if labels_run[0] is None else np.concatenate(labels_run)
        chunk = (list(images_run), labels)
        images_run.clear()
        labels_run.clear()
        return chunk

    for element in elements:
        images, labels = split_element(element)
        single = backend.to_numpy(images).ndim == 3
        images = as_image_batch(images)
        labels = None if labels is None else as_labels(labels, len(images))
        if images_run and (not single or (labels is None) != (labels_run[0] is None)):
            yield flush()
        if not single:
            yield images, labels
            continue
        images_run.append(images[0])
        labels_run.append(labels)
        if len(images_run) == _CHUNK_SIZE:
            yield flush()
    if images_run:
        yield flush()


def find_stream(data):
    """Returns `(description, elements)` if `data` is a stream, else `None`."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(data, tf.data.Dataset):
        return "tf.data.Dataset", _tf_elements(data, tf)
    if isinstance(data, keras.utils.PyDataset):
        return "keras.utils.PyDataset", (data[i] for i in range(len(data)))
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    utils = torch.utils.data
    if isinstance(data, utils.DataLoader) and not _loader_reads_by_index(data, utils):
        return "torch DataLoader", iter(data)
    if isinstance(data, utils.IterableDataset):
        return "torch IterableDataset", iter(data)
    return None


def _tf_elements(dataset, tf):
    """Iterates a `tf.data.Dataset` as numpy.

    Single images of a fixed shape are batched inside TF first: iterating
    element by element costs far more than the sampling itself.
    """
    image_spec, _ = split_element(dataset.element_spec)
    specs = tf.nest.flatten(dataset.element_spec)
    if image_spec.shape.rank == 3 and all(s.shape.is_fully_defined() for s in specs):
        dataset = dataset.batch(_CHUNK_SIZE)
    return dataset.as_numpy_iterator()


def _loader_reads_by_index(loader, utils):
    """Whether a DataLoader only batches its map-style dataset, in some order.

    Such a loader is read through its dataset by index: the draw then does
    not depend on the loader's shuffling, and only drawn items are decoded.
    """
    return (
        not isinstance(loader.dataset, utils.IterableDataset)
        and type(loader.sampler) in (utils.SequentialSampler, utils.RandomSampler)
        and type(loader.batch_sampler) in (type(None), utils.BatchSampler)
    )


class ArraySource:
    """Images (and labels) already in memory."""

    def __init__(self, images, labels, description):
        self.images = as_image_batch(images, allow_single=False)
        self.labels = None if labels is None else as_labels(labels, len(self.images))
        self.description = description
        self.length = len(self.images)
        self.class_names = None

    def scan_length(self, need_labels, max_scan):
        del need_labels, max_scan  # Drawing from memory costs nothing.
        return self.length

    def read_labels(self, count):
        return None if self.labels is None else self.labels[:count]

    def fetch(self, positions):
        labels = None if self.labels is None else self.labels[positions]
        return self.images[positions], labels

    def record(self, positions):
        return positions


class FolderSource:
    """A folder of images: one subfolder per class, or flat and unlabeled.

    Class `i` is the `i`-th subfolder in sorted order (hidden ones skipped),
    searched recursively, as `keras.utils.image_dataset_from_directory` does.
    Files are listed in sorted order so that a seed always draws the same
    paths; only drawn files are decoded.
    """

    def __init__(self, root):
        self.root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        entries = sorted(os.listdir(self.root))
        classes = [e for e in entries if not e.startswith(".")
                   and os.path.isdir(os.path.join(self.root, e))]
        self.paths, labels = [], []
        if classes:
            for label, name in enumerate(classes):
                for folder, dirs, files in os.walk(os.path.join(self.root, name),
                                                   followlinks=True):
                    dirs.sort()
                    found = [os.path.join(folder, f) for f in sorted(files)
                             if f.lower().endswith(IMAGE_EXTENSIONS)]
                    self.paths += found
                    labels += [label] * len(found)
            self.labels = np.asarray(labels, np.int64)
            self.class_names = classes
        else:
            self.paths = [os.path.join(self.root, e) for e in entries
                          if e.lower().endswith(IMAGE_EXTENSIONS)]
            self.labels = None
            self.class_names = None
        self.length = len(self.paths)
        layout = f"{len(classes)} class folders" if classes else "flat, unlabeled"
        self.description = f"image folder {self.root} ({layout})"

    def scan_length(self, need_labels, max_scan):
        del need_labels, max_scan  # Paths and labels are already listed.
        return self.length

    def read_labels(self, count):
        return None if self.labels is None else self.labels[:count]

    def fetch(self, positions):
        images = [keras.utils.img_to_array(keras.utils.load_img(self.paths[p]),
                                           dtype="float32") for p in positions]
        labels = None if self.labels is None else self.labels[positions]
        return images, labels

    def record(self, positions):
        return [self.paths[p] for p in positions]


class TorchMapSource:
    """A map-style torch `Dataset`, read item by item through `__getitem__`.

    Labels for a per-class draw come from the dataset's `targets` attribute
    (torchvision's convention) when it has one; otherwise items are read to
    learn their labels, which is bounded by `max_scan`.
    """

    class_names = None

    def __init__(self, dataset, description):
        if not hasattr(dataset, "__len__"):
            raise TypeError(
                "A map-style torch Dataset must define __len__. "
                f"Received: {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.length = len(dataset)
        self.description = description
        targets = getattr(dataset, "targets", None)
        self.targets = None
        if targets is not None and len(targets) == self.length:
            self.targets = as_labels(targets, self.length)

    def scan_length(self, need_labels, max_scan):
        if need_labels and self.targets is None:
            return min(self.length, max_scan)
        return self.length

    def read_labels(self, count):
        if self.targets is not None:
            return self.targets[:count]
        return self.fetch(range(count))[1]

    def fetch(self, positions):
        images, labels = [], []
        for position in positions:
            image, label = split_element(self.dataset[int(position)])
            images.append(as_image_batch(image)[0])
            labels.append(None if label is None else as_labels(label, 1)[0])
        if any(label is None for label in labels):
            return images, None
        return images, np.asarray(labels, np.int64)

    def record(self, positions):
        return positions


def find_torch_map_source(data):
    """Returns a `TorchMapSource` for a map-style torch dataset or loader."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    utils = torch.utils.data
    if isinstance(data, utils.DataLoader):
        description = (f"torch DataLoader over {type(data.dataset).__name__}, "
                       "read by index")
        return TorchMapSource(data.dataset, description)
    if isinstance(data, utils.Dataset):
        return TorchMapSource(data, f"torch {type(data).__name__}")
    return None


class TfdsSource:
    """A prepared tensorflow-datasets dataset, read without downloading.

    Records are read in file order (`shuffle_files=False`), with images left
    encoded until the drawn ones are decoded, so a draw from a large dataset
    reads records but decodes only the tiny set. Reading stops at
    `max_scan` records: a per-class draw needs every candidate's label, and
    fetching record `p` walks all records before it.

    Args:
        name: dataset name, optionally `"name:split"`.
        split: split used when `name` has none.
        data_dir: folder holding the prepared datasets; `None` is
            tensorflow-datasets' default (`~/tensorflow_datasets`).
    """

    class_names = None

    def __init__(self, name, split, data_dir):
        try:
            import tensorflow_datasets as tfds
        except ImportError as error:
            raise ImportError(
                f"Loading the dataset {name!r} by name needs tensorflow-datasets "
                "(pip install tensorflow-datasets)."
            ) from error
        self._tfds = tfds
        name, _, name_split = name.partition(":")
        self.split = name_split or split
        try:
            self.builder = tfds.builder(name, data_dir=data_dir)
        except tfds.core.registered.DatasetNotFoundError as error:
            raise ValueError(
                "Unknown tensorflow-datasets name, and no such folder exists. "
                f"Received: data={name!r}"
            ) from error
        location = data_dir or "the tensorflow-datasets default ~/tensorflow_datasets"
        if not self.builder.is_prepared():
            raise FileNotFoundError(
                f"The tensorflow-datasets dataset {name!r} is not prepared under "
                f"{location}: expected its files in {self.builder.data_dir}. "
                "Nothing can be downloaded here; copy a prepared copy there "
                "or pass data_dir= pointing to one."
            )
        try:
            self.length = self.builder.info.splits[self.split].num_examples
        except (KeyError, ValueError) as error:
            raise ValueError(
                f"Unknown split {self.split!r} of {name!r}. Available splits: "
                f"{sorted(self.builder.info.splits)}"
            ) from error
        features = self.builder.info.features
        if "image" not in features:
            raise ValueError(
                f"The dataset {name!r} has no 'image' feature. "
                f"Received: features={sorted(features)}"
            )
        self.has_labels = "label" in features
        if self.has_labels and hasattr(features["label"], "names"):
            self.class_names = list(features["label"].names)
        self.description = f"tfds {name}:{self.split} ({self.builder.data_dir})"

    def _records(self):
        return self.builder.as_dataset(
            split=self.split,
            shuffle_files=False,
            decoders={"image": self._tfds.decode.SkipDecoding()},
        )

    def scan_length(self, need_labels, max_scan):
        del need_labels  # Fetching walks the records too, so always bound.
        return min(self.length, max_scan)

    def read_labels(self, count):
        if not self.has_labels:
            return None
        labels = self._records().take(count).map(lambda ex: ex["label"]).batch(4096)
        batches = list(labels.as_numpy_iterator())
        return np.concatenate([np.zeros(0, np.int64)] + batches)

    def fetch(self, positions):
        import tensorflow as tf  # Present whenever tensorflow-datasets is.

        positions = np.asarray(positions, np.int64)
        if not len(positions):
            return [], None
        wanted = np.zeros(positions.max() + 1, bool)
        wanted[positions] = True
        wanted = tf.constant(wanted)
        decode = self.builder.info.features["image"].decode_example
        records = (
            self._records().take(len(wanted)).enumerate()
            .filter(lambda i, ex: tf.gather(wanted, i))
            .map(lambda i, ex: (decode(ex["image"]), ex.get("label", -1)))
        )
        images, labels = [], []
        for image, label in records.as_numpy_iterator():
            images.append(image)
            labels.append(label)
        return images, (np.asarray(labels, np.int64) if self.has_labels else None)

    def record(self, positions):
        return positions
