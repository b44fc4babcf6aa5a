"""Model builders with `keras.applications`-style signatures and layer names."""

from keras_practise.models.efficientnet_lite import EfficientNetLite0
from keras_practise.models.efficientnet_lite import EfficientNetLite1
from keras_practise.models.resnet_cifar import ResNet20
from keras_practise.models.resnet_cifar import ResNet56
from keras_practise.models.resnet_imagenet import ResNet18
from keras_practise.models.resnet_imagenet import ResNet34
from keras_practise.models.vgg_cifar import VGG16

__all__ = [
    "EfficientNetLite0",
    "EfficientNetLite1",
    "ResNet18",
    "ResNet34",
    "ResNet20",
    "ResNet56",
    "VGG16",
]
