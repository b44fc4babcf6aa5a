"""Tests for keras_practise.recovery.fold: adaptors merge exactly into convs."""

import os

import keras
import numpy as np
import pytest

from keras_practise import models
from keras_practise.distillation import adaptors
from keras_practise.distillation import trainer as finetune
from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import surgery
from keras_practise.recovery import fold


def test_folded_conv_weights_match_conv_then_adaptor():
    rng = np.random.default_rng(0)
    conv = keras.layers.Conv2D(4, 3, padding="same")
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    conv(x)
    conv.set_weights([rng.normal(size=w.shape).astype("float32") for w in conv.get_weights()])
    before = rng.normal(size=(3, 3))
    after = rng.normal(size=(4, 4))
    expected = np.einsum(
        "nhwc,cd->nhwd",
        keras.ops.convert_to_numpy(conv(np.einsum("nhwc,cd->nhwd", x, before).astype("float32"))),
        after,
    )
    folded = keras.layers.Conv2D(4, 3, padding="same")
    folded(x)
    folded.set_weights(fold.folded_conv_weights(conv, before=before, after=after))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(folded(x)), expected, rtol=1e-4, atol=1e-4
    )


def _plain_net():
    """A VGG-style plain net, with convs both fused and followed by BN."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    for _ in range(3):
        x = keras.layers.Conv2D(16, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


@pytest.mark.parametrize(
    "factory",
    [
        lambda: models.ResNet20(weights=None, classes=4),
        lambda: keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=4),
        lambda: keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3), classes=4),
        lambda: _plain_net(),
    ],
)
def test_fold_after_real_training(factory, tmp_path):
    model = factory()
    found = blocks_lib.find_blocks(model)
    chosen = [found[1]]
    student, sites = adaptors.insert_adaptors(model, chosen)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 32, 32, 3)).astype("float32")
    # Random targets: a real loss, so every adaptor moves.
    y = rng.uniform(size=model.output.shape[1:]).astype("float32")[None].repeat(16, 0)
    # Train every weight (adaptors included) so the adaptors move away from
    # identity and the BatchNorm statistics change.
    finetune.set_trainable(student, "mimic")
    finetune.fit(
        student, x, [y], ["mse"],
        finetune.TrainConfig(steps=5, batch_size=8, learning_rate=0.05),
    )
    moved = [
        np.abs(keras.ops.convert_to_numpy(student.get_layer(s.adaptor_name).kernel)[0, 0]
               - np.eye(s.channels)).max()
        for s in sites
    ]
    assert max(moved) > 1e-4
    folded = fold.fold_adaptors(student, sites)
    dropped = surgery.drop_blocks(model, chosen)
    assert [l.name for l in folded.layers] == [l.name for l in dropped.layers]
    assert [type(l) for l in folded.layers] == [type(l) for l in dropped.layers]
    np.testing.assert_allclose(
        folded.predict(x, verbose=0), student.predict(x, verbose=0), atol=1e-4
    )
    path = os.path.join(tmp_path, "folded.keras")
    folded.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), folded.predict(x, verbose=0), atol=1e-6
    )
