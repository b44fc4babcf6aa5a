"""Progress output that reads well on a terminal and in a log file.

On a terminal, Keras' progress bars redraw themselves in place. Redirected
to a file (CI, a batch job, `nohup`) those redraws pile up as carriage-return
updates, so there the library follows Keras' `verbose=2` convention instead:
whole lines, one per interval of training and one per finished phase.
"""

import sys
import time

import keras

# Lines a long training run writes to a log.
_LOG_LINES = 10


def interactive():
    """Whether progress goes to a terminal (bars) or to a log (lines)."""
    stream = sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


def progbar(target, verbose=1, unit_name="step"):
    """A `keras.utils.Progbar` that writes one line when done in a log.

    Args:
        target: Total number of steps.
        verbose: 0 silent, otherwise progress is shown.
        unit_name: Name of a step in the display.

    Returns:
        A `keras.utils.Progbar`.
    """
    if not verbose:
        mode = 0
    else:
        mode = 1 if interactive() else 2
    return keras.utils.Progbar(target, verbose=mode, unit_name=unit_name)


def fit_verbosity(verbose, steps):
    """The `verbose` and extra callbacks for a one-epoch `fit` of `steps`.

    Args:
        verbose: 0 silent, otherwise progress is shown.
        steps: Steps of the epoch.

    Returns:
        A tuple `(fit_verbose, callbacks)`: Keras' bar on a terminal, else
        no bar and a callback that logs about ten whole lines.
    """
    if not verbose:
        return 0, []
    if interactive():
        return 1, []
    return 0, [_LogLines(steps)]


class _LogLines(keras.callbacks.Callback):
    """Prints `step k/n - Xs - loss: v` every tenth of a run."""

    def __init__(self, steps):
        super().__init__()
        self.steps = steps
        self.every = max(1, steps // _LOG_LINES)

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.done = 0

    def on_train_batch_end(self, batch, logs=None):
        # Counted across epochs: a run checked on held-out images is split
        # into several.
        self.done += 1
        done = self.done
        if done % self.every and done != self.steps:
            return
        seconds = time.perf_counter() - self.started
        values = " - ".join(
            f"{name}: {float(value):.4g}" for name, value in (logs or {}).items()
        )
        print(f"step {done}/{self.steps} - {seconds:.0f}s - {values}", flush=True)
