"""The `keras-practise` command: compress, list blocks, compare latency.

Compress a saved model with 50 images drawn from a class-per-folder tree,
dropping 3 blocks, and keep the report:

    keras-practise compress teacher.keras --data images/ --num-samples 50 \
        --drop 3 --out small.keras --report report.json

List the droppable blocks (names and `stage.position` labels that
`--blocks` accepts), and compare latencies:

    keras-practise blocks teacher.keras
    keras-practise latency teacher.keras small.keras --batch-size 8 --runs 30

`python -m keras_practise ...` is the same command. Results go to stdout;
progress bars and logs go to stderr. Bad flags (including values the
library refuses before loading anything: an unknown method, format or
runtime, a setting out of range) end with exit status 2, other bad input or
a failed run with 1, each with one line `keras-practise: error: <reason>`. Output files are
written whole or not at all.

`--backend tensorflow|torch|jax` picks the Keras backend. Importing
keras_practise imports Keras, which fixes the backend, so when the running
one differs the command runs again in a child process with `KERAS_BACKEND`
set; setting `KERAS_BACKEND` yourself saves that second start.

Parsing the flags starts no Keras backend: `--help` and `--version` answer
at once, and a command imports Keras (and the library) only when it runs.
"""

import contextlib
import importlib.util
import os
import subprocess
import sys

from keras_practise.cli import parser


def _rerun_with_backend(backend, argv):
    """Runs the command again in a child process on `backend`."""
    if os.environ.get("KERAS_BACKEND") == backend:
        # The child would end up here again: Keras was set up otherwise.
        raise ValueError(
            f"KERAS_BACKEND={backend} is set, but Keras runs on another "
            f"backend. Received: --backend {backend}"
        )
    if importlib.util.find_spec(backend) is None:
        raise ImportError(
            f"The {backend} backend needs the {backend} package "
            f"(pip install keras-practise[{backend}]). "
            f"Received: --backend {backend}"
        )
    # The child imports this very package first: `python -m` would look in
    # the working directory before it, where a folder of the same name may be.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        f"import sys; sys.path.insert(0, {package_root!r}); "
        "from keras_practise.cli import main; sys.exit(main())"
    )
    env = dict(os.environ, KERAS_BACKEND=backend)
    command = [sys.executable, "-c", code, *argv]
    return subprocess.run(command, env=env, check=False).returncode


def _error(message):
    # One line, whatever the library's message looks like.
    print(f"{parser.PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv=None):
    """Runs the `keras-practise` command.

    Args:
        argv: Command-line arguments without the program name. Defaults to
            `sys.argv[1:]`.

    Returns:
        The exit status: 0 on success, 1 on bad input or a failed run, 2 on
        bad flags (those argparse refuses and those the library refuses
        before loading), 130 when interrupted.

    Example:

    ```python
    from keras_practise import cli

    cli.main(["blocks", "teacher.keras"])
    ```
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.build_parser().parse_args(argv)
    except parser.UsageError as error:
        _error(error)
        return 2
    # TensorFlow's C++ start-up lines (oneDNN, CUDA) are not our output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras  # noqa: PLC0415 (the backend starts only for a command)

        if args.backend is not None and args.backend != keras.backend.backend():
            return _rerun_with_backend(args.backend, argv)
        from keras_practise.cli import commands  # noqa: PLC0415

        run = getattr(commands, f"run_{args.run}")
        # Keras and the library print progress to stdout; stdout is kept for
        # the results, printed once the work has succeeded.
        with contextlib.redirect_stdout(sys.stderr):
            output = run(args)
    except parser.UsageError as error:
        _error(error)
        return 2
    except (ValueError, TypeError, OSError, ImportError) as error:
        _error(error)
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    print(output)
    return 0
