"""Tests for keras_practise.schemes: filters, decouple, lowrank, sparse."""

import keras
import numpy as np
import pytest

import keras_practise

from keras_practise import models
from keras_practise.graph import surgery
from keras_practise.profiling import macs
from keras_practise.schemes import core
from keras_practise.schemes import decouple
from keras_practise.schemes import filters
from keras_practise.schemes import lowrank
from keras_practise.schemes import sparse
from tests import tiny_models

_X = tiny_models.images(8)


def _teacher():
    """A tiny ResNet whose BatchNorm statistics are the data's (as if trained)."""
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            core.recalibrate_batchnorm(model, [layer.name], _X)
    return model


def _predict(model):
    return model.predict(_X, verbose=0)


def _student_at_init(model, step):
    return surgery.rewrite(core.flat_copy(model), **step.student)


def test_follow_finds_maps_read_by_convs_alone():
    flat = core.flat_copy(_teacher())
    assert filters.prunable_maps(flat) == [
        f"{b}_1_conv" for b in ("s1_block1", "s1_block2", "s1_block3", "s2_block1", "s2_block2")
    ]
    chain = core.follow(flat, "s1_block1_2_conv")
    assert chain.consumers == () and chain.ends == ("s1_block1_2_bn",)


def test_filter_student_at_init_is_the_l1_pruned_network():
    model = _teacher()
    step = filters.filter_step(core.flat_copy(model), "s1_block2_1_conv", 0.5)
    pruned = filters.l1_pruned(model, {"s1_block2_1_conv": 0.5})
    np.testing.assert_allclose(
        _predict(_student_at_init(model, step)), _predict(pruned), atol=1e-5
    )
    assert pruned.get_layer("s1_block2_1_conv").filters == 4


@pytest.mark.parametrize(
    "make",
    [
        lambda m, n, r: decouple.decouple_step(m, n, rank=9),
        lambda m, n, r: lowrank.lowrank_step(m, n, r, rank=1.0),
        lambda m, n, r: sparse.sparse_step(m, n, sparsity=0.0),
    ],
    ids=["decouple-full-rank", "lowrank-full-rank", "sparse-no-zeros"],
)
def test_lossless_settings_leave_the_function_unchanged(make):
    model = _teacher()
    flat = core.flat_copy(model)
    name = "s2_block1_1_conv"  # strided, so padding and strides are covered
    responses = core.activations(flat, [flat.get_layer(name).output], _X)[0]
    step = make(flat, name, responses)
    np.testing.assert_allclose(
        _predict(_student_at_init(model, step)), _predict(model), atol=1e-4
    )


def test_lowrank_energy_rank_follows_scikit_learn_rule():
    eigenvalues = np.array([4.0, 3.0, 2.0, 1.0])  # ratios .4 .3 .2 .1
    assert lowrank.energy_rank(eigenvalues, 0.4) == 2  # must exceed 0.4
    assert lowrank.energy_rank(eigenvalues, 0.39) == 1
    assert lowrank.energy_rank(eigenvalues, 1.0) == 4


def test_magnitude_mask_zeros_the_smallest_entries():
    kernel = np.arange(1, 11, dtype="float32").reshape(1, 1, 2, 5)
    mask = sparse.magnitude_mask(kernel, 0.9)
    assert mask.sum() == 1 and mask.ravel()[-1] == 1


