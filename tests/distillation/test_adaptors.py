"""Tests for keras_practise.distillation.adaptors: placement and identity insertion."""

import keras
import numpy as np
import pytest

from keras_practise import models
from keras_practise.distillation import adaptors
from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import surgery


def _randomize_batchnorm(model):
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()]
            )


def _sites(model, names):
    chosen = blocks_lib.resolve_blocks(model, names)
    return [(s.conv, s.side) for s in adaptors.find_sites(model, chosen)]


def test_resnet50_placement_matches_the_authors():
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3))
    sites = _sites(model, ["conv3_block3"])
    # After the last conv of earlier blocks of the stage and its projection.
    assert ("conv3_block1_3_conv", "after") in sites
    assert ("conv3_block1_0_conv", "after") in sites
    assert ("conv3_block2_3_conv", "after") in sites
    # Before the first conv of later blocks and both convs of the next stage.
    assert ("conv3_block4_1_conv", "before") in sites
    assert ("conv4_block1_1_conv", "before") in sites
    assert ("conv4_block1_0_conv", "before") in sites
    assert len(sites) == 6
    # Nothing crosses into other stages.
    assert not any(c.startswith(("conv2_", "conv5_")) for c, _ in sites)


def test_basic_block_resnet_placement():
    model = models.ResNet18(weights=None, input_shape=(32, 32, 3), classes=10)
    sites = _sites(model, ["conv3_block2"])
    assert sites == [
        ("conv3_block1_2_conv", "after"),
        ("conv3_block1_0_conv", "after"),
        ("conv4_block1_1_conv", "before"),
        ("conv4_block1_0_conv", "before"),
    ] or sorted(sites) == sorted(
        [
            ("conv3_block1_2_conv", "after"),
            ("conv3_block1_0_conv", "after"),
            ("conv4_block1_1_conv", "before"),
            ("conv4_block1_0_conv", "before"),
        ]
    )


def test_mobilenetv2_placement_stops_at_width_change():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3))
    sites = _sites(model, ["block_4"])
    assert sorted(sites) == sorted(
        [
            ("block_3_project", "after"),
            ("block_5_expand", "before"),
            ("block_6_expand", "before"),
        ]
    )


def test_mobilenet_v1_placement_around_a_separable_pair():
    model = keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3))
    # The next depthwise conv cannot take an adaptor (not a dense 1x1 map).
    assert _sites(model, ["conv_pw_8"]) == [("conv_pw_7", "after")]


def test_vgg_placement_skips_fused_activations():
    model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3))
    # block1_conv1 has a fused ReLU: no exact "after" adaptor is possible.
    assert _sites(model, ["block1_conv2"]) == [("block2_conv1", "before")]


FACTORIES = [
    lambda: keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=5),
    lambda: keras.applications.ResNet50V2(weights=None, input_shape=(32, 32, 3), classes=5),
    lambda: keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=5),
    lambda: keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3), classes=5),
    lambda: keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5),
    lambda: models.ResNet20(weights=None, classes=5),
]


@pytest.mark.parametrize("factory", FACTORIES)
def test_identity_adaptors_predict_like_drop_blocks(factory):
    model = factory()
    _randomize_batchnorm(model)
    found = blocks_lib.find_blocks(model)
    chosen = [found[0], found[len(found) // 2]]
    student, sites = adaptors.insert_adaptors(model, chosen)
    assert sites
    for site in sites:
        layer = student.get_layer(site.adaptor_name)
        assert isinstance(layer, keras.layers.Conv2D)
        assert not layer.use_bias and layer.kernel_size == (1, 1)
    dropped = surgery.drop_blocks(model, chosen)
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        student.predict(x, verbose=0), dropped.predict(x, verbose=0), atol=1e-5
    )


def test_adjacent_holes_share_their_adaptors():
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3))
    both = _sites(model, ["conv4_block3", "conv4_block4"])
    assert len(both) == len(set(both))
    assert ("conv4_block5_1_conv", "before") in both
    assert ("conv4_block2_3_conv", "after") in both
