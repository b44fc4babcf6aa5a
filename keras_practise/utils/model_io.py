"""Loading a model from a path: a `.keras` file or a KerasHub preset folder.

KerasHub models (`keras_hub.models.ResNetBackbone`, image classifiers built on
them) are Functional models, so keras_practise compresses them like any other.
A preset folder written by `save_to_preset` holds the model's constructor
config (`config.json`, and `task.json` for a task such as an image
classifier) beside its weights; it is loaded here with KerasHub itself.

The compressed model is a plain Functional `keras.Model`, not a KerasHub
class (a KerasHub backbone is rebuilt from constructor arguments, which no
longer describe a network with dropped blocks), so it is saved as `.keras`.
Block layers of KerasHub that remain inside it (MobileNetV3's
`InvertedResidualBlock`) are found again on reload by their module name:
`keras.saving.load_model` needs keras-hub installed, no `custom_objects`.
"""

import importlib
import json
import os

import keras

_PRESET_FILES = ("config.json", "metadata.json")


def is_preset_dir(path):
    """Whether `path` is a KerasHub preset folder (from `save_to_preset`)."""
    return os.path.isdir(path) and all(
        os.path.isfile(os.path.join(path, name)) for name in _PRESET_FILES
    )


def _import_keras_hub(path):
    try:
        return importlib.import_module("keras_hub")
    except ImportError as error:
        raise ImportError(
            f"{path!r} is a KerasHub preset folder; loading it needs "
            "keras-hub: `pip install keras-hub`."
        ) from error


def load_preset(path):
    """Loads the model of a local KerasHub preset folder.

    A folder with `task.json` gives the task (e.g. a `ResNetImageClassifier`,
    its classification head included); otherwise the backbone.

    Args:
        path: A folder written by `model.save_to_preset(path)`.

    Returns:
        The KerasHub model (a Functional `keras.Model`).

    Raises:
        ImportError: If keras-hub is not installed.
        ValueError: If the folder is not a preset or KerasHub cannot load it.
    """
    if not is_preset_dir(path):
        raise ValueError(
            "Expected a KerasHub preset folder holding "
            f"{', '.join(_PRESET_FILES)}. Received: {path!r}"
        )
    keras_hub = _import_keras_hub(path)
    task_file = os.path.join(path, "task.json")
    try:
        if os.path.isfile(task_file):
            with open(task_file) as f:
                config = json.load(f)
            task_class = getattr(
                importlib.import_module(config["module"]), config["class_name"]
            )
            return task_class.from_preset(path)
        return keras_hub.models.Backbone.from_preset(path)
    except Exception as error:  # KerasHub fails in many ways; all mean bad input.
        raise ValueError(
            f"KerasHub could not load the preset folder {path!r}: {error}"
        ) from error


def load_model(path):
    """Loads a model from a `.keras` file or a KerasHub preset folder.

    Args:
        path: Path of a `.keras` (or `.h5`) file, or of a KerasHub preset
            folder.

    Returns:
        The loaded `keras.Model` (not compiled).

    Raises:
        FileNotFoundError: If `path` does not exist.
        ValueError: If Keras (or KerasHub) cannot load it.
        ImportError: If `path` is a preset and keras-hub is not installed.

    Example:

    ```python
    backbone.save_to_preset("resnet_preset")
    model = load_model("resnet_preset")
    ```
    """
    if os.path.isdir(path):
        return load_preset(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            "Model file not found (a .keras file or a KerasHub preset "
            f"folder is expected). Received: {path!r}"
        )
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Loading fails in many ways; all mean bad input.
        raise ValueError(
            f"Could not load a Keras model from {path!r}: {error}"
        ) from error