@pytest.mark.parametrize(
    "scheme,kwargs",
    [
        ("filters", {"keep": 0.5, "layers": ["s1_block1_1_conv", "s2_block2_1_conv"]}),
        ("decouple", {"layers": ["s1_block2_1_conv", "s1_block2_2_conv"]}),
        ("lowrank", {"layers": ["s2_block2_1_conv"]}),
        ("sparse", {"layers": ["s1_block3_1_conv", "s2_block1_0_conv"]}),
    ],
)
def test_compress_with_scheme_end_to_end(scheme, kwargs, tmp_path):
    model = _teacher()
    original = [w.copy() for w in model.get_weights()]
    small, report = keras_practise.compress(
        model, _X, scheme=scheme, steps=3, verbose=0, return_report=True, **kwargs
    )
    for before, after in zip(original, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert all(r.fold_error <= 1e-4 for r in report.steps)
    assert all(np.isfinite([r.mse_init, r.mse_trained]).all() for r in report.steps)
    assert report.params == (macs.count_params(model), macs.count_params(small))
    assert report.macs[1] == macs.count_macs(small)
    assert report.params[1] < report.params[0] or scheme == "sparse"
    assert not any("adaptor" in layer.name for layer in small.layers)
    assert all(type(layer).__module__.startswith("keras.") for layer in small.layers)
    if scheme == "filters":
        assert small.get_layer("s1_block1_1_conv").filters == 4
        assert small.get_layer("s2_block2_1_conv").filters == 8
    if scheme == "sparse":
        # The default, half of each kernel.
        assert report.sparsity == pytest.approx(0.5, abs=0.01)
        kernel = small.get_layer("s1_block3_1_conv").get_weights()[0]
        assert np.mean(kernel == 0) >= 0.49
    path = tmp_path / "small.keras"
    small.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(_predict(reloaded), _predict(small), atol=1e-6)


def test_former_entry_point_is_a_deprecated_alias_of_compress():
    model = _teacher()
    settings = dict(layers=["s2_block2_1_conv"], steps=2, verbose=0, seed=3)
    with pytest.warns(DeprecationWarning, match="scheme='lowrank'"):
        old = keras_practise.schemes.compress_with_scheme(
            model, _X, scheme="lowrank", **settings
        )
    new = keras_practise.compress(model, _X, scheme="lowrank", **settings)
    np.testing.assert_allclose(_predict(old), _predict(new), atol=1e-5)


def test_stream_joins_every_conv_writing_the_residual_map():
    flat = core.flat_copy(_teacher())
    # Stage 2's stream reaches the classifier, so only stage 1's can shrink.
    assert filters.prunable_streams(flat) == ["stem_conv"]
    chain = core.follow_stream(flat, "s1_block2_2_conv")
    assert chain.producers == (
        "stem_conv", "s1_block1_2_conv", "s1_block2_2_conv", "s1_block3_2_conv"
    )
    assert set(chain.consumers) == {
        "s1_block1_1_conv", "s1_block2_1_conv", "s1_block3_1_conv",
        "s2_block1_1_conv", "s2_block1_0_conv",
    }
    assert chain.closed and "s1_block2_add" in chain.between
    assert not core.follow_stream(flat, "s2_block1_0_conv").closed


def test_stream_choice_does_not_depend_on_one_convs_scale():
    rng = np.random.default_rng(0)
    kernels = [rng.normal(size=(3, 3, 4, 8)) for _ in range(3)]
    chosen = filters.l1_choice(kernels, 4)
    assert list(filters.l1_choice([kernels[0] * 100, *kernels[1:]], 4)) == list(chosen)
    # One kernel: Li et al.'s L1 choice.
    norms = np.abs(kernels[0]).sum(axis=(0, 1, 2))
    assert set(filters.l1_choice(kernels[:1], 4)) == set(np.argsort(-norms)[:4])


def test_stream_written_with_operator_adds_and_biased_convs():
    # A user-written net: `x + y` adds (operations, not layers), conv biases,
    # no BatchNorm in the blocks.
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    for i in range(2):
        y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"b{i}_1")(x)
        y = keras.layers.Conv2D(8, 3, padding="same", name=f"b{i}_2")(y)
        x = keras.layers.ReLU()(x + y)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="down")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    assert filters.prunable_streams(core.flat_copy(model)) == ["stem"]
    small, report = keras_practise.compress(
        model, _X * 50, scheme="filters", keep={"stem": 0.5}, steps=3,
        verbose=0, return_report=True,
    )
    assert report.steps[0].detail == {"channels": (8, 4), "convs": 3}
    assert report.steps[0].fold_error <= 1e-4
    assert np.isfinite(report.steps[0].mse_trained)
    assert [small.get_layer(n).filters for n in ("stem", "b0_2", "b1_2")] == [4] * 3
    assert small.get_layer("down").get_weights()[0].shape[2] == 4


