"""Shared pieces of the accuracy benchmarks: the teacher, evaluation, tables.

The teacher is the bundled digits ResNet-20 (see docs/teacher.md) unless a
`.keras` path is given; test images come from the same task's held-out split.
"""

import contextlib
import os
import sys
import tempfile

import numpy as np


def load_teacher(path=None):
    """Loads a `.keras` teacher; defaults to the bundled digits ResNet-20."""
    import keras

    from keras_practise.demo import digits

    return keras.saving.load_model(path or digits.TEACHER_PATH)


def accuracy(model, images, labels):
    """Top-1 accuracy of `model` on `(images, labels)`."""
    predictions = model.predict(images, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=-1) == labels))


def quiet():
    """Sends library output (progress bars, tables) to stderr."""
    return contextlib.redirect_stdout(sys.stderr)


def mean_std(values):
    """Formats values as `mean +/- sample std` in percent (the mean alone for one)."""
    values = 100 * np.asarray(values, dtype="float64")
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{values.mean():.2f} +/- {values.std(ddof=1):.2f}"


def markdown_table(header, rows):
    """A markdown table from a header tuple and row tuples."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def figure(path, xlabel, ylabel, title):
    """Yields a matplotlib axis to draw on, then labels it and saves a PNG.

    Args:
        path: Where to write the PNG.
        xlabel: Label of the x axis.
        ylabel: Label of the y axis.
        title: Title of the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axis = plt.subplots(figsize=(6.4, 4.4))
    yield axis
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train_classifier(
    build, epochs, num_train, num_test, batch_size, learning_rate, seed,
    test_seed=0,
):
    """Trains a classifier on the cluttered-digits task (docs/teacher.md).

    SGD with Nesterov momentum and weight decay, a cosine learning rate
    schedule with a one-epoch linear warm-up, one fixed generated train
    split.

    Args:
        build: Callable returning a fresh, uncompiled 32x32x3 -> 30-class
            `keras.Model`.
        epochs: Passes over the train split.
        num_train: Generated train images.
        num_test: Generated test images.
        batch_size: Batch size.
        learning_rate: Peak learning rate.
        seed: Seed of the train split, weights initialisation and shuffling.
        test_seed: Seed of the test split (the same for every training seed,
            so accuracies compare).

    Returns:
        A tuple `(model, test_accuracy)`; the model is a freshly built,
        uncompiled copy holding the trained weights (no optimizer state).
    """
    import keras

    from keras_practise.demo import digits

    keras.utils.set_random_seed(seed)
    x_train, y_train = digits.load_cluttered_digits(
        "train", num_images=num_train, seed=seed
    )
    x_test, y_test = digits.load_cluttered_digits(
        "test", num_images=num_test, seed=test_seed
    )
    model = build()
    steps_per_epoch = -(-num_train // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=steps_per_epoch * max(epochs - 1, 1),
        warmup_target=learning_rate,
        warmup_steps=steps_per_epoch,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=5e-4
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(x_test, y_test),
        verbose=2,
    )
    # A fresh build drops the optimizer state and compile config, which keeps
    # the saved file small and loadable without our schedule on any backend.
    trained = build()
    trained.set_weights(model.get_weights())
    return trained, accuracy(trained, x_test, y_test)


def write_atomically(path, text):
    """Writes `text` to `path` whole or not at all."""
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as f:
        f.write(text)
        temporary = f.name
    os.replace(temporary, path)
