"""keras_practise: PRACTISE (Practical Network Acceleration with Tiny Sets) for Keras 3.

Drop whole blocks of a trained CNN, chosen by how well they can be recovered
from a tiny set of images, recover by feature mimicking, and fold the helper
layers away, so that the result is a plain, faster Functional `keras.Model`.

The public names below are imported on first use (PEP 562), so importing the
package, or running `keras-practise --help`, starts no Keras backend.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

# Public name -> the module that holds it.
_PUBLIC = {
    "sample_photographs": "keras_practise.data.natural_images",
    "bn_statistics_loss": "keras_practise.data.synthesis",
    "gaussian_noise": "keras_practise.data.synthesis",
    "save_images": "keras_practise.data.synthesis",
    "synthesize_images": "keras_practise.data.synthesis",
    "TinySet": "keras_practise.data.tiny_set",
    "load_tiny_set": "keras_practise.data.tiny_set",
    "ExportResult": "keras_practise.export",
    "Block": "keras_practise.graph.blocks",
    "find_blocks": "keras_practise.graph.blocks",
    "drop_blocks": "keras_practise.graph.surgery",
    "CompressionReport": "keras_practise.pipeline",
    "compress": "keras_practise.pipeline",
    "compare_latency": "keras_practise.profiling.latency",
    "measure_latency": "keras_practise.profiling.latency",
    "count_macs": "keras_practise.profiling.macs",
    "count_params": "keras_practise.profiling.macs",
    "recoverability": "keras_practise.selection.recoverability",
    "Fidelity": "keras_practise.recovery.fidelity",
    "FidelityError": "keras_practise.recovery.fidelity",
    "FidelityWarning": "keras_practise.recovery.fidelity",
}
__all__ = sorted(_PUBLIC) + ["export", "models"]


def __getattr__(name):
    if name == "models":
        return importlib.import_module("keras_practise.models")
    if name not in _PUBLIC:
        raise AttributeError(f"module 'keras_practise' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)


class _Package(types.ModuleType):
    """The package, whose `export` is the function, not the sub-package.

    Importing a sub-package binds it on its parent; `keras_practise.export`
    names both the function and the sub-package holding it, so the binding
    is kept aside (the sub-package stays in `sys.modules`).
    """

    @property
    def export(self):
        return importlib.import_module("keras_practise.export").export

    @export.setter
    def export(self, module):
        del module  # The import system binding the sub-package: ignored.


sys.modules[__name__].__class__ = _Package
