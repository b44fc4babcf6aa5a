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
    """Formats values as `mean +/- std` in percent."""
    values = 100 * np.asarray(values, dtype="float64")
    return f"{values.mean():.2f} +/- {values.std():.2f}"


def markdown_table(header, rows):
    """A markdown table from a header tuple and row tuples."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_atomically(path, text):
    """Writes `text` to `path` whole or not at all."""
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as f:
        f.write(text)
        temporary = f.name
    os.replace(temporary, path)
