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
* `"kd"`: Hinton's logit distillation at `temperature` (label-free
  baseline; `losses.distillation_loss`).

Two things make training independent of the model's feature scale and keep
it from failing silently (see docs/design.md, "Scale-free training"):

* feature MSEs can be divided by the teacher's feature variance at that
  output (`feature_scale`, `fit(normalize=True)`, which recoverability and
  the recovery recipes use), so a loss of 1 means "as far off as the
  feature's own spread" whatever units the model computes in;
* a run whose loss becomes NaN/inf or grows tenfold, or that the caller's
  `accept` check rejects, is undone and retried with a tenfold smaller step
  (`TrainConfig.retries` times) before `TrainingDiverged` is raised.
"""

import dataclasses
import math
import warnings

import keras
import numpy as np

from keras_practise import backend
from keras_practise.distillation import inference
from keras_practise.distillation import memory as memory_lib
from keras_practise.distillation import optimizer as optimizer_lib
from keras_practise.graph import flat_graph
from keras_practise.utils import progress
from keras_practise.utils import validation

MODES = ("adaptors", "mimic", "mimic_ce", "ce", "kd")
BATCHNORM_MODES = ("inference", "train")
# Checks of a run on held-out images (`fit(held_out=...)`), and how many
# in a row may fail to improve before it stops.
VALIDATION_CHECKS = 10
VALIDATION_PATIENCE = 3


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
        temperature: Softmax temperature of `"kd"` mode (Hinton et al.
            use 2-20; 4 is common on small data).
        seed: Seed of the batch order.
        verbose: 0 silent, 1 progress bar.
        callbacks: Keras callbacks added to every `fit` run with this
            config (`CSVLogger`, `TensorBoard`, `EarlyStopping` on `"loss"`,
            `BackupAndRestore`, ...). The same objects are reused across
            runs, as Keras does across `fit` calls.
        retries: Retries with a tenfold smaller learning rate after a run
            diverges.
        batchnorm: How the `BatchNormalization` layers of a whole-network
            training behave: `"inference"` (frozen: the moving statistics
            normalise and neither they nor gamma/beta change, as Keras'
            transfer-learning guide advises for small data) or `"train"`
            (batch statistics normalise and the moving ones follow them).
            Adaptor-only training always keeps BatchNorm in inference mode.
        activation_memory: Bytes a training step may take: a batch whose
            activations need more is split into micro-batches whose
            gradients are averaged before each optimizer step
            (`memory.accumulation_steps`). `None`: whole batches.
    """

    steps: int = 1000
    batch_size: int = None
    learning_rate: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_at: float = 0.4
    beta: float = 100.0
    temperature: float = 4.0
    seed: int = 0
    verbose: int = 0
    callbacks: tuple = ()
    retries: int = 2
    batchnorm: str = "train"
    activation_memory: int = None

    def __post_init__(self):
        validation.check_int("steps", self.steps)
        validation.check_int("batch_size", self.batch_size, allow_none=True)
        validation.check_int("retries", self.retries, minimum=0)
        if self.batchnorm not in BATCHNORM_MODES:
            raise ValueError(
                f"`batchnorm` must be one of {BATCHNORM_MODES}. "
                f"Received: batchnorm={self.batchnorm!r}"
            )
        for name in ("learning_rate", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"`{name}` must be positive. Received: {name}={getattr(self, name)}"
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


class RetryWarning(UserWarning):
    """Warns that a diverged training run is retried with a smaller step."""


class TrainingDiverged(RuntimeError):
    """Raised when every attempt of a training run diverged.

    The model's weights are back to what they were before `fit`.
    """


class _RandomBatches(keras.utils.PyDataset):
    """Exactly `steps` batches drawn with replacement across epochs of data."""

    def __init__(
        self, x, y, steps, batch_size, seed, sample_weight=None, accumulation=1
    ):
        super().__init__()
        self.x, self.y = x, y
        self.sample_weight = sample_weight
        rng = np.random.default_rng(seed)
        n = len(x)
        # Shuffled passes over the data, so every sample is seen equally.
        passes = math.ceil(steps * batch_size / n)
        order = np.concatenate([rng.permutation(n) for _ in range(passes)])
        # An optimizer step's micro-batches split its batch in order.
        self.index = order[: steps * batch_size].reshape(
            steps * accumulation, batch_size // accumulation
        )

    def __len__(self):
        return len(self.index)

    def release(self):
        """Drops the arrays: on TensorFlow, tf.data's registry of generator
        functions keeps every `fit`'s dataset alive after the call."""
        self.x = self.y = None

    def __getitem__(self, i):
        rows = np.sort(self.index[i])
        y = [target[rows] for target in self.y]
        batch = (self.x[rows], y[0] if len(y) == 1 else tuple(y))
        if self.sample_weight is None:
            return batch
        return batch + (_sample_weights(self.sample_weight, y[0].ndim, len(rows)),)


def _sample_weights(weight, target_ndim, count):
    """`count` sample weights `weight` shaped to broadcast over the loss of
    a target of `target_ndim` axes (reduced over its last axis; Keras only
    expands one axis)."""
    return np.full((count,) + (1,) * max(0, target_ndim - 2), weight, "float32")


class _LossCurve(keras.callbacks.Callback):
    """Records the running loss and stops a run that diverges.

    Steps are optimizer steps: with gradient accumulation, a batch end that
    completes one (`accumulation` micro-batches).
    """

    def __init__(self, points=20, accumulation=1):
        super().__init__()
        self.points = points
        self.accumulation = accumulation
        self.micro = 0
        self.curve = []
        self.first = None
        self.diverged = False
        self.step = 0

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        if self.first is None:
            self.first = loss
        # The running mean only grows tenfold when recent steps are far
        # worse than the first: a blow-up, not noise.
        if not math.isfinite(loss) or loss > 10 * max(self.first, 1e-12):
            self.diverged = True
            self.model.stop_training = True
        self.micro += 1
        if self.micro % self.accumulation and not self.diverged:
            return
        # Steps count across the epochs of a run checked on held-out images.
        total = self.params["steps"] * self.params["epochs"] // self.accumulation
        self.step = math.ceil(self.micro / self.accumulation)
        every = max(1, total // self.points)
        if self.step % every == 0 or self.step == total or self.diverged:
            self.curve.append((self.step, loss))


def seed_random_layers(model, seed):
    """Sets the generator of every random layer of `model` from `seed`.

    Keras seeds a `Dropout` (or stochastic depth, noise) layer from Python's
    global `random` when the layer is made, and every student is made anew
    from its layers' configs: without this, its training masks would follow
    the global state, not `seed`.

    Args:
        model: The model about to train.
        seed: The training seed.
    """
    for index, layer in enumerate(flat_graph.FlatGraph(model).layers()):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                value.state.assign(
                    keras.ops.convert_to_tensor([seed, index], value.state.dtype)
                )


def set_trainable(model, mode, adaptor_names=(), batchnorm="train"):
    """Freezes the layers of `model` that `mode` does not train.

    In Keras, a frozen `BatchNormalization` runs in inference mode, which is
    what recoverability needs.

    Args:
        model: The student (a model this library built, never the user's).
        mode: One of `MODES`.
        adaptor_names: Names of the adaptor layers.
        batchnorm: One of `BATCHNORM_MODES`: whether the BatchNorm layers of
            a whole-network mode train (`"train"`) or stay frozen in
            inference mode (`"inference"`).
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
    if mode != "adaptors" and batchnorm == "inference":
        # Also inside nested models, once their own flag has been set.
        for layer in flat_graph.FlatGraph(model).layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def feature_scale(targets):
    """The unit in which a feature MSE is measured: the teacher's variance.

    Args:
        targets: Feature maps, channels last (any leading dimensions).

    Returns:
        The mean over channels of each channel's variance, or `1.0` when
        that is zero or not finite (constant or broken features).
    """
    values = np.asarray(targets)
    flat = values.reshape(-1, values.shape[-1]) if values.ndim > 1 else values
    scale = float(np.mean(np.var(flat, axis=0, dtype="float64")))
    return scale if math.isfinite(scale) and scale > 0 else 1.0


class CompiledStep:
    """A one-output model compiled once for many `fit` runs.

    Keras traces (and on TensorFlow and JAX compiles) a model's train step
    once per `compile`; `fit(compiled=...)` reuses it, so runs that differ
    only in variable values (weights, switches) pay for it once. Each run
    restarts the optimizer and passes its loss weight as a sample weight,
    which is an input of the step, not a constant traced into it. Which
    variables train is fixed when the step is traced: set the model's
    trainable flags before creating this.

    Args:
        model: The Keras model, with one output.
        loss: Its Keras loss.
        config: The `TrainConfig` of every run.
        samples: The number of training samples of every run (the batch
            size and its micro-batches follow from it, see `batching`).

    Attributes:
        infer: `model`'s inference call, compiled once
            (`backend.compile_inference`), for `inference.predict(infer=...)`.
    """

    def __init__(self, model, loss, config, samples):
        self.model = model
        self.config = config
        self.batching = batching(model, config, samples)
        accumulation = self.batching[1]
        self.schedule = optimizer_lib.learning_rate_schedule(config, accumulation)
        self.optimizer = optimizer_lib.make_optimizer(
            config, None, self.schedule, accumulation
        )
        _compile(model, self.optimizer, loss)
        # Inference passes (loss scales, checks) reuse one graph too.
        self.infer = backend.compile_inference(model, changing=True)


def batching(model, config, samples):
    """`(batch_size, accumulation)` of training `model` on `samples` samples.

    The batch size is `config.batch_size` (at most `samples`, 64 when unset);
    `accumulation` micro-batches make one optimizer step when the batch does
    not fit `config.activation_memory` (`memory.accumulation_steps`).
    """
    batch_size = min(config.batch_size or 64, samples)
    return batch_size, memory_lib.accumulation_steps(
        model, batch_size, config.activation_memory
    )


@backend.fused_kernels()
def fit(
    model, x, targets, losses, config, loss_weights=None, accept=None,
    normalize=False, rates=None, held_out=None, compiled=None,
):
    """Trains `model` for exactly `config.steps` optimizer steps.

    With `normalize`, each `"mse"` loss is divided by `feature_scale` of its
    target, so the step size means the same for any feature scale (for a
    student that starts close to its teacher, as after dropping a block; a
    target of tiny spread far from the start would get a huge step). A run
    that diverges
    (NaN/inf, a tenfold growth of the loss, non-finite weights or
    outputs) or that
    `accept` rejects is undone and retried with a tenfold smaller learning
    rate, at most `config.retries` times, with a warning each time.

    Args:
        model: The Keras model to train (its trainable flags are respected).
        x: Input array.
        targets: List of target arrays, one per model output.
        losses: List of Keras losses, one per model output.
        config: A `TrainConfig`.
        loss_weights: Optional list of loss weights.
        accept: Optional callable `() -> bool` run after a finished run;
            `False` undoes the run and retries it with a smaller step. It
            replaces the default check that the outputs on the first 64
            inputs are finite (inference mode), so it must return `False`
            for non-finite outputs itself (an error compared with `<=` does).
        normalize: Whether to divide feature MSEs by the targets' scale
            (their variance, or the starting error when that is larger).
        rates: Optional gradient multipliers per variable path
            (`optimizer.scale_free_rates`).
        held_out: Optional `(x, targets)` of images held out from
            training: the run is checked on them (inference mode) up to
            `VALIDATION_CHECKS` times, at even intervals, and ends with
            the weights of the check that scored best, stopping early when
            `VALIDATION_PATIENCE` checks in a row did not improve on it
            (Keras' `EarlyStopping`). A step count with no divisor
            between 2 and `VALIDATION_CHECKS` is checked once, at the end.
        compiled: Optional `CompiledStep` of `model` and `config` to train
            with instead of compiling `model` (then `losses` are its one
            loss, and `rates` are not supported).

    Returns:
        A list of `(step, running mean loss)` pairs of the accepted run.

    Raises:
        ValueError: If `x` is empty.
        TrainingDiverged: If every attempt diverged or was rejected (the
            weights are restored to their values before the call).
    """
    if len(x) == 0:
        raise ValueError("Cannot train on an empty set. Received: 0 samples.")
    if compiled is not None and (
        compiled.model is not model or compiled.config != config
        or len(losses) != 1 or rates
        or compiled.batching != batching(model, config, len(x))
    ):
        raise ValueError(
            "`compiled` must be a `CompiledStep` of this model, config and "
            "sample count, for one loss and no `rates`. Received: a step of "
            f"model {compiled.model.name!r} with {compiled.config} "
            f"(batching {compiled.batching}) to fit model {model.name!r} with "
            f"{config} on {len(x)} samples, {len(losses)} losses, rates={rates!r}"
        )
    batch_size, accumulation = batching(model, config, len(x))
    weights = list(loss_weights or [1.0] * len(losses))
    infer = None if compiled is None else compiled.infer
    if normalize:
        weights = [
            w / scale
            for w, scale in zip(
                weights, _loss_scales(model, x, targets, losses, batch_size, infer)
            )
        ]
    data = _RandomBatches(
        x, targets, config.steps, batch_size, config.seed,
        sample_weight=None if compiled is None else weights[0],
        accumulation=accumulation,
    )
    try:
        return _fit_with_retries(
            model, data, x, losses, weights, config, accept, rates, held_out,
            (batch_size, accumulation), compiled, infer,
        )
    finally:
        data.release()
        memory_lib.release_freed()


def _epochs(steps, held_out):
    """Epochs of a run: one, or one per check on the held-out images."""
    if held_out is None:
        return 1
    return max(
        d for d in range(1, min(steps, VALIDATION_CHECKS) + 1) if steps % d == 0
    )


def _compile(model, optimizer, loss, loss_weights=None):
    """`model.compile`, with the optimizer's variables made before any step.

    Keras on TensorFlow otherwise creates them while it traces the first
    train step, which TensorFlow then traces a second time: the largest
    fixed cost of a short training, twice.
    """
    model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights)
    optimizer.build(model.trainable_variables)


def _fit_with_retries(
    model, data, x, losses, weights, config, accept, rates, held_out,
    sizes, compiled, infer,
):
    """`fit`'s attempts: one compile, then a pass over `data` per attempt."""
    batch_size, accumulation = sizes
    start = model.get_weights()
    learning_rate = config.learning_rate
    # One compile for all attempts: a retry restarts the optimizer instead.
    if compiled is None:
        schedule = optimizer_lib.learning_rate_schedule(config, accumulation)
        optimizer = optimizer_lib.make_optimizer(config, rates, schedule, accumulation)
        _compile(model, optimizer, losses if len(losses) > 1 else losses[0], weights)
    else:
        schedule, optimizer = compiled.schedule, compiled.optimizer
    for attempt in range(config.retries + 1):
        if attempt or compiled is not None:
            optimizer_lib.restart(optimizer, schedule, learning_rate)
        seed_random_layers(model, config.seed)
        curve = _LossCurve(accumulation=accumulation)
        verbose, logging = progress.fit_verbosity(
            config.verbose, config.steps * accumulation
        )
        # The batches are already in the seed's order; Keras' own shuffle
        # would reorder them with Python's global `random`.
        epochs = _epochs(config.steps, held_out)
        checks = {}
        if held_out is not None:
            val_x, val_targets = held_out
            validation = (
                val_x, val_targets[0] if len(val_targets) == 1 else tuple(val_targets)
            )
            if compiled is not None:
                validation += (
                    _sample_weights(weights[0], np.ndim(val_targets[0]), len(val_x)),
                )
            checks = dict(
                validation_data=validation, validation_batch_size=batch_size
            )
            logging = [*logging, keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=VALIDATION_PATIENCE,
                restore_best_weights=True,
            )]
        with backend.seeded_global_rng(config.seed):
            model.fit(
                data, epochs=epochs,
                steps_per_epoch=config.steps * accumulation // epochs,
                verbose=verbose, shuffle=False,
                callbacks=[curve, *logging, *config.callbacks], **checks,
            )
        if (
            not curve.diverged
            and _finite_weights(model)
            and (
                _finite_outputs(model, x, batch_size, infer)
                if accept is None else accept()
            )
        ):
            return curve.curve
        model.set_weights(start)
        if attempt < config.retries:
            warnings.warn(
                f"Training {model.name!r} at learning rate {learning_rate:g} "
                f"diverged or did worse than its start; retrying at "
                f"{learning_rate / 10:g}.",
                RetryWarning,
                stacklevel=3,
            )
        learning_rate /= 10
    raise TrainingDiverged(
        f"Training {model.name!r} diverged or did worse than its start at "
        f"every learning rate from {config.learning_rate:g} down to "
        f"{learning_rate * 10:g}; its weights were restored."
    )


def fit_or_skip(model, *args, **kwargs):
    """`fit`, or no training with a warning when every rate diverged.

    `fit` has then restored the weights from before the run, so the caller
    goes on from a model that is exactly what it was: not improved, never
    broken.

    Args:
        model: The Keras model to train.
        *args: The other arguments of `fit`.
        **kwargs: Its keyword arguments.

    Returns:
        What `fit` returns, or `[]` when the run was skipped.
    """
    try:
        return fit(model, *args, **kwargs)
    except TrainingDiverged as error:
        warnings.warn(
            f"{error} This training step is skipped: the model keeps its "
            "weights from before it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return []


def _loss_scales(model, x, targets, losses, batch_size, infer=None, sample=256):
    """The unit of each `"mse"` loss: the teacher's variance, or the start's
    error when that is larger.

    Both grow with the square of the features' scale, so either keeps the
    step scale-free; the larger one keeps a student that starts far from a
    target of tiny spread (a random-weight teacher, a recovery from identity
    adaptors) from taking a step that makes it diverge at every rate.
    """
    scales = []
    outputs = _outputs(model, x[:sample], batch_size, infer)
    for output, target, loss in zip(outputs, targets, losses):
        if loss != "mse":
            scales.append(1.0)
            continue
        start = float(np.mean((output - target[:sample]) ** 2))
        start = start if math.isfinite(start) else 0.0
        scales.append(max(feature_scale(target), start))
    return scales


def _finite_outputs(model, x, batch_size, infer=None, sample=64):
    # Finite weights can still overflow in inference mode (BatchNorm moving
    # statistics a run drove to extremes): such a run diverged too.
    outputs = _outputs(model, x[:sample], batch_size, infer)
    return all(np.isfinite(o).all() for o in outputs)


def _outputs(model, x, batch_size, infer=None):
    """The model's outputs on `x` in inference mode, as a list of arrays.

    Batch by batch: one pass of 256 views of a MobileNetV2 at 160 px took
    9 GB more than a training step of 64 did.
    """
    outputs = inference.predict(model, x, batch_size, infer)
    return outputs if isinstance(outputs, list) else [outputs]


def _finite_weights(model):
    return all(np.all(np.isfinite(w)) for w in model.get_weights())
