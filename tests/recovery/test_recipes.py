"""Tests for keras_practise.recovery.recipes: the recovery recipes."""

import keras
import numpy as np
import pytest

from benchmarks import twin_models
from keras_practise.data import views
from keras_practise.data.tiny_set import TinySet
from keras_practise.distillation import feature_bank
from keras_practise.distillation import inference
from keras_practise.distillation import losses
from keras_practise.distillation import optimizer
from keras_practise.distillation import trainer as finetune
from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import surgery
from keras_practise.graph import taps
from keras_practise.recovery import recipes as recovery
from tests import tiny_models


def _setup(labels=True, bn_momentum=0.99):
    model = tiny_models.tiny_resnet(bn_momentum=bn_momentum)
    tiny_models.randomize_batchnorm(model)
    x = tiny_models.images(24)
    y = np.arange(24) % 4 if labels else None
    bank, _ = feature_bank.build_bank(model, views.TinySetSpec(TinySet(images=x, labels=y), augment_views=2))
    chosen = blocks_lib.resolve_blocks(model, ["1.2", "2.2"])
    return model, bank, chosen


@pytest.mark.parametrize(
    "method", ["mimic", "mimic_ce", "ce", "kd", "fitnet", "stagewise"]
)
def test_recipes_return_the_dropped_architecture(method):
    model, bank, chosen = _setup()
    before = [w.copy() for w in model.get_weights()]
    config = finetune.TrainConfig(steps=4, batch_size=8)
    compressed, curve = recovery.recover(model, chosen, bank, method, config)
    reference = surgery.drop_blocks(model, chosen)
    assert [l.name for l in compressed.layers] == [l.name for l in reference.layers]
    assert compressed.count_params() == reference.count_params()
    assert curve and all(np.isfinite(loss) for _, loss in curve)
    for new, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(new, old)


def test_mimic_recovers_features():
    # BatchNorm with torch's default momentum: after 60 steps its moving
    # statistics reflect the trained network (0.99 would still lag).
    model, bank, chosen = _setup(labels=False, bn_momentum=0.9)
    dropped = surgery.drop_blocks(model, chosen)
    tap_model = surgery.rewrite(dropped, outputs=[taps.feature_tap(dropped)])
    initial = inference.feature_mse(tap_model, bank.views["eval"], bank.targets["eval"])
    compressed, _ = recovery.recover(
        model, chosen, bank, "mimic",
        finetune.TrainConfig(steps=60, batch_size=16),
    )
    tap_model = surgery.rewrite(compressed, outputs=[taps.feature_tap(compressed)])
    final = inference.feature_mse(tap_model, bank.views["eval"], bank.targets["eval"])
    assert final < 0.8 * initial


def test_method_checks():
    with pytest.raises(ValueError, match="Unknown recovery method"):
        recovery.check_method("layerwise", True)
    with pytest.raises(ValueError, match="labels"):
        recovery.check_method("ce", False)
    for method in ("mimic", "kd", "fitnet"):
        recovery.check_method(method, False)


def test_kd_moves_the_students_outputs_towards_the_teachers():
    model, bank, chosen = _setup(labels=False, bn_momentum=0.9)
    dropped = surgery.drop_blocks(model, chosen)
    kd = losses.distillation_loss(model, 4.0)
    teacher = bank.outputs("eval")

    def distance(student):
        outputs = inference.predict(student, bank.views["eval"])
        return float(np.mean(keras.ops.convert_to_numpy(kd(teacher, outputs))))

    compressed, _ = recovery.recover(
        model, chosen, bank, "kd", finetune.TrainConfig(steps=60, batch_size=16)
    )
    assert distance(compressed) < 0.8 * distance(dropped)


