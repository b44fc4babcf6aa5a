"""The bundled digits task and teacher, and the embedded default run.

`python -m keras_practise.demo` compresses the bundled teacher from 50 images.
"""

from keras_practise.demo.demo import run
