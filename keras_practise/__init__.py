"""keras_practise: PRACTISE (Practical Network Acceleration with Tiny Sets) for Keras 3.

Drop whole blocks of a trained CNN, chosen by how well they can be recovered
from a tiny set of images, recover by feature mimicking, and fold the helper
layers away, so that the result is a plain, faster Functional `keras.Model`.
"""

from keras_practise import models
from keras_practise.data.natural_images import sample_photographs
from keras_practise.data.synthesis import bn_statistics_loss
from keras_practise.data.synthesis import gaussian_noise
from keras_practise.data.synthesis import save_images
from keras_practise.data.synthesis import synthesize_images
from keras_practise.data.tiny_set import TinySet
from keras_practise.data.tiny_set import load_tiny_set
from keras_practise.export import ExportResult
from keras_practise.export import export
from keras_practise.graph.blocks import Block
from keras_practise.graph.blocks import find_blocks
from keras_practise.graph.surgery import drop_blocks
from keras_practise.pipeline import CompressionReport
from keras_practise.pipeline import compress
from keras_practise.profiling.latency import compare_latency
from keras_practise.profiling.latency import measure_latency
from keras_practise.profiling.macs import count_macs
from keras_practise.profiling.macs import count_params
from keras_practise.selection.recoverability import recoverability

__version__ = "0.1.0"