def test_recovery_that_diverges_everywhere_keeps_the_dropped_model(monkeypatch):
    model = tiny_models.tiny_resnet()
    x, y = tiny_models.images(16), np.arange(16) % 4
    bank, _ = feature_bank.build_bank(model, views.TinySetSpec(TinySet(images=x, labels=y), augment_views=2))
    blocks = blocks_lib.resolve_blocks(model, ["1.2"])

    def diverge(*args, **kwargs):
        raise finetune.TrainingDiverged("Training 'x' diverged at every rate.")

    monkeypatch.setattr(finetune, "fit", diverge)
    config = finetune.TrainConfig(steps=2)
    with pytest.warns(RuntimeWarning, match="training step is skipped"):
        compressed, curve = recovery.recover(model, blocks, bank, "mimic", config)
    assert curve == []
    dropped = surgery.drop_blocks(model, blocks)
    np.testing.assert_allclose(
        compressed.predict(x, verbose=0), dropped.predict(x, verbose=0), atol=1e-5
    )


@pytest.mark.parametrize("method", ["mimic", "fitnet"])
def test_mimicking_that_ends_worse_than_it_started_is_undone(method):
    # A run can lower its training loss (BatchNorm in training mode) and still
    # end worse in inference; here the damage is done by a callback.
    model, bank, chosen = _setup(labels=False)

    class Damage(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            for weight in self.model.trainable_weights:
                if weight.path.endswith("kernel"):
                    weight.assign(weight * 3.0)

    config = finetune.TrainConfig(steps=2, batch_size=8, callbacks=[Damage()])
    with pytest.warns(RuntimeWarning, match="training step is skipped"):
        compressed, curve = recovery.recover(model, chosen, bank, method, config)
    assert curve == []
    start, _ = recovery.recover(model, chosen, bank, "none", config)
    x = bank.views["eval"]
    np.testing.assert_allclose(
        compressed.predict(x, verbose=0), start.predict(x, verbose=0), atol=1e-5
    )


@pytest.mark.parametrize("twin", ["conv x10", "conv x0.1", "images in [0, 255]"])
def test_recovery_of_a_rescaled_twin_follows_the_originals(twin):
    # The twin computes the same function with BatchNorm-fed kernels in
    # other units: with scale-free steps, recovery takes the same path.
    make, factor = twin_models.TWINS[twin]
    model = tiny_models.tiny_resnet(bn_momentum=0.9)
    tiny_models.randomize_batchnorm(model)
    x = tiny_models.images(24)
    # Else training-mode steps move the inference outputs away from the
    # teacher's, and recovery is undone as worse than its start.
    tiny_models.calibrate_batchnorm(model, x)
    results = []
    for net, scale in ((model, 1.0), (make(model), factor)):
        bank, _ = feature_bank.build_bank(net, views.TinySetSpec(TinySet(images=x * scale), augment_views=2))
        chosen = blocks_lib.resolve_blocks(net, ["1.2", "2.2"])
        compressed, curve = recovery.recover(
            net, chosen, bank, "mimic", finetune.TrainConfig(steps=20, batch_size=8)
        )
        results.append((compressed.predict(x * scale, verbose=0), curve))
    (original, curve), (rescaled, twin_curve) = results
    start = np.abs(surgery.drop_blocks(model, chosen).predict(x, verbose=0) - original)
    np.testing.assert_allclose(
        [loss for _, loss in twin_curve], [loss for _, loss in curve], rtol=0.02
    )
    # Training moved the outputs; the twin ended where the original did.
    assert np.abs(rescaled - original).max() < 0.05 * start.max()


def test_scale_free_rates_scale_with_the_kernels_square():
    model = tiny_models.tiny_resnet()
    rates = optimizer.scale_free_rates(model)
    twin = optimizer.scale_free_rates(twin_models.rescale_conv_bn(model, 10.0))
    assert rates and set(rates) == set(twin)
    assert all(k.endswith("kernel") and "predictions" not in k for k in rates)
    for path, rate in rates.items():
        assert twin[path] == pytest.approx(100 * rate, rel=1e-4)
