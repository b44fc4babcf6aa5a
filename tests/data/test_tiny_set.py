import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from PIL import Image

from keras_practise.data import views
from keras_practise.data.tiny_set import TinySet
from keras_practise.data.tiny_set import load_tiny_set


def _arrays(num=30, num_classes=3, height=6, width=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (num, height, width, 3)).astype(np.uint8)
    y = np.arange(num) % num_classes
    return x, y


def _check_matches(tiny, x, y):
    """The tiny set holds exactly the drawn items of x (and y)."""
    np.testing.assert_array_equal(tiny.images, x[tiny.indices].astype(np.float32))
    if y is not None:
        np.testing.assert_array_equal(tiny.labels, y[tiny.indices])


class _BatchesOf(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part], self.y[part]


class _Stream(torch.utils.data.IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y))


def test_numpy_array_all_items():
    x, _ = _arrays(num=7)
    tiny = load_tiny_set(x)
    assert isinstance(tiny, TinySet) and len(tiny) == 7
    assert tiny.images.dtype == np.float32 and tiny.labels is None
    np.testing.assert_array_equal(tiny.indices, np.arange(7))
    np.testing.assert_array_equal(tiny.images, x.astype(np.float32))
    assert "7 images" in repr(tiny) and "unlabeled" in repr(tiny)


def test_tuple_and_dict_draw_the_same_items():
    x, y = _arrays()
    from_tuple = load_tiny_set((x, y), num_samples=5, seed=4)
    from_dict = load_tiny_set({"images": x, "labels": y}, num_samples=5, seed=4)
    assert len(from_tuple) == 5
    np.testing.assert_array_equal(from_tuple.indices, from_dict.indices)
    assert np.all(np.diff(from_tuple.indices) > 0)
    _check_matches(from_tuple, x, y)
    _check_matches(from_dict, x, y)


def test_same_seed_same_draw_other_seed_other_draw():
    x, y = _arrays(num=100)
    first = load_tiny_set((x, y), num_samples=10, seed=2021)
    again = load_tiny_set((x, y), num_samples=10, seed=2021)
    other = load_tiny_set((x, y), num_samples=10, seed=2022)
    np.testing.assert_array_equal(first.indices, again.indices)
    assert not np.array_equal(first.indices, other.indices)
    assert first.seed == 2021


def test_per_class_counts_and_one_hot_labels():
    x, y = _arrays(num=40, num_classes=4)
    tiny = load_tiny_set((x, keras.utils.to_categorical(y, 4)), per_class=3, seed=1)
    np.testing.assert_array_equal(np.bincount(tiny.labels), [3, 3, 3, 3])
    _check_matches(tiny, x, y)
    one_shot = load_tiny_set((x, y), per_class=1, seed=1)
    assert sorted(one_shot.labels) == [0, 1, 2, 3]


def test_tf_data_batched_unbatched_and_dicts_match_the_array_draw():
    x, y = _arrays()
    expected = load_tiny_set((x, y), num_samples=6, seed=7)
    datasets = [
        tf.data.Dataset.from_tensor_slices((x, y)),
        tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
        tf.data.Dataset.from_tensor_slices({"image": x, "label": y}).batch(7),
    ]
    for dataset in datasets:
        tiny = load_tiny_set(dataset, num_samples=6, seed=7)
        np.testing.assert_array_equal(tiny.indices, expected.indices)
        _check_matches(tiny, x, y)
        assert tiny.source == "tf.data.Dataset"
    per_class = load_tiny_set(tf.data.Dataset.from_tensor_slices((x, y)).batch(5),
                              per_class=2, seed=0)
    np.testing.assert_array_equal(np.bincount(per_class.labels), [2, 2, 2])


