"""Compression schemes: block dropping and the layer-wise schemes.

Block dropping is PRACTISE's own scheme; filter pruning, network
decoupling, low-rank decomposition and unstructured sparsity (the earlier
paper's Sections 3.1-3.3 and 4.1-4.4) are recovered by the same 1x1-conv
adaptors, for comparing them with block dropping on the user's own model
and device. `compress(scheme=...)` runs any of them (`registry.SCHEMES`).
"""

import importlib

from keras_practise.schemes.registry import SCHEMES


def __getattr__(name):
    # The layer-wise machinery imports Keras: loaded on first use, so the
    # command line can read the registry without starting a backend.
    if name in ("METHODS", "SchemeReport"):
        return getattr(importlib.import_module("keras_practise.schemes.layerwise"), name)
    if name == "compress_with_scheme":
        # The former entry point, now a deprecated alias of `compress` (the
        # one place this package names the later pipeline stage).
        return importlib.import_module("keras_practise.pipeline").compress_with_scheme
    raise AttributeError(f"module 'keras_practise.schemes' has no attribute {name!r}")

