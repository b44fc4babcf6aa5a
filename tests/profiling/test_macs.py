import keras
import pytest

from keras_practise import models
from keras_practise.graph.surgery import drop_blocks
from keras_practise.profiling.macs import MacsReport
from keras_practise.profiling.macs import count_macs
from keras_practise.profiling.macs import count_params


def _tiny_2d_model():
    """Every 2D layer kind, with its MACs worked out by hand."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    # 8*8 positions * 4 filters * 3*3*3 kernel = 6912.
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    # Stride 2 -> 4x4 positions * 4 channels * 2 multiplier * 3*3 = 1152.
    x = layers.DepthwiseConv2D(
        3, strides=2, padding="same", depth_multiplier=2, name="dw"
    )(x)
    # Grouped 1x1: 4*4 positions * 6 filters * (8 / 2 groups) = 384.
    x = layers.Conv2D(6, 1, groups=2, name="grouped")(x)
    # Valid 3x3 -> 2x2 positions: depthwise 2*2*6*3*3 = 216, pointwise
    # 2*2*6*5 = 120; total 336.
    x = layers.SeparableConv2D(5, 3, name="sep")(x)
    # 2x2 input positions scatter 2*2 kernel * 5 in * 3 out: 2*2*60 = 240.
    x = layers.Conv2DTranspose(3, 2, strides=2, name="up")(x)
    # Dense on a 4x4x3 map: 4*4 positions * 3*7 = 336.
    x = layers.Dense(7, name="dense_4d")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    # 7*2 = 14 (bias not counted).
    outputs = layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs)


_TINY_2D_MACS = {
    "conv": 6912,
    "dw": 1152,
    "grouped": 384,
    "sep": 336,
    "up": 240,
    "dense_4d": 336,
    "head": 14,
}


def test_tiny_model_exact_total():
    assert count_macs(_tiny_2d_model()) == sum(_TINY_2D_MACS.values())


def test_per_layer_report():
    model = _tiny_2d_model()
    report = count_macs(model, per_layer=True)
    assert isinstance(report, MacsReport)
    assert report.total == sum(_TINY_2D_MACS.values())
    by_name = {row.name: row for row in report.rows}
    for name, macs in _TINY_2D_MACS.items():
        assert by_name[name].macs == macs
    assert by_name["bn"].macs == 0
    assert by_name["gap"].macs == 0
    assert by_name["dw"].class_name == "DepthwiseConv2D"
    assert by_name["dw"].output_shape == (None, 4, 4, 8)
    assert by_name["conv"].params == 3 * 3 * 3 * 4 + 4
    assert sum(row.params for row in report.rows) == model.count_params()
    table = str(report)
    assert table == report.to_table()
    assert "SeparableConv2D" in table
    assert f"{report.total:,}" in table.splitlines()[-1]


@pytest.mark.parametrize(
    "build, expected",
    [
        # Conv1D valid k=3 on length 10 -> 8 positions * 6 filters *
        # 3 taps * (4 / 2 groups) = 288; Dense on (8, 6): 8 * 6*5 = 240.
        (
            lambda: keras.Sequential(
                [
                    keras.Input((10, 4)),
                    keras.layers.Conv1D(6, 3, groups=2),
                    keras.layers.Dense(5),
                ]
            ),
            288 + 240,
        ),
        # Conv3D valid k=2 on 4x4x4 -> 27 positions * 3 filters * 2*2*2*2.
        (
            lambda: keras.Sequential(
                [keras.Input((4, 4, 4, 2)), keras.layers.Conv3D(3, 2)]
            ),
            27 * 3 * 16,
        ),
    ],
)
def test_conv1d_conv3d_exact(build, expected):
    assert count_macs(build()) == expected


def test_nested_model():
    inner = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv")],
        name="backbone",
    )
    inputs = keras.Input((8, 8, 3))
    x = inner(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs)
    # 6*6*4*27 = 3888 in the nested conv, 144*2 = 288 in the head.
    assert count_macs(model) == 3888 + 288
    rows = count_macs(model, per_layer=True).rows
    assert [row.macs for row in rows if row.name == "conv"] == [3888]


def test_shared_layer_counted_per_call():
    # One conv (3*3*2*2 = 36 weights) applied at two resolutions:
    # 8*8 * 36 + 4*4 * 36 = 2304 + 576.
    shared = keras.layers.Conv2D(2, 3, padding="same", name="shared")
    inputs = keras.Input((8, 8, 2))
    small = keras.layers.MaxPooling2D(2)(inputs)
    outputs = [shared(inputs), shared(small)]
    model = keras.Model(inputs, outputs)
    report = count_macs(model, per_layer=True)
    assert report.total == 2304 + 576
    shared_rows = [row for row in report.rows if row.name == "shared"]
    assert sorted((row.output_shape, row.macs) for row in shared_rows) == [
        ((None, 4, 4, 2), 576),
        ((None, 8, 8, 2), 2304),
    ]
    # Weights are listed once, so the column sums to the model's count.
    assert sorted(row.params for row in shared_rows) == [0, 38]
    assert sum(row.params for row in report.rows) == model.count_params()


def test_channels_first_counts_like_channels_last():
    channels_last = count_macs(models.ResNet20(classes=10))
    original = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        model = models.ResNet20(classes=10)
        assert model.input_shape == (None, 3, 32, 32)
        assert count_macs(model) == channels_last
    finally:
        keras.config.set_image_data_format(original)


def _trainable(model):
    # The paper counts PyTorch parameters: no BatchNorm moving statistics.
    return sum(int(keras.ops.size(w)) for w in model.trainable_weights)


def test_resnet34_matches_paper():
    # PRACTISE table: ResNet-34 21.80 M / 3.66 G; ResNet-34-C (drop 1.2,
    # 2.2, 3.2) 20.25 M / 2.97 G.
    model = models.ResNet34()
    assert count_macs(model) / 1e9 == pytest.approx(3.66, rel=0.01)
    assert _trainable(model) / 1e6 == pytest.approx(21.80, rel=0.01)
    small = drop_blocks(model, ["1.2", "2.2", "3.2"])
    assert count_macs(small) / 1e9 == pytest.approx(2.97, rel=0.01)
    assert _trainable(small) / 1e6 == pytest.approx(20.25, rel=0.01)


def test_vgg16_matches_paper():
    # PRACTISE table: VGG-16 138.37 M / 15.47 G; VGG-16-C 137.59 M / 9.92 G.
    model = keras.applications.VGG16(weights=None)
    assert count_macs(model) / 1e9 == pytest.approx(15.47, rel=0.01)
    assert count_params(model) / 1e6 == pytest.approx(138.37, rel=0.01)
    small = drop_blocks(model, ["1.2", "2.2", "3.2"])
    assert count_macs(small) / 1e9 == pytest.approx(9.92, rel=0.01)
    assert count_params(small) / 1e6 == pytest.approx(137.59, rel=0.01)


def test_keras_resnet50():
    # keras.applications.ResNet50 is ResNet v1 (stride in the first 1x1
    # conv of a bottleneck): 3.86 G, the original paper's "3.8 G FLOPs".
    # The PRACTISE table's 4.09 G is torchvision's v1.5 (stride in the 3x3).
    model = keras.applications.ResNet50(weights=None)
    assert count_macs(model) / 1e9 == pytest.approx(3.86, rel=0.01)


def test_count_params_includes_non_trainable():
    model = models.ResNet20(classes=10)
    assert count_params(model) == model.count_params()
    bn = model.get_layer("conv1_bn")
    assert bn.non_trainable_weights
    trainable = sum(
        int(keras.ops.size(w)) for w in model.trainable_weights
    )
    assert count_params(model) > trainable


def test_unknown_spatial_dims():
    model = models.ResNet20(include_top=False, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="fixed input size"):
        count_macs(model)


def test_unbuilt_model():
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="input shape"):
        count_macs(model)


def test_subclassed_model():
    class TwoLayers(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = TwoLayers()
    model(keras.ops.zeros((1, 3)))
    with pytest.raises(TypeError, match="Functional and Sequential"):
        count_macs(model)


@pytest.mark.parametrize("func", [count_macs, count_params])
def test_not_a_model(func):
    with pytest.raises(TypeError, match="keras.Model"):
        func(keras.layers.Dense(2))


class _ConvBlock(keras.layers.Layer):
    """A residual block written as one layer: its convs are not graph nodes."""

    def __init__(self, fail=False, **kwargs):
        super().__init__(**kwargs)
        self.fail = fail
        self.convs = [
            keras.layers.Conv2D(8, 3, padding="same"),
            keras.layers.Conv2D(8, 1),
        ]
        self.head = keras.layers.Dense(8)

    def call(self, x):
        if self.fail and x.shape[0] == 1:
            raise RuntimeError("no batches of one")
        y = self.convs[1](self.convs[0](x))
        return x + self.head(self.convs[1](y))


def test_convs_inside_a_custom_layer_are_counted_per_call():
    inputs = keras.Input((6, 6, 8))
    block = _ConvBlock()
    opaque = keras.Model(inputs, block(inputs))
    x = keras.Input((6, 6, 8))
    y = block.convs[1](block.convs[0](x))
    plain = keras.Model(x, x + block.head(block.convs[1](y)))
    expected = 36 * (3 * 3 * 8 * 8 + 2 * 8 * 8 + 8 * 8)
    assert count_macs(plain) == expected
    assert count_macs(opaque) == expected
    assert "call" not in vars(block.convs[0])


def test_a_custom_layer_that_cannot_be_probed_counts_zero_with_a_warning():
    inputs = keras.Input((6, 6, 8))
    model = keras.Model(inputs, _ConvBlock(fail=True)(inputs))
    with pytest.warns(UserWarning, match="counted as 0"):
        assert count_macs(model) == 0
