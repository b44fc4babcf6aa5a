"""Tests for keras_practise.graph.blocks: topological block discovery."""

import keras
import pytest

from keras_practise import models
from keras_practise.graph import blocks as blocks_lib
from tests import tiny_models

APPLICATIONS = [
    ("ResNet50", (32, 32, 3), 12, "conv2_block2", "1.2"),
    ("ResNet101", (32, 32, 3), 29, "conv4_block23", "3.23"),
    ("ResNet152", (32, 32, 3), 46, "conv3_block8", "2.8"),
    ("ResNet50V2", (32, 32, 3), 9, "conv2_block2", "1.2"),
    ("ResNet101V2", (32, 32, 3), 26, "conv4_block2", "3.2"),
    ("MobileNetV2", (32, 32, 3), 10, "block_4", "3.2"),
    ("VGG16", (32, 32, 3), 9, "block1_conv2", "1.2"),
    ("VGG19", (32, 32, 3), 12, "block5_conv1", "5.1"),
    # Squeeze-and-excitation inside the bottlenecks, `x + y` residual sums.
    ("EfficientNetB0", (32, 32, 3), 9, "block4c", "4.3"),
    ("MobileNetV3Small", (32, 32, 3), 6, "expanded_conv_5", "3.3"),
    ("ConvNeXtTiny", (32, 32, 3), 14, "convnext_tiny_stage_2_block_8", "3.9"),
    ("Xception", (71, 71, 3), 8, "block12", "3.9"),
    # Depthwise-separable pairs that keep the shape are plain units.
    ("MobileNet", (32, 32, 3), 8, "conv_pw_8", "4.3"),
]


@pytest.mark.parametrize("name,shape,count,block,label", APPLICATIONS)
def test_keras_applications(name, shape, count, block, label):
    model = getattr(keras.applications, name)(
        weights=None, input_shape=shape, classes=10
    )
    found = blocks_lib.find_blocks(model)
    assert len(found) == count
    by_name = {b.name: b for b in found}
    assert by_name[block].label == label
    assert len({b.name for b in found}) == count


@pytest.mark.parametrize(
    "builder,shape,count,first",
    [
        (models.ResNet18, (32, 32, 3), 4, ["conv2_block2", "conv3_block2"]),
        (models.ResNet34, (32, 32, 3), 12, ["conv2_block2", "conv2_block3"]),
        (models.ResNet20, (32, 32, 3), 6, ["conv2_block2", "conv2_block3"]),
        (models.ResNet56, (32, 32, 3), 24, ["conv2_block2", "conv2_block3"]),
    ],
)
def test_own_builders(builder, shape, count, first):
    model = builder(weights=None, input_shape=shape, classes=10)
    found = blocks_lib.find_blocks(model)
    assert len(found) == count
    assert [b.name for b in found[:2]] == first
    assert found[0].label == "1.2"


def test_mobilenet_stage_labels_follow_bottleneck_groups():
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=10
    )
    labels = {b.name: b.label for b in blocks_lib.find_blocks(model)}
    assert labels["block_2"] == "2.2"
    assert labels["block_5"] == "3.3"
    assert labels["block_15"] == "6.3"


def test_block_contents_resnet50():
    model = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=10
    )
    block = blocks_lib.find_blocks(model)[0]
    assert block.kind == "residual"
    assert block.layer_names[0] == "conv2_block2_1_conv"
    # ResNet v1 blocks include the activation after the add.
    assert block.layer_names[-1] == "conv2_block2_out"
    assert block.input is model.get_layer("conv2_block1_out").output
    assert block.output is model.get_layer("conv2_block2_out").output
    assert block.param_count == sum(
        model.get_layer(n).count_params() for n in block.layer_names
    )