def test_tf_data_of_varying_sizes_needs_image_size():
    def generate():
        for i in range(8):
            yield np.full((4 + i % 3, 6, 3), i, np.float32), i % 2

    signature = (tf.TensorSpec((None, 6, 3)), tf.TensorSpec((), tf.int64))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    tiny = load_tiny_set(dataset, per_class=3, seed=0, image_size=(4, 4))
    assert tiny.images.shape == (6, 4, 4, 3)
    # Constant images stay constant through resizing: pixel = position.
    np.testing.assert_allclose(tiny.images[:, 0, 0, 0], tiny.indices, rtol=1e-5)
    np.testing.assert_array_equal(tiny.labels, tiny.indices % 2)
    with pytest.raises(ValueError, match="differ in size"):
        load_tiny_set(dataset)


def test_py_dataset_matches_the_array_draw():
    x, y = _arrays()
    tiny = load_tiny_set(_BatchesOf(x, y, batch_size=8), num_samples=9, seed=3)
    expected = load_tiny_set((x, y), num_samples=9, seed=3)
    np.testing.assert_array_equal(tiny.indices, expected.indices)
    _check_matches(tiny, x, y)


def test_torch_channels_first_loader_dataset_and_stream():
    x, y = _arrays()
    x_nchw = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))
    dataset = torch.utils.data.TensorDataset(x_nchw, torch.from_numpy(y))
    expected = load_tiny_set((x, y), num_samples=5, seed=11)
    # A shuffling loader is read by index, so its shuffling does not matter.
    sources = [
        torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True),
        dataset,
        _Stream(x_nchw, torch.from_numpy(y)),
        torch.utils.data.DataLoader(_Stream(x_nchw, torch.from_numpy(y)), batch_size=4),
    ]
    for source in sources:
        tiny = load_tiny_set(source, num_samples=5, seed=11)
        assert tiny.images.shape == (5, 6, 5, 3)
        np.testing.assert_array_equal(tiny.indices, expected.indices)
        _check_matches(tiny, x, y)
    # A tensor passed directly is an array, channels-first too.
    tiny = load_tiny_set(x_nchw, num_samples=5, seed=11)
    _check_matches(tiny, x, None)


def _write_pngs(folder, images):
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(os.path.join(folder, f"img_{i:02d}.png"))


def test_folder_with_class_subfolders(tmp_path):
    x, _ = _arrays(num=9, height=8, width=6)
    for label, name in enumerate(["cat", "dog", "eel"]):
        _write_pngs(tmp_path / name, x[label * 3:(label + 1) * 3])
    (tmp_path / "notes.txt").write_text("not an image")
    tiny = load_tiny_set(str(tmp_path), per_class=2, seed=0)
    assert tiny.class_names == ["cat", "dog", "eel"]
    np.testing.assert_array_equal(np.bincount(tiny.labels), [2, 2, 2])
    for image, label, path in zip(tiny.images, tiny.labels, tiny.indices):
        assert os.path.basename(os.path.dirname(path)) == tiny.class_names[label]
        index = 3 * label + int(os.path.basename(path)[4:6])
        np.testing.assert_array_equal(image, x[index].astype(np.float32))
    again = load_tiny_set(tmp_path, per_class=2, seed=0)
    assert again.indices == tiny.indices


def test_flat_folder_resizes_mixed_sizes(tmp_path):
    small, _ = _arrays(num=3, height=8, width=6)
    large, _ = _arrays(num=2, height=20, width=10)
    _write_pngs(tmp_path, small)
    Image.fromarray(large[0]).save(tmp_path / "wide.bmp")
    Image.fromarray(large[1]).save(tmp_path / "wide.jpg")
    with pytest.raises(ValueError, match="image_size"):
        load_tiny_set(tmp_path)
    tiny = load_tiny_set(tmp_path, num_samples=4, seed=0, image_size=(4, 3),
                         preprocess=lambda images: images / 255.0)
    assert tiny.labels is None and tiny.class_names is None
    assert tiny.images.shape == (4, 4, 3, 3)
    assert 0.0 <= tiny.images.min() and tiny.images.max() <= 1.0
    assert all(os.path.isfile(path) for path in tiny.indices)


