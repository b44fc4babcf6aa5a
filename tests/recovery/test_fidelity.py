"""The label-free fidelity estimate in every report, and the guard on it."""

import os
import warnings

import keras
import numpy as np
import pytest

import keras_practise
from keras_practise.data import views
from keras_practise.data.tiny_set import TinySet
from keras_practise.demo import digits
from keras_practise.recovery import fidelity
from tests import tiny_models


def _shifted_head(model, column, shift):
    """A copy whose logit `column` is raised by `shift` (a known change)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    dense = copy.get_layer("predictions")
    kernel, bias = dense.get_weights()
    bias = bias.copy()
    bias[column] += shift
    dense.set_weights([kernel, bias])
    return copy


def test_estimate_against_values_computed_here():
    teacher = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(teacher)
    x = tiny_models.images(40)
    same = fidelity.estimate(teacher, teacher, x, labels=np.zeros(40, int))
    assert same.agreement == 1.0 and same.output_error == 0.0
    assert same.feature_error == 0.0
    assert same.accuracy[0] == same.accuracy[1]

    logits = teacher.predict(x, verbose=0)
    # Raise the least likely class by its median gap to the top: about half
    # of the views change their top-1 class.
    column = int(logits.mean(0).argmin())
    shift = float(np.median(logits.max(-1) - logits[:, column]))
    student = _shifted_head(teacher, column, shift)
    result = fidelity.estimate(teacher, student, x)
    moved = student.predict(x, verbose=0)
    assert result.agreement == pytest.approx(
        np.mean(moved.argmax(-1) == logits.argmax(-1))
    )
    assert 0 < result.agreement < 1
    spread = np.mean((logits - logits.mean(0)) ** 2)
    expected = np.mean((moved - logits) ** 2) / spread
    assert result.output_error == pytest.approx(expected, rel=1e-4)
    # The head moved, not the features before it.
    assert result.feature_error == pytest.approx(0.0, abs=1e-10)


def test_held_out_views_are_new_crops_and_deterministic():
    images = tiny_models.images(8, size=20)
    tiny = TinySet(images=images, labels=np.arange(8))
    first, labels = views.held_out_views(tiny, (16, 16), seed=3, count=32)
    again, _ = views.held_out_views(tiny, (16, 16), seed=3, count=32)
    train, _, _ = views.prepare_views(tiny, (16, 16), augment_views=4, seed=3)
    assert first.shape == (32, 16, 16, 3)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(8), 4))
    assert not np.allclose(first, train)


def test_check_warns_and_strict_raises_naming_the_setting():
    low = fidelity.Fidelity(views=100, agreement=0.3, output_error=2.0,
                            feature_error=1.0)
    with pytest.warns(fidelity.FidelityWarning, match="30.0%.*Relax keep=0.1"):
        fidelity.check(low, 0.8, "keep=0.1")
    with pytest.raises(fidelity.FidelityError, match="Relax keep=0.1"):
        fidelity.check(low, 0.8, "keep=0.1", strict=True)
    fidelity.check(low, 0.25, "keep=0.1", strict=True)  # Above the bar.
    broken = fidelity.Fidelity(views=100, agreement=None,
                               output_error=float("nan"), feature_error=None)
    with pytest.raises(fidelity.FidelityError, match="nan"):
        fidelity.check(broken, 0.0, "drop=3", strict=True)


def _digits(num_images, split="train", seed=0):
    return digits.load_cluttered_digits(split, num_images=num_images, seed=seed)


def test_collapsed_scheme_is_flagged_and_strict_writes_nothing(tmp_path):
    teacher = keras.saving.load_model(digits.TEACHER_PATH)
    images, _ = _digits(24)
    # Every droppable block, unrecovered: a broken network.
    every = [b.label for b in keras_practise.find_blocks(teacher)]
    settings = dict(
        blocks=every, method="none", verbose=0, latency_batch_size=0,
        augment_views=1,
    )
    with pytest.warns(fidelity.FidelityWarning, match="Relax drop=3 or latency_target or blocks="):
        _, report = keras_practise.compress(
            teacher, images, return_report=True, **settings
        )
    assert report.fidelity.agreement < 0.8
    assert "fidelity on" in report.table()
    assert report.to_dict()["fidelity"]["agreement"] == report.fidelity.agreement
    path = tmp_path / "small.onnx"
    with pytest.raises(keras_practise.FidelityError):
        keras_practise.compress(
            teacher, images, strict=True, export=str(path), **settings
        )
    assert os.listdir(tmp_path) == []


def test_labelled_report_has_accuracies_and_the_guard_can_be_off():
    teacher = keras.saving.load_model(digits.TEACHER_PATH)
    images, labels = _digits(24)
    _, report = keras_practise.compress(
        teacher, (images, labels), blocks=["1.2"], finetune_steps=2,
        verbose=0, return_report=True, latency_batch_size=0,
        augment_views=1, min_agreement=0.0,
    )
    teacher_accuracy, accuracy = report.fidelity.accuracy
    assert 0.3 < teacher_accuracy <= 1.0 and 0.0 <= accuracy <= 1.0
    assert report.fidelity.views == 24 * 11  # ceil(256 / 24) views of each.
    with pytest.raises(ValueError, match="min_agreement"):
        keras_practise.compress(teacher, images, min_agreement=1.5)


def test_validation_split_judges_on_images_no_step_trained_on():
    teacher = keras.saving.load_model(digits.TEACHER_PATH)
    images, labels = _digits(40)
    settings = dict(
        blocks=["1.2"], finetune_steps=10, verbose=0, return_report=True,
        latency_batch_size=0, augment_views=1, min_agreement=0.0,
        validation_split=0.2,
    )
    small, report = keras_practise.compress(teacher, (images, labels), **settings)
    # 8 of the 40 images held out, 32 views of each (ceil(256 / 8)).
    assert report.fidelity.views == 256
    _, held = views.split_tiny_set(TinySet(images=images, labels=labels), 0.2)
    crops, _ = views.held_out_views(held, (32, 32), seed=0)
    expected = fidelity.estimate(teacher, small, crops, np.repeat(held.labels, 32))
    assert report.fidelity.agreement == pytest.approx(expected.agreement)
    with pytest.raises(ValueError, match="validation_split"):
        keras_practise.compress(teacher, images, validation_split=1.0)


@pytest.mark.parametrize("split", [0.0, 0.2])
def test_a_labelled_recovery_is_warned_unless_judged_on_unseen_images(split):
    teacher = keras.saving.load_model(digits.TEACHER_PATH)
    images, labels = _digits(20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, report = keras_practise.compress(
            teacher, (images, labels), blocks=["1.2"], method="ce",
            finetune_steps=2, verbose=0, return_report=True,
            latency_batch_size=0, augment_views=1, min_agreement=0.0,
            validation_split=split,
        )
    overstated = [w for w in caught if "overstates" in str(w.message)]
    assert len(overstated) == (0 if split else 1)
    assert report.fidelity.unseen_images == bool(split)
    source = "held-out images" if split else "the training images"
    assert f"unseen views of {source}:" in str(report.fidelity)


def test_the_papers_sparsity_is_flagged_and_the_default_is_not():
    # Issue 25: sparsity=0.9, the paper's ImageNet setting, brings the
    # digits teacher near chance (docs/results_fidelity.md); the default
    # keeps it near itself. The last stage's convs unrecovered (steps=0)
    # stand in, quickly, for the whole network recovered.
    teacher = keras.saving.load_model(digits.TEACHER_PATH)
    images, _ = _digits(32)
    layers = [
        layer.name for layer in teacher.layers
        if layer.name.startswith("conv4_") and layer.name.endswith("_conv")
    ]
    settings = dict(
        scheme="sparse", layers=layers, steps=0, augment_views=1,
        latency_batch_size=0, verbose=0, return_report=True,
    )
    with pytest.warns(fidelity.FidelityWarning, match="Relax sparsity=0.9"):
        _, report = keras_practise.compress(teacher, images, sparsity=0.9, **settings)
    assert report.fidelity.agreement < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error", fidelity.FidelityWarning)
        _, report = keras_practise.compress(teacher, images, **settings)
    assert report.settings["sparsity"] == 0.5
    assert report.fidelity.agreement >= 0.8
