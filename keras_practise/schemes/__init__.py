"""Layer-wise compression schemes recovered by PRACTISE's 1x1-conv trick.

Filter pruning, network decoupling, low-rank decomposition and unstructured
sparsity (the earlier paper's Sections 3.1-3.3 and 4.1-4.4), for comparing
them with block dropping on the user's own model and device.
"""

from keras_practise.schemes.run import METHODS
from keras_practise.schemes.run import SCHEMES
from keras_practise.schemes.run import SchemeReport
from keras_practise.schemes.run import compress_with_scheme
