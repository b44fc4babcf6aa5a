"""The optimizer every training run uses: SGD with a step-decayed rate.

SGD with momentum and decoupled weight decay (the authors' settings, from a
`trainer.TrainConfig`), its learning rate a `StepDecay` schedule whose rate
is a variable of the optimizer, and optionally fixed gradient multipliers
per variable (`scale_free_rates`). `restart` resets both, so a
retry reuses the compiled train step.
"""

import functools
import math

import keras
import numpy as np

from keras_practise import backend
from keras_practise.graph import flat_graph


@functools.cache
def _rate_scaled_sgd():
    """SGD whose gradient of some variables is multiplied by a fixed factor.

    Subclasses the class `keras.optimizers.SGD` resolves to on this backend
    (on torch, a `torch._foreach_*` update of all variables at once, which
    a subclass of `keras.optimizers.SGD` itself would lose: its finetuning
    step of ResNet-50 took 1.03 s against 0.90 s). Lives only while a
    student trains: every model handed back is rebuilt from its layers, so
    it never reaches a saved file.
    """

    class RateScaledSGD(type(keras.optimizers.SGD())):
        def __init__(self, rates, **kwargs):
            super().__init__(name="rate_scaled_sgd", **kwargs)
            self._rates = dict(rates)
            self._built_factors = []

        def build(self, variables):
            super().build(variables)
            self._built_factors = [self._rates.get(v.path) for v in variables]

        def apply(self, grads, trainable_variables=None):
            # TensorFlow's and torch's trainers pass the model's variables
            # with their gradients; JAX's `stateless_apply` passes the
            # gradients alone, in the order the optimizer was built with.
            if trainable_variables is None:
                factors = self._built_factors
            else:
                factors = [self._rates.get(v.path) for v in trainable_variables]
            grads = [
                g if g is None or f is None else keras.ops.multiply(g, f)
                for g, f in zip(grads, factors)
            ]
            return super().apply(grads, trainable_variables)

    return RateScaledSGD


class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`rate` up to step `boundary`, a tenth of it after.

    `make_optimizer` turns `rate` into a variable of the optimizer, so a
    retry can restart the same optimizer at a smaller step without
    compiling the train step again (on TensorFlow a new compile traces it
    anew: seconds per retry for a ResNet-50). Being the optimizer's own
    variable, it is part of the optimizer state that JAX's stateless train
    step receives: a variable of the schedule alone would be read as a
    constant inside `jax.jit`, which JAX refuses.

    Args:
        rate: The initial learning rate.
        boundary: The last optimizer step at the initial rate.
        accumulation: Micro-batches per optimizer step: Keras calls a
            schedule with the micro-batch count.
    """

    def __init__(self, rate, boundary, accumulation=1):
        self.rate = rate
        self.boundary = boundary
        self.accumulation = accumulation

    def __call__(self, step):
        # A tensor, not the variable: `jnp.where` refuses variables.
        rate = keras.ops.convert_to_tensor(self.rate, "float32")
        step = keras.ops.floor_divide(step, self.accumulation)
        return keras.ops.where(keras.ops.greater(step, self.boundary), rate * 0.1, rate)


def learning_rate_schedule(config, accumulation=1):
    """The `StepDecay` of `config`: x0.1 after `decay_at` of the steps."""
    return StepDecay(
        config.learning_rate, max(1, int(config.decay_at * config.steps)), accumulation
    )


def make_optimizer(config, rates=None, schedule=None, accumulation=1):
    """SGD with momentum, weight decay and a x0.1 step at `decay_at`.

    Args:
        config: A `TrainConfig`.
        rates: Optional dict of variable path -> gradient multiplier
            (`scale_free_rates`).
        schedule: The `StepDecay` to use (to `restart` it later); its rate
            becomes a variable of the returned optimizer. Defaults to a new
            one from `config`.
        accumulation: Micro-batches whose gradients are averaged per
            optimizer step (Keras' `gradient_accumulation_steps`).

    Returns:
        The optimizer.
    """
    schedule = schedule or learning_rate_schedule(config, accumulation)
    settings = dict(
        learning_rate=schedule,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        gradient_accumulation_steps=accumulation if accumulation > 1 else None,
    )
    if rates:
        optimizer = _rate_scaled_sgd()(rates, **settings)
    else:
        optimizer = keras.optimizers.SGD(**settings)
    schedule.rate = optimizer.add_variable(
        (),
        initializer=keras.initializers.Constant(float(schedule.rate)),
        dtype="float32",
        name="base_learning_rate",
    )
    return optimizer


def restart(optimizer, schedule, learning_rate):
    """Resets `optimizer`'s state (steps, momenta) and `schedule`'s rate."""
    for variable in optimizer.variables:
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    schedule.rate.assign(learning_rate)


def scale_free_rates(model, transparent=()):
    """Gradient multipliers that make SGD blind to the scale of BN-fed kernels.

    A kernel whose output only a `BatchNormalization` reads (directly or
    through the `transparent` layers, e.g. adaptors behind a conv) can be
    multiplied by any `c` without changing the function, if the BatchNorm's
    statistics follow; its gradient then scales by `1 / c` and plain SGD's
    relative step by `1 / c**2`. Multiplying its gradient by its mean square
    over that of He initialisation (`2 / fan_in`) makes the relative step
    independent of `c`; for a trained network the factors are about 1
    (0.5-1.6 on the bundled ResNet-20), so training there is nearly
    unchanged.

    Args:
        model: The model about to train.
        transparent: Names of layers looked through when finding what reads
            a kernel's output.

    Returns:
        A dict of variable path -> multiplier, for the trainable kernels
        found.
    """
    transparent = set(transparent)
    graph = flat_graph.FlatGraph(model)

    def readers(layer):
        found = []
        for follower in graph.followers(layer):
            found += readers(follower) if follower.name in transparent else [follower]
        return found

    rates = {}
    for layer in graph.layers():
        kernel = getattr(layer, "kernel", None)
        if kernel is None or not layer.trainable or layer.name in transparent:
            continue
        after = readers(layer)
        if not after or not all(
            isinstance(f, keras.layers.BatchNormalization) for f in after
        ):
            continue
        values = backend.to_numpy(kernel)
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        fan_in = int(np.prod(values.shape[:2] if depthwise else values.shape[:-1]))
        rate = float(np.mean(np.square(values, dtype="float64"))) * fan_in / 2
        if math.isfinite(rate) and rate > 0:
            rates[kernel.path] = float(np.clip(rate, 1e-6, 1e6))
    return rates