def _user_resnet(add_style):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    for _ in range(3):
        y = keras.layers.Conv2D(8, 3, padding="same")(x)
        y = keras.layers.BatchNormalization()(y)
        y = keras.layers.Activation("gelu")(y)
        y = keras.layers.Conv2D(8, 3, padding="same")(y)
        if add_style == "layer":
            x = keras.layers.Add()([x, y])
        elif add_style == "function":
            x = keras.layers.add([y, x])
        else:
            x = x + y
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4)(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("add_style", ["layer", "function", "operator"])
def test_user_built_residual_model(add_style):
    model = _user_resnet(add_style)
    found = blocks_lib.find_blocks(model)
    # The first residual block opens its stage and is kept.
    assert [b.label for b in found] == ["1.2", "1.3"]
    assert all(b.kind == "residual" for b in found)
    # Names fall back to the merge layer's name (no common prefix).
    assert all(b.name.startswith("add") for b in found)


def test_projection_and_strided_blocks_are_not_droppable():
    inputs = keras.Input((16, 16, 8))
    shortcut = keras.layers.Conv2D(16, 1, strides=2)(inputs)
    y = keras.layers.Conv2D(16, 3, strides=2, padding="same")(inputs)
    x = keras.layers.Add()([shortcut, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    assert blocks_lib.find_blocks(model) == []


def test_sequential_plain_convs():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(8, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    found = blocks_lib.find_blocks(model)
    assert [b.label for b in found] == ["1.2", "2.1"]
    assert [type(l).__name__ for l in found[0].layers] == [
        "Conv2D",
        "BatchNormalization",
        "ReLU",
    ]


def test_nested_backbone_is_searched():
    backbone = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), include_top=False
    )
    inputs = keras.Input((32, 32, 3))
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    found = blocks_lib.find_blocks(model)
    assert len(found) == 12
    assert found[0].layers[0] is backbone.get_layer("conv2_block2_1_conv")


def test_subclassed_model_is_rejected():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(keras.ops.zeros((1, 4)))
    with pytest.raises(TypeError, match="Subclassed models"):
        blocks_lib.find_blocks(net)


def test_not_a_model_is_rejected():
    with pytest.raises(TypeError, match="Expected a `keras.Model`"):
        blocks_lib.find_blocks("resnet50")


def test_resolve_blocks_accepts_names_labels_and_objects():
    model = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=10
    )
    found = blocks_lib.find_blocks(model)
    chosen = blocks_lib.resolve_blocks(
        model, ["3.2", "conv2_block2", found[0], " 2.02 "]
    )
    assert [b.name for b in chosen] == [
        "conv2_block2",
        "conv3_block2",
        "conv4_block2",
    ]


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (["conv2_block1"], ValueError, "conv2_block2 \\(1.2\\)"),
        (["9.9"], ValueError, "Droppable blocks"),
        ([3], TypeError, "Received: 3"),
    ],
)
def test_resolve_blocks_errors(bad, error, match):
    model = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=10
    )
    with pytest.raises(error, match=match):
        blocks_lib.resolve_blocks(model, bad)


def test_blocks_table_lists_every_block():
    model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3))
    found = blocks_lib.find_blocks(model)
    table = blocks_lib.blocks_table(found)
    assert len(table.splitlines()) == len(found) + 1
    assert "block5_conv3" in table


def test_squeeze_and_excitation_bottlenecks_with_operations():
    model = tiny_models.tiny_se_net()
    found = blocks_lib.find_blocks(model)
    assert [(b.name, b.label) for b in found] == [("b2", "1.2"), ("b3", "1.3")]
    block = found[0]
    assert "b2_se_squeeze" in block.layer_names
    # `x + y` and `se * 2.0` are operations without `count_params()`.
    assert any(not isinstance(l, keras.layers.Layer) for l in block.layers)
    assert block.param_count == sum(
        l.count_params() for l in block.layers if isinstance(l, keras.layers.Layer)
    )


def test_separable_conv_units():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.SeparableConv2D(8, 3, padding="same", name="sep1")(x)
    x = keras.layers.BatchNormalization(name="sep1_bn")(x)
    x = keras.layers.SeparableConv2D(8, 3, padding="same", name="sep2")(x)
    x = keras.layers.SeparableConv2D(16, 3, padding="same", name="widen")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    found = blocks_lib.find_blocks(model)
    # sep1 joins the stem's unit (as a bottleneck without expansion would);
    # sep2 keeps the shape; widen does not.
    assert [(b.name, b.label, b.kind) for b in found] == [("sep2", "1.2", "conv")]
