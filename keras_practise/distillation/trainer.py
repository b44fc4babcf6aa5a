"""The training engine: one Keras `fit` for every recovery recipe.

Feature mimicking is regression onto the frozen teacher's feature maps, so
every mode is an ordinary `compile` + `fit` of a (sub-)model whose outputs
are the student's taps (and logits when labels are used), with the teacher's
features as targets. Those targets are computed once on a fixed bank of
augmented views and reused at every step, so the teacher costs nothing while
training, and Keras compiles the step (XLA on TensorFlow where it applies).

Modes (`MODES`):

* `"adaptors"`: only the adaptors train, everything else frozen with
  BatchNorm in inference mode (recoverability).
* `"mimic"`: all weights but the classifier, label-free feature MSE (the
  authors' final recovery, "MiR"-style).
* `"mimic_ce"`: cross-entropy + `beta` * feature MSE (the earlier paper).
* `"ce"`: plain cross-entropy finetuning (the "BP" baseline).
"""

import dataclasses
import math

import keras
import numpy as np

from keras_practise.graph import taps
from keras_practise.utils import progress
from keras_practise.utils import validation

MODES = ("adaptors", "mimic", "mimic_ce", "ce")


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings (the authors' defaults).

    Attributes:
        steps: Number of optimizer steps.
        batch_size: Batch size. Defaults to `min(64, number of samples)`.
        learning_rate: Initial SGD learning rate.
        momentum: SGD momentum.
        weight_decay: Decoupled weight decay.
        decay_at: Fraction of the steps after which the learning rate is
            multiplied by 0.1.
        beta: Weight of the feature MSE in `"mimic_ce"` mode.
        seed: Seed of the batch order.
        verbose: 0 silent, 1 progress bar.
        callbacks: Keras callbacks added to every `fit` run with this
            config (`CSVLogger`, `TensorBoard`, `EarlyStopping` on `"loss"`,
            `BackupAndRestore`, ...). The same objects are reused across
            runs, as Keras does across `fit` calls.
    """

    steps: int = 1000
    batch_size: int = None
    learning_rate: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_at: float = 0.4
    beta: float = 100.0
    seed: int = 0
    verbose: int = 0
    callbacks: tuple = ()

    def __post_init__(self):
        validation.check_int("steps", self.steps)
        validation.check_int("batch_size", self.batch_size, allow_none=True)
        if self.learning_rate <= 0:
            raise ValueError(
                "`learning_rate` must be positive. "
                f"Received: learning_rate={self.learning_rate}"
            )
        self.callbacks = check_callbacks(self.callbacks)


def check_callbacks(callbacks):
    """Returns `callbacks` as a tuple of `keras.callbacks.Callback`s.

    Raises:
        TypeError: If an entry is not a Keras callback.
    """
    if callbacks is None:
        return ()
    if isinstance(callbacks, keras.callbacks.Callback):
        callbacks = [callbacks]
    callbacks = tuple(callbacks)
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(
                "`callbacks` must be `keras.callbacks.Callback` instances. "
                f"Received: {callback!r} of type {type(callback).__name__}"
            )
    return callbacks


class _RandomBatches(keras.utils.PyDataset):
    """Exactly `steps` batches drawn with replacement across epochs of data."""

    def __init__(self, x, y, steps, batch_size, seed):
        super().__init__()
        self.x, self.y = x, y
        rng = np.random.default_rng(seed)
        n = len(x)
        # Shuffled passes over the data, so every sample is seen equally.
        passes = math.ceil(steps * batch_size / n)
        order = np.concatenate([rng.permutation(n) for _ in range(passes)])
        self.index = order[: steps * batch_size].reshape(steps, batch_size)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        rows = np.sort(self.index[i])
        y = [target[rows] for target in self.y]
        return self.x[rows], y[0] if len(y) == 1 else tuple(y)


class _LossCurve(keras.callbacks.Callback):
    def __init__(self, points=20):
        super().__init__()
        self.points = points
        self.curve = []

    def on_train_batch_end(self, batch, logs=None):
        total = self.params["steps"]
        every = max(1, total // self.points)
        if (batch + 1) % every == 0 or batch + 1 == total:
            self.curve.append((batch + 1, float(logs["loss"])))


def make_optimizer(config):
    """SGD with momentum, weight decay and a x0.1 step at `decay_at`."""
    boundary = max(1, int(config.decay_at * config.steps))
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [boundary], [config.learning_rate, config.learning_rate * 0.1]
    )
    return keras.optimizers.SGD(
        learning_rate=schedule,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


def set_trainable(model, mode, adaptor_names=()):
    """Freezes the layers of `model` that `mode` does not train.

    In Keras, a frozen `BatchNormalization` runs in inference mode, which is
    what recoverability needs.

    Args:
        model: The student (a model this library built, never the user's).
        mode: One of `MODES`.
        adaptor_names: Names of the adaptor layers.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode. Expected one of {MODES}. Received: {mode!r}")
    adaptor_names = set(adaptor_names)
    model.trainable = True
    for layer in model.layers:
        if mode == "adaptors":
            layer.trainable = layer.name in adaptor_names
        else:
            layer.trainable = True


def fit(model, x, targets, losses, config, loss_weights=None):
    """Trains `model` for exactly `config.steps` optimizer steps.

    Args:
        model: The Keras model to train (its trainable flags are respected).
        x: Input array.
        targets: List of target arrays, one per model output.
        losses: List of Keras losses, one per model output.
        config: A `TrainConfig`.
        loss_weights: Optional list of loss weights.

    Returns:
        A list of `(step, running mean loss)` pairs.
    """
    if len(x) == 0:
        raise ValueError("Cannot train on an empty set. Received: 0 samples.")
    batch_size = min(config.batch_size or 64, len(x))
    data = _RandomBatches(x, targets, config.steps, batch_size, config.seed)
    model.compile(
        optimizer=make_optimizer(config),
        loss=losses if len(losses) > 1 else losses[0],
        loss_weights=loss_weights,
    )
    curve = _LossCurve()
    verbose, logging = progress.fit_verbosity(config.verbose, config.steps)
    model.fit(
        data, epochs=1, verbose=verbose,
        callbacks=[curve, *logging, *config.callbacks],
    )
    return curve.curve


def feature_mse(model, x, targets, batch_size=64):
    """Mean squared error between `model(x)` and `targets` (inference mode)."""
    predictions = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean((predictions - targets) ** 2))


def classification_loss(model):
    """Sparse cross-entropy matching whether `model` ends in a softmax."""
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=not taps.ends_in_softmax(model)
    )

