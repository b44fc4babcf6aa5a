"""TensorFlow SavedModel folders, run by TensorFlow itself."""

import numpy as np

from keras_practise.export.runtimes import runtime as runtime_lib


def load(path, threads):
    """The SavedModel's `serve` endpoint, as `f(x) -> first output`.

    `threads` is not applied: TensorFlow fixes its thread pools when it
    starts.
    """
    tf = RUNTIME.require()
    # The loaded object owns the variables: the closure keeps it alive.
    loaded = tf.saved_model.load(path)
    return lambda x: np.asarray(loaded.serve(x))


RUNTIME = runtime_lib.Runtime(
    format="saved_model",
    name=None,
    keras_format="tf_saved_model",
    suffix="",
    module="tensorflow",
    extra="tensorflow",
    load=load,
    tensorflow_only=True,
)
