"""Trains a CIFAR ResNet teacher on the cluttered coloured digits task.

The bundled teacher `keras_practise/demo/assets/digits_resnet20.keras` came from:

    KERAS_BACKEND=tensorflow python -m benchmarks.train_teacher \
        --model=resnet20 --epochs=6 --num_train=20000 --seed=0 \
        --out=keras_practise/demo/assets/digits_resnet20.keras

Training uses SGD with Nesterov momentum, weight decay and a cosine learning
rate schedule with a linear warm-up over the first epoch, on one fixed
generated train split. The test split (fixed seed, so accuracies of
different training seeds compare) uses digit instances never seen in
training. The saved model is uncompiled and carries no optimizer state.
"""

import time

import keras
from absl import app
from absl import flags

from benchmarks import harness
from keras_practise import models
from keras_practise.demo import digits

_BUILDERS = {"resnet20": models.ResNet20, "resnet56": models.ResNet56}
# The test split is the same for every training seed.
_TEST_SEED = 0

_MODEL = flags.DEFINE_enum(
    "model", "resnet20", sorted(_BUILDERS), "Teacher architecture."
)
_EPOCHS = flags.DEFINE_integer("epochs", 6, "Passes over the train split.")
_NUM_TRAIN = flags.DEFINE_integer(
    "num_train", 20000, "Generated train images."
)
_NUM_TEST = flags.DEFINE_integer("num_test", 3000, "Generated test images.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", 0.05, "Peak learning rate of the cosine schedule."
)
_OUT = flags.DEFINE_string(
    "out", "digits_resnet20.keras", "Where to save the trained `.keras` file."
)
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the train split, initialisation and shuffling."
)


def train_teacher(
    model_name, epochs, num_train, num_test, batch_size, learning_rate, seed
):
    """Trains a teacher and measures its test accuracy.

    Args:
        model_name: `"resnet20"` or `"resnet56"`.
        epochs: passes over the train split.
        num_train: generated train images.
        num_test: generated test images.
        batch_size: batch size.
        learning_rate: peak learning rate.
        seed: seed of the train split, weights initialisation and shuffling.

    Returns:
        A tuple `(model, test_accuracy)`; the model is a freshly built,
        uncompiled copy holding the trained weights.
    """

    def build():
        return _BUILDERS[model_name](
            weights=None,
            input_shape=(32, 32, 3),
            classes=digits.NUM_CLASSES,
        )

    return harness.train_classifier(
        build, epochs, num_train, num_test, batch_size, learning_rate, seed,
        test_seed=_TEST_SEED,
    )


def main(argv):
    del argv  # Unused.
    start = time.perf_counter()
    teacher, accuracy = train_teacher(
        _MODEL.value,
        _EPOCHS.value,
        _NUM_TRAIN.value,
        _NUM_TEST.value,
        _BATCH_SIZE.value,
        _LEARNING_RATE.value,
        _SEED.value,
    )
    seconds = time.perf_counter() - start
    teacher.save(_OUT.value)
    print(
        f"model={_MODEL.value} backend={keras.backend.backend()} "
        f"test_accuracy={accuracy:.4f} (n={_NUM_TEST.value}) "
        f"train_seconds={seconds:.0f} saved={_OUT.value}"
    )


if __name__ == "__main__":
    app.run(main)
