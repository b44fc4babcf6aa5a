import keras
import numpy as np
import pytest

from keras_practise import models


def _trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize(
    "factory, kwargs, expected",
    [
        # torchvision's parameter counts (torch excludes BN running stats,
        # i.e. counts trainable weights only): 11.69 M and 21.80 M.
        (models.ResNet18, {}, 11_689_512),
        (models.ResNet34, {}, 21_797_672),
        # By hand: convs 432 + 6*2304 + 4608 + 5*9216 + 512 + 18432
        # + 5*36864 + 2048 = 270_256; BN gamma/beta 2*(16 + 6*16 + 7*32
        # + 7*64) = 1_568; dense 64*10 + 10 = 650.
        (models.ResNet20, {"classes": 10}, 272_474),
    ],
)
def test_trainable_params_exact(factory, kwargs, expected):
    assert _trainable_params(factory(**kwargs)) == expected


@pytest.mark.parametrize(
    "factory, kwargs, millions",
    [
        (models.ResNet18, {}, 11.69),
        (models.ResNet34, {}, 21.80),
        (models.ResNet20, {"classes": 10}, 0.27),
        (models.ResNet56, {"classes": 10}, 0.85),
        # The earlier PRACTISE paper's Table 16.
        (models.VGG16, {"classes": 10}, 14.99),
    ],
)
def test_params_match_published(factory, kwargs, millions):
    model = factory(**kwargs)
    assert _trainable_params(model) / 1e6 == pytest.approx(millions, rel=0.01)
    # BN moving mean/variance add 2 weights per BN channel on top.
    assert model.count_params() > _trainable_params(model)


@pytest.mark.parametrize(
    "factory, default_shape, feature_shape",
    [
        (models.ResNet18, (224, 224, 3), (7, 7, 512)),
        (models.ResNet34, (224, 224, 3), (7, 7, 512)),
        (models.ResNet20, (32, 32, 3), (8, 8, 64)),
        (models.ResNet56, (32, 32, 3), (8, 8, 64)),
        (models.VGG16, (32, 32, 3), (1, 1, 512)),
    ],
)
def test_default_shapes(factory, default_shape, feature_shape):
    model = factory(classes=7)
    assert model.input_shape == (None, *default_shape)
    assert model.output_shape == (None, 7)
    features = factory(include_top=False)
    assert features.output_shape == (None, *feature_shape)


@pytest.mark.parametrize(
    "pooling, layer_name", [("avg", "avg_pool"), ("max", "max_pool")]
)
def test_include_top_false_pooling(pooling, layer_name):
    model = models.ResNet18(
        include_top=False, input_shape=(64, 64, 3), pooling=pooling
    )
    assert model.output_shape == (None, 512)
    assert model.layers[-1].name == layer_name


def test_include_top_ignores_pooling():
    model = models.ResNet20(classes=10, pooling="max")
    assert model.layers[-1].name == "predictions"
    assert model.layers[-2].name == "avg_pool"


def test_size_agnostic_input():
    model = models.ResNet20(
        include_top=False, input_shape=(None, None, 3), pooling="avg"
    )
    out = model.predict(np.zeros((2, 40, 48, 3), "float32"), verbose=0)
    assert out.shape == (2, 64)


def test_classifier_activation():
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype="float32")
    probs = models.ResNet20(classes=5).predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    logits = models.ResNet20(classes=5, classifier_activation=None)
    assert logits.get_layer("predictions").get_config()["activation"] == (
        "linear"
    )


_BLOCK_SUFFIXES = ("1_conv", "1_bn", "1_relu", "2_conv", "2_bn", "add", "out")


def test_imagenet_layer_names():
    names = {layer.name for layer in models.ResNet34().layers}
    stem = {"conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu"}
    assert stem | {"pool1_pad", "pool1_pool"} <= names
    for stage, blocks in zip(range(2, 6), (3, 4, 6, 3)):
        for j in range(1, blocks + 1):
            prefix = f"conv{stage}_block{j}"
            for suffix in _BLOCK_SUFFIXES:
                assert f"{prefix}_{suffix}" in names
            # Projection only where the stride or the width changes.
            has_projection = stage > 2 and j == 1
            assert (f"{prefix}_0_conv" in names) == has_projection
            assert (f"{prefix}_0_bn" in names) == has_projection
        assert f"conv{stage}_block{blocks + 1}_1_conv" not in names
    assert "conv6_block1_1_conv" not in names
    assert {"avg_pool", "predictions"} <= names