def test_image_size_and_preprocess_on_arrays():
    x, y = _arrays(num=4, height=8, width=8)
    tiny = load_tiny_set((x, y), image_size=4,
                         preprocess=keras.applications.resnet.preprocess_input)
    expected = keras.ops.convert_to_numpy(
        keras.ops.image.resize(x.astype(np.float32), (4, 4), antialias=True))
    expected = keras.applications.resnet.preprocess_input(expected)
    np.testing.assert_allclose(tiny.images, expected, atol=1e-3)


def test_streams_are_read_up_to_max_scan():
    x, y = _arrays(num=30)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    tiny = load_tiny_set(dataset, num_samples=5, seed=0, max_scan=10)
    assert np.all(tiny.indices < 10) and "first 10 items" in tiny.source
    with pytest.raises(ValueError, match="max_scan=10"):
        load_tiny_set(dataset, max_scan=10)
    with pytest.raises(ValueError, match="max_scan=10"):
        load_tiny_set((x, y), max_scan=10)


@pytest.fixture(scope="module")
def toy_tfds(tmp_path_factory):
    """A tiny tensorflow-datasets dataset prepared locally (no download)."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class KerasPractiseToyImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
            })
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {
                "train": self._generate_examples(12),
                "test": self._generate_examples(3),
            }

        def _generate_examples(self, num):
            # Pixel value = example id, size varies, label = id % 3.
            for i in range(num):
                image = np.full((6 + i % 2, 5, 3), i, np.uint8)
                yield i, {"image": image, "label": i % 3}

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    KerasPractiseToyImages(data_dir=data_dir).download_and_prepare()
    return data_dir


def test_tfds_by_name(toy_tfds):
    tiny = load_tiny_set("keras_practise_toy_images", per_class=2, seed=0,
                         image_size=(6, 5), data_dir=toy_tfds)
    np.testing.assert_array_equal(np.bincount(tiny.labels), [2, 2, 2])
    np.testing.assert_array_equal(tiny.images[:, 0, 0, 0] % 3, tiny.labels)
    assert tiny.class_names == ["a", "b", "c"]
    again = load_tiny_set("keras_practise_toy_images", per_class=2, seed=0,
                          image_size=(6, 5), data_dir=toy_tfds)
    np.testing.assert_array_equal(tiny.indices, again.indices)
    test = load_tiny_set("keras_practise_toy_images:test", num_samples=2,
                         image_size=6, data_dir=toy_tfds)
    assert len(test) == 2 and "test" in test.source
    with pytest.raises(ValueError, match="image_size"):
        load_tiny_set("keras_practise_toy_images", data_dir=toy_tfds)


def test_tfds_missing_dataset_names_the_location(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)) as error:
        load_tiny_set("cifar10", num_samples=5, data_dir=str(tmp_path))
    assert "downloaded" in str(error.value)
    with pytest.raises(ValueError, match="no_such_dataset"):
        load_tiny_set("no_such_dataset", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    "data, kwargs, error, match",
    [
        (np.zeros((0, 4, 4, 3)), {}, ValueError, "no images"),
        (np.zeros((5, 4, 4)), {}, ValueError, r"shape=\(5, 4, 4\)"),
        (np.zeros((5, 4, 4, 3)), {"num_samples": 6}, ValueError, "only 5"),
        (np.zeros((5, 4, 4, 3)), {"per_class": 1}, ValueError, "labels"),
        ((np.zeros((5, 4, 4, 3)), np.arange(4)), {}, ValueError, "labels.shape"),
        ((np.zeros((4, 4, 4, 3)), np.array([0, 0, 0, 1])), {"per_class": 2},
         ValueError, "class 1 has 1"),
        (np.zeros((5, 4, 4, 3)), {"num_samples": 2, "per_class": 1},
         ValueError, "not both"),
        (np.zeros((5, 4, 4, 3)), {"num_samples": 0}, ValueError, "num_samples=0"),
        (np.zeros((5, 4, 4, 3)), {"seed": -1}, ValueError, "seed=-1"),
        (np.full((5, 4, 4, 3), "a"), {}, ValueError, "dtype"),
        ("./no/such/folder", {}, ValueError, "no/such/folder"),
        ([1, 2, 3], {}, TypeError, "list"),
        (None, {}, TypeError, "NoneType"),
    ],
)
def test_bad_inputs_are_rejected(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_tiny_set(data, **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_rejected_before_any_work(bad):
    x = np.random.default_rng(0).uniform(size=(6, 8, 8, 3)).astype("float32")
    x[4, 1, 2, 0] = bad
    with pytest.raises(ValueError, match="1 NaN or infinite values in 1 of 6 images .first at index 4"):
        load_tiny_set(x)
    # A draw that leaves the bad image out is fine.
    assert len(load_tiny_set(x[:4])) == 4


def test_validation_split_holds_out_whole_images_by_seed():
    images = np.arange(20, dtype="float32").reshape(20, 1, 1, 1) * np.ones((1, 4, 4, 3), "float32")
    tiny = TinySet(images=images, labels=np.arange(20) % 5, indices=np.arange(20))
    fit_set, held_set = views.split_tiny_set(tiny, 0.25, seed=1)
    assert (len(fit_set), len(held_set)) == (15, 5)
    ids = np.concatenate([fit_set.images[:, 0, 0, 0], held_set.images[:, 0, 0, 0]])
    np.testing.assert_array_equal(np.sort(ids), np.arange(20))
    np.testing.assert_array_equal(held_set.labels, held_set.images[:, 0, 0, 0] % 5)
    np.testing.assert_array_equal(held_set.indices, held_set.images[:, 0, 0, 0])
    again = views.split_tiny_set(tiny, 0.25, seed=1)[1]
    other = views.split_tiny_set(tiny, 0.25, seed=2)[1]
    np.testing.assert_array_equal(again.images, held_set.images)
    assert not np.array_equal(other.images, held_set.images)
    assert views.split_tiny_set(tiny, 0.0) == (tiny, None)
    assert len(views.split_tiny_set(tiny, 0.01)[1]) == 1  # At least one.


def test_folds_hold_out_every_image_exactly_once():
    images = np.arange(20, dtype="float32").reshape(20, 1, 1, 1) * np.ones((1, 4, 4, 3), "float32")
    tiny = TinySet(images=images, labels=np.arange(20) % 5)
    held_ids = []
    for index in range(3):
        fit_set, held_set = views.split_tiny_set(tiny, 0.0, seed=3, fold=(index, 3))
        fit, held = fit_set.images[:, 0, 0, 0], held_set.images[:, 0, 0, 0]
        assert len(held) in (6, 7) and len(fit) + len(held) == 20
        assert not set(fit) & set(held)
        np.testing.assert_array_equal(held_set.labels, held % 5)
        held_ids.append(held)
    np.testing.assert_array_equal(np.sort(np.concatenate(held_ids)), np.arange(20))
    # The first of two folds holds out what a split of one half does.
    np.testing.assert_array_equal(
        views.split_tiny_set(tiny, 0.0, seed=3, fold=(0, 2))[1].images,
        views.split_tiny_set(tiny, 0.5, seed=3)[1].images,
    )


@pytest.mark.parametrize(
    "split, fold", [(0.0, (2, 2)), (0.0, (-1, 2)), (0.0, (0, 5)), (0.25, (0, 2))]
)
def test_a_fold_out_of_range_or_beside_a_split_is_refused(split, fold):
    tiny = TinySet(images=np.zeros((4, 2, 2, 3), "float32"))
    with pytest.raises(ValueError, match="A fold must be"):
        views.split_tiny_set(tiny, split, fold=fold)


@pytest.mark.parametrize(
    "split, error",
    [(1.0, ValueError), (-0.1, ValueError), (True, TypeError), ("0.2", TypeError),
     (0.99, ValueError)],
)
def test_validation_split_out_of_range_or_leaving_nothing_is_refused(split, error):
    tiny = TinySet(images=np.zeros((4, 2, 2, 3), "float32"))
    match = "leaves none" if split == 0.99 else r"\[0, 1\)"
    with pytest.raises(error, match=match):
        views.split_tiny_set(tiny, split)