def test_stream_pruning_end_to_end(tmp_path):
    model = _teacher()
    original = [w.copy() for w in model.get_weights()]
    keep = {"stem_conv": 0.5, "s1_block2_1_conv": 0.5}
    step = filters.filter_step(core.flat_copy(model), "stem_conv", 0.5)
    np.testing.assert_allclose(
        _predict(_student_at_init(model, step)),
        _predict(filters.l1_pruned(model, {"stem_conv": 0.5})),
        atol=1e-5,
    )
    small, report = keras_practise.compress(
        model, _X, scheme="filters", keep=keep, steps=3, verbose=0,
        return_report=True,
    )
    for before, after in zip(original, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert [r.layer for r in report.steps] == list(keep)
    assert report.steps[0].detail == {"channels": (8, 4), "convs": 4}
    assert all(r.fold_error <= 1e-4 for r in report.steps)
    for name in ("stem_conv", "s1_block1_2_conv", "s1_block3_2_conv"):
        assert small.get_layer(name).filters == 4
    for name in ("s1_block1_1_conv", "s2_block1_0_conv", "s2_block1_1_conv"):
        assert small.get_layer(name).get_weights()[0].shape[2] == 4
    assert small.get_layer("s1_block2_1_conv").filters == 4
    plain = filters.l1_pruned(model, keep)
    assert report.params[1] == macs.count_params(plain) < report.params[0]
    assert report.macs[1] == macs.count_macs(plain)
    path = tmp_path / "small.keras"
    small.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(_predict(reloaded), _predict(small), atol=1e-6)


@pytest.mark.parametrize("method", ["mimic", "mimic_ce", "ce", "kd", "fitnet"])
def test_scheme_recovery_methods_and_baselines(method):
    model = _teacher()
    original = [w.copy() for w in model.get_weights()]
    labels = np.arange(len(_X)) % 4
    small, report = keras_practise.compress(
        model, (_X, labels), scheme="filters", layers=["s2_block2_1_conv"],
        steps=2, method=method, finetune_steps=3, verbose=0, return_report=True,
    )
    for before, after in zip(original, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert report.method == method
    # The default keeps three quarters of the 16 filters.
    assert small.get_layer("s2_block2_1_conv").filters == 12
    assert report.macs[1] == macs.count_macs(small) < report.macs[0]
    assert report.finetune_curve
    assert all(np.isfinite(loss) for _, loss in report.finetune_curve)
    assert "finetune" in report.phase_seconds
    record = report.steps[0]
    if method in ("ce", "kd", "fitnet"):
        # The baselines train the untrained compression as a whole.
        assert record.mse_trained == record.mse_init
    assert not any("adaptor" in layer.name for layer in small.layers)


def test_bad_arguments_raise_before_training():
    model = _teacher()
    with pytest.raises(ValueError, match="Unknown scheme"):
        keras_practise.compress(model, _X, scheme="quantize")
    with pytest.raises(ValueError, match=r"keep\['s1_block1_1_conv'\]=1.5"):
        keras_practise.compress(model, _X, scheme="filters", keep=1.5)
    with pytest.raises(ValueError, match="only maps read by convs"):
        keras_practise.compress(model, _X, scheme="filters", layers=["s1_block1_2_conv"])
    with pytest.raises(ValueError, match=r"streams: \['stem_conv'\]"):
        keras_practise.compress(model, _X, scheme="filters", layers=["s2_block1_0_conv"])
    with pytest.raises(TypeError, match="keep"):
        keras_practise.compress(model, _X, scheme="filters", keep="half")
    with pytest.raises(ValueError, match="sparsity"):
        keras_practise.compress(model, _X, scheme="sparse", sparsity=1.0)
    with pytest.raises(ValueError, match="method='stagewise'"):
        keras_practise.compress(model, _X, scheme="filters", method="stagewise")
    with pytest.raises(ValueError, match="labels"):
        keras_practise.compress(model, _X, scheme="filters", method="ce")
    with pytest.raises(ValueError, match="finetune_steps"):
        keras_practise.compress(model, _X, scheme="filters", method="kd", finetune_steps=0)


def test_resnet34_filter_schemes_params_and_macs():
    model = models.ResNet34(weights=None)
    half = filters.l1_pruned(model, 0.5)
    # Half the filters of the first conv of all 16 basic blocks.
    assert macs.count_params(half) == pytest.approx(11.264e6, rel=1e-3)
    assert macs.count_macs(half) == pytest.approx(1.9008e9, rel=1e-3)
    li_b = filters.l1_pruned(model, filters.RESNET34_LI_B)
    # The paper's 19.25 M / 2.80 G (torch counts: trainable weights only).
    trainable = sum(int(np.prod(w.shape)) for w in li_b.trainable_weights)
    assert trainable / 1e6 == pytest.approx(19.25, rel=0.015)
    assert macs.count_macs(li_b) / 1e9 == pytest.approx(2.80, rel=0.01)


def test_cifar_vgg16_half_matches_the_papers_table_16():
    model = models.VGG16(classes=10)
    assert macs.count_macs(model) / 1e6 == pytest.approx(313.47, rel=1e-3)
    half = filters.l1_pruned(model, filters.VGG16_CIFAR_HALF)
    trainable = sum(int(np.prod(w.shape)) for w in half.trainable_weights)
    assert trainable / 1e6 == pytest.approx(4.53, rel=0.01)
    assert macs.count_macs(half) / 1e6 == pytest.approx(91.11, rel=0.01)
    assert half.get_layer("block3_conv2").filters == 128
    assert half.get_layer("block1_conv1").filters == 64


def test_thin_views_keeps_an_even_share_of_each_split():
    views = {"train": np.arange(300.0), "eval": np.arange(60.0)}
    assert core.thin_views(views, 1000, 360_000) is views
    thinned = core.thin_views(views, 1000, 100_000)
    # 100,000 of 360,000 bytes: 27.8% would leave the evaluation split 16
    # views; it keeps MIN_VIEWS and training the 68 that fit beside them.
    assert len(thinned["train"]) == 68
    assert len(thinned["eval"]) == core.MIN_VIEWS
    for split, x in thinned.items():
        assert x[0] == 0 and x[-1] == len(views[split]) - 1
        assert len(np.unique(x)) == len(x)


def test_layerwise_steps_hold_their_inputs_within_the_budget(monkeypatch):
    # At 10 MiB the bank's views fit, but not every view's per-layer inputs
    # and targets (about 12 MB): each step trains on evenly spaced views
    # whose values fit the cut activations' share (2.5 MiB).
    seen = []
    train_step = core._train_step

    def spy(current, step, cut, inputs, targets, *args):
        held = sum(
            a.nbytes for split in inputs for a in [inputs[split], *targets[split]]
        )
        seen.append((len(inputs["train"]), len(inputs["eval"]), held))
        return train_step(current, step, cut, inputs, targets, *args)

    monkeypatch.setattr(core, "_train_step", spy)
    model = _teacher()
    x = tiny_models.images(24)
    layers = ["s1_block1_1_conv", "s2_block2_1_conv"]
    _, report = keras_practise.compress(
        model, x, scheme="filters", keep=0.5, layers=layers, steps=2,
        batch_size=8, memory_budget=10 / 1024, verbose=0, return_report=True,
    )
    assert len(seen) >= 2
    for train, evaluation, held in seen:
        assert core.MIN_VIEWS <= train < 24 * 32
        assert evaluation == 24
        assert held <= 2.5 * 2**20
    assert all(np.isfinite([r.mse_init, r.mse_trained]).all() for r in report.steps)
    assert all(r.fold_error <= 1e-4 for r in report.steps)