def test_cifar_layer_names():
    model = models.ResNet56(classes=10)
    names = {layer.name for layer in model.layers}
    assert {"conv1_conv", "conv1_bn", "conv1_relu"} <= names
    assert "pool1_pool" not in names
    for stage in (2, 3, 4):
        assert f"conv{stage}_block9_out" in names
        assert f"conv{stage}_block10_1_conv" not in names
        assert (f"conv{stage}_block1_0_conv" in names) == (stage > 2)
    first_conv = model.get_layer("conv2_block1_1_conv")
    assert first_conv.kernel.shape == (3, 3, 16, 16)
    projection = model.get_layer("conv4_block1_0_conv")
    assert projection.kernel.shape == (1, 1, 32, 64)


def test_convs_are_bias_free_with_torch_style_padding():
    model = models.ResNet18(input_shape=(64, 64, 3))
    convs = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
    ]
    assert convs and not any(conv.use_bias for conv in convs)
    # Strided kxk convs: symmetric explicit padding then a "valid" conv.
    assert model.get_layer("conv1_pad").padding == ((3, 3), (3, 3))
    assert model.get_layer("conv1_conv").padding == "valid"
    assert model.get_layer("conv3_block1_1_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("conv3_block1_1_conv").padding == "valid"
    assert model.get_layer("conv3_block2_1_conv").padding == "same"


def test_strided_conv_matches_symmetric_padding():
    # The stem must sample the same grid as PyTorch's Conv2d(padding=3):
    # compare against a convolution of the explicitly padded image.
    model = models.ResNet18(include_top=False, input_shape=(32, 32, 3))
    conv = model.get_layer("conv1_conv")
    stem = keras.Model(model.input, conv.output)
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype="float32")
    padded = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))
    expected = keras.ops.conv(padded, conv.kernel, strides=2, padding="valid")
    np.testing.assert_allclose(
        stem.predict(x, verbose=0),
        keras.ops.convert_to_numpy(expected),
        rtol=1e-5,
        atol=1e-5,
    )


def test_input_tensor_keeps_preceding_layers():
    inputs = keras.Input((32, 32, 3))
    scaled = keras.layers.Rescaling(1 / 255.0)(inputs)
    model = models.ResNet20(input_tensor=scaled, classes=10)
    assert model.inputs[0] is inputs
    assert isinstance(model.layers[1], keras.layers.Rescaling)


def test_weights_path_round_trip(tmp_path):
    model = models.ResNet20(classes=10)
    path = str(tmp_path / "resnet20.weights.h5")
    model.save_weights(path)
    reloaded = models.ResNet20(classes=10, weights=path)
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype="float32")
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


@pytest.mark.parametrize(
    "factory, kwargs",
    [
        (models.ResNet20, {"classes": 10}),
        (models.ResNet18, {"classes": 10, "input_shape": (64, 64, 3)}),
    ],
)
def test_save_and_load_model(tmp_path, factory, kwargs):
    model = factory(**kwargs)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    x = np.random.default_rng(2).random(
        (1, *model.input_shape[1:]), dtype="float32"
    )
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


@pytest.mark.parametrize(
    "weights", ["imagenet", "weights.h5", "missing.weights.h5", 3]
)
def test_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        models.ResNet20(weights=weights)


def test_bad_pooling():
    with pytest.raises(ValueError, match="pooling"):
        models.ResNet18(include_top=False, pooling="mean")


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        models.ResNet34(input_shape=(224, 224))


def test_bad_input_tensor():
    with pytest.raises(TypeError, match="input_tensor"):
        models.ResNet20(input_tensor=np.zeros((1, 32, 32, 3)))
