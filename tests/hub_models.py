"""Small KerasHub backbones built from configs with random weights.

Presets cannot be downloaded in tests, so each model is built from a config
small enough to train for a few steps on CPU. Import only after
`pytest.importorskip("keras_hub")`.
"""

import keras_hub

SIZE = 32


def resnet():
    """ResNet v1 basic blocks: droppable blocks 1.2 and 2.2."""
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(SIZE, SIZE, 3),
    )


def efficientnet():
    """EfficientNet v1 blocks (functional MBConv with squeeze-and-excitation)."""
    return keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 3,
        stackwise_depth_coefficients=[1.0] * 3,
        stackwise_kernel_sizes=[3, 3, 3],
        stackwise_num_repeats=[1, 2, 2],
        stackwise_input_filters=[16, 8, 16],
        stackwise_output_filters=[8, 16, 16],
        stackwise_expansion_ratios=[1, 2, 2],
        stackwise_squeeze_and_excite_ratios=[0.25, 0.25, 0.25],
        stackwise_strides=[1, 2, 1],
        stackwise_block_types=["v1"] * 3,
        num_features=32,
        input_shape=(SIZE, SIZE, 3),
        dropout=0.0,
    )


def mobilenet_v3():
    """MobileNetV3: inverted residual blocks are KerasHub layers."""
    return keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[16, 24], [32, 32]],
        stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[16, 16], [24, 24]],
        stackwise_kernel_size=[[3, 3], [3, 3]],
        stackwise_num_strides=[[2, 1], [2, 1]],
        stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1, 1], [1, 1]],
        output_num_filters=32,
        depthwise_filters=8,
        depthwise_stride=1,
        depthwise_residual=False,
        last_layer_filter=32,
        squeeze_and_excite=0.5,
        image_shape=(SIZE, SIZE, 3),
    )


def cspnet():
    """CSPNet with Darknet stages (residual dark blocks on the main path).

    In `"csp"` stages the residual blocks run on one half of a split and are
    merged back by concatenation: they are not on the main path, so only
    each stage's 1x1 transition conv is a candidate there.
    """
    return keras_hub.models.CSPNetBackbone(
        stem_filters=8,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_depth=[2, 2],
        stackwise_strides=[1, 2],
        stackwise_num_filters=[16, 32],
        block_type="dark_block",
        stage_type="dark",
        image_shape=(SIZE, SIZE, 3),
    )


BACKBONES = {
    "resnet": resnet,
    "efficientnet": efficientnet,
    "mobilenet_v3": mobilenet_v3,
    "cspnet": cspnet,
}


def classifier(backbone, classes=4):
    """A KerasHub `ImageClassifier` head around `backbone`."""
    return keras_hub.models.ImageClassifier(backbone=backbone, num_classes=classes)
