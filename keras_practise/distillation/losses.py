"""The losses of the label-using recovery modes.

Feature mimicking's loss is Keras' `"mse"` on the taps; these are the
classifier-output losses: cross-entropy for labelled modes (`"ce"`,
`"mimic_ce"`) and Hinton's logit distillation (`"kd"`).
"""

import keras

from keras_practise.graph import taps


def classification_loss(model):
    """Sparse cross-entropy matching whether `model` ends in a softmax."""
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=not taps.ends_in_softmax(model)
    )


def distillation_loss(model, temperature):
    """Hinton's knowledge distillation loss for `model`'s classifier output.

    `T^2 * KL(softmax(t / T) || softmax(s / T))` between the teacher's
    outputs `t` (the targets) and the student's `s`; for a model that ends in
    a softmax both are probabilities and their logarithms serve as logits
    (softmax is unchanged by the constant they differ by).

    Args:
        model: The student (it decides whether outputs are probabilities).
        temperature: The softmax temperature `T`.

    Returns:
        A loss callable `(teacher_outputs, student_outputs) -> per-sample loss`.
    """
    probabilities = taps.ends_in_softmax(model)

    def distillation(teacher_outputs, student_outputs):
        t, s = teacher_outputs, student_outputs
        if probabilities:
            t = keras.ops.log(keras.ops.clip(t, 1e-7, 1.0))
            s = keras.ops.log(keras.ops.clip(s, 1e-7, 1.0))
        t_log = keras.ops.log_softmax(t / temperature, axis=-1)
        s_log = keras.ops.log_softmax(s / temperature, axis=-1)
        kl = keras.ops.sum(keras.ops.exp(t_log) * (t_log - s_log), axis=-1)
        return temperature**2 * kl

    return distillation
