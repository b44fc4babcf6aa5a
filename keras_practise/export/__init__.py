"""Exporting a model to a deployment runtime's format, checked in that runtime."""

from keras_practise.export.exporter import FORMATS
from keras_practise.export.exporter import ExportResult
from keras_practise.export.exporter import export
from keras_practise.export.runtimes import run_exported
