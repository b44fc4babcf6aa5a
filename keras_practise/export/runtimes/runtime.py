"""`Runtime`: what the library knows about one deployment runtime.

One record per runtime holds everything export, runtime latency and the CLI
read: the format's name, how Keras writes it, the file's suffix, the module
that runs it and the pip extra that installs it, the loader that returns a
callable (used both to check a file and to time it), and its post-training
int8 quantizer.
"""

import dataclasses
import importlib
import typing


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A deployment runtime and the file format it runs.

    Attributes:
        format: The export format's name (`export(..., format=...)`).
        name: The runtime's name for latency (`runtime=...`), or `None` if
            the format is not offered as a latency runtime.
        keras_format: The format `keras.Model.export` writes.
        suffix: The file suffix (`""` for a folder).
        module: The module that runs the file.
        extra: The pip extra that installs `module` and the quantizer.
        load: `load(path, threads) -> f(x)`, from a float32 numpy batch to
            the first output; `threads=None` leaves the runtime's default.
        converters: Backend name -> modules that writing the format needs.
        tensorflow_only: Whether Keras writes the format from the TensorFlow
            backend only (another backend writes it in a TensorFlow
            subprocess).
        companions: Suffixes of files written beside the main one (OpenVINO's
            `.bin` weights), moved and measured with it.
        quantize: `quantize(model, path, calibration)` writes an int8 file
            for float32 `calibration` images with the runtime's own
            post-training quantizer, or `None` if the format has none here.
        quantizer_modules: Modules `quantize` needs besides `module`.
    """

    format: str
    name: typing.Optional[str]
    keras_format: str
    suffix: str
    module: str
    extra: str
    load: typing.Callable
    converters: dict = dataclasses.field(default_factory=dict)
    tensorflow_only: bool = False
    companions: tuple = ()
    quantize: typing.Optional[typing.Callable] = None
    quantizer_modules: tuple = ()

    def require(self, quantize=False):
        """Imports the runtime's module (and its quantizer's).

        Args:
            quantize: Also import the modules the int8 quantizer needs.

        Returns:
            The runtime's module.

        Raises:
            ImportError: If one is missing; the message names the extra.
        """
        for module in self.quantizer_modules if quantize else ():
            require(module, self.extra)
        return require(self.module, self.extra)


def require(module, extra):
    """Imports `module`, or raises an `ImportError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"This needs the `{module}` package: "
            f'`pip install "keras-practise[{extra}]"`.'
        ) from error
