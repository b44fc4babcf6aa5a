"""The schemes `compress()` can run, by name: one line each.

This module imports nothing heavy, so the command line can list schemes and
their options (and answer `--help`) without starting a Keras backend. Each
entry names the module whose `SCHEME` (a `schemes.base.Scheme`) does the
work; `load` imports it on first use.

Adding a scheme: write its module (see `schemes/sparse.py` for a layer-wise
one, `schemes/block_dropping.py` for the block pipeline) and add its line
to `ENTRIES`.
"""

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Option:
    """A scheme's own keyword argument of `compress()`.

    Attributes:
        name: The keyword (the CLI flag is `--name`, dashes for underscores).
        default: Its default value.
        parse: Callable turning the flag's text into the value, or `None`
            when the command line spells it with its own flags.
        help: One line for `--help`.
    """

    name: str
    default: object = None
    parse: object = None
    help: str = ""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One scheme: its name, its module and its options.

    Attributes:
        name: What `compress(scheme=...)` and `--scheme` take.
        module: The module holding `SCHEME`.
        summary: One line for `--help` and the docs.
        options: Its `Option`s.
        relax: Names of the options that trade speed for fidelity, for the
            message when a result is far from its teacher.
    """

    name: str
    module: str
    summary: str
    options: tuple = ()
    relax: tuple = ()

    @property
    def defaults(self):
        """`{option name: default}`."""
        return {o.name: o.default for o in self.options}


def number(text):
    """An int when the text is one, else a float (`--rank 3`, `--rank 0.25`)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def names(text):
    """Comma-separated names as a list (`--layers a,b`)."""
    return [name for name in text.split(",") if name]


_LAYERS = Option(
    "layers", None, names,
    "comma-separated convs to compress (default: every candidate); filters "
    "also takes residual streams, named by their first producing conv",
)
_LEARNING_RATE = Option(
    "learning_rate", 0.01, float, "SGD rate of the per-layer training (0.01)"
)
# A layer-wise scheme meets a latency target by turning its own knob; the
# command line spells both with block dropping's flags.
_TARGET = (Option("latency_target"), Option("latency", "measured"))

ENTRIES = (
    Entry(
        "blocks", "keras_practise.schemes.block_dropping",
        "drop whole blocks chosen by recoverability (the default)",
        (
            Option("drop", 3), Option("latency_target"), Option("blocks"),
            Option("latency", "measured"), Option("synthesis_steps", 1000),
            Option(
                "selection", "auto", str,
                "blocks: how the set is chosen (auto: shortlist when each "
                "audition gets 100 steps or more, else greedy): shortlist "
                "(sets recovered briefly, the closest to the teacher kept), "
                "greedy, independent or one_per_stage",
            ),
            Option(
                "finalists", 20, int,
                "blocks, shortlist: most sets recovered briefly (20): the "
                "combinations of the blocks that change the features least",
            ),
            Option(
                "finalist_steps", None, int,
                "blocks, shortlist: steps of each brief recovery "
                "(default: a fifth of --finetune-steps)",
            ),
            Option(
                "finalist_folds", 2, int,
                "blocks, shortlist: parts of the images each set is "
                "auditioned on, trained on the others (2; 1: trained on "
                "all, judged on new views of them)",
            ),
        ),
        relax=("drop", "latency_target", "blocks"),
    ),
    Entry(
        "filters", "keras_practise.schemes.filters",
        "keep a fraction of the filters of maps or residual streams",
        (Option("keep", 0.75, float,
                "filters: kept fraction (0.75; the papers' 0.5 took a small "
                "VGG from 72 to 20 percent)"), _LAYERS,
         _LEARNING_RATE, *_TARGET),
        relax=("keep", "layers"),
    ),
    Entry(
        "decouple", "keras_practise.schemes.decouple",
        "KxK conv -> depthwise + pointwise",
        (Option("rank", 3, number,
                "decouple: filters per channel (3); lowrank: kept fraction "
                "or count"),
         _LAYERS, _LEARNING_RATE, *_TARGET),
        relax=("rank", "layers"),
    ),
    Entry(
        "lowrank", "keras_practise.schemes.lowrank",
        "3x3 conv -> fewer 3x3 filters + 1x1, by PCA of its responses",
        (Option("energy", 0.95, float,
                "lowrank: PCA energy (0.95; the paper's ImageNet setting 0.4 "
                "collapses small nets)"),
         Option("rank", None, number), _LAYERS, _LEARNING_RATE, *_TARGET),
        relax=("energy", "rank", "layers"),
    ),
    Entry(
        "sparse", "keras_practise.schemes.sparse",
        "unstructured magnitude sparsity",
        (Option("sparsity", 0.5, float,
                "sparse: zeros (0.5; the paper's ImageNet setting 0.9 "
                "collapses small nets)"), _LAYERS,
         _LEARNING_RATE, *_TARGET),
        relax=("sparsity", "layers"),
    ),
)
SCHEMES = tuple(e.name for e in ENTRIES)


def entry(name):
    """The `Entry` named `name`.

    Raises:
        ValueError: If no scheme has that name.
    """
    for e in ENTRIES:
        if e.name == name:
            return e
    raise ValueError(
        f"Unknown scheme. Expected one of {SCHEMES}. Received: scheme={name!r}"
    )


def load(name):
    """The `Scheme` named `name` (imports its module)."""
    return importlib.import_module(entry(name).module).SCHEME


def cli_options():
    """Every option with a command-line spelling, once, in entry order.

    An option several schemes share (`layers`, `rank`) is listed once, with
    the help text of its first entry.
    """
    seen = {}
    for e in ENTRIES:
        for option in e.options:
            if option.parse is not None:
                seen.setdefault(option.name, option)
    return list(seen.values())
