"""The layer-wise schemes end to end, and their report.

tiny set -> views and teacher -> layer by layer: compress, train the inserted
1x1 convs to mimic the next feature map, fold -> a plain Functional model.
Each scheme module (`filters`, `decouple`, `lowrank`, `sparse`) supplies a
`plan`: which layers, and the step that compresses one of them.
"""

import dataclasses
import json

from keras_practise.distillation import feature_bank
from keras_practise.export import exporter
from keras_practise.graph import input_size
from keras_practise.profiling import latency as latency_lib
from keras_practise.profiling import macs as macs_lib
from keras_practise.recovery import recipes
from keras_practise.schemes import base
from keras_practise.schemes import core
from keras_practise.selection import savings as savings_lib
from keras_practise.utils import validation

# Recovery of a scheme: PRACTISE's layer-wise adaptors ("layerwise"), then
# optionally whole-network finetuning ("mimic" label-free, "mimic_ce" the
# earlier paper's "PRACTISE + FT"); or the baselines, which train the
# untrained compression as a whole ("ce" = BP, "kd", "fitnet").
METHODS = ("layerwise",) + recipes.WHOLE_METHODS
_LAYERWISE = ("layerwise", "mimic", "mimic_ce")


@dataclasses.dataclass
class SchemeReport:
    """What `compress(scheme=...)` did with a layer-wise scheme.

    Attributes:
        scheme: The scheme.
        method: The recovery (`METHODS`).
        layers: Names of the compressed layers, in network order.
        settings: The scheme's arguments.
        params: `(before, after)` parameter counts.
        macs: `(before, after)` multiply-accumulates per image.
        sparsity: Fraction of zero kernel entries in the compressed convs
            (`"sparse"` only, else `None`).
        steps: One `core.StepRecord` per layer (with untrained adaptors
            for the baselines that skip layer-wise training).
        phase_seconds: Wall time per phase.
        finetune_curve: `(step, loss)` pairs of the whole-network training
            (empty for `"layerwise"`).
        fidelity: The `fidelity.Fidelity` of the result on held-out views
            of the tiny set (agreement with the teacher, output and feature
            errors, accuracies when labelled).
        exported: The `ExportResult` of `export=` as a dict, or `None`.
        latency_ms: `(before, after)` median latency in ms (`None` when not
            measured), with `latency_batch_size` and `device`.
        latency_reduction: Fraction of latency saved.
        int8_latency: With `quantize="int8"` and a non-zero
            `latency_batch_size`: the int8 file and a float export of the
            same compressed model timed interleaved in the int8 file's
            runtime at `latency_batch_size` (dict: `runtime`, `batch_size`,
            `runs`, median `float_ms` and `int8_ms`, `ratio` =
            `int8_ms / float_ms`), else `None`.
    """

    scheme: str
    method: str
    layers: list
    settings: dict
    params: tuple
    macs: tuple
    sparsity: float
    steps: list
    phase_seconds: dict
    finetune_curve: list = dataclasses.field(default_factory=list)
    exported: dict = None
    fidelity: object = None
    latency_ms: tuple = (None, None)
    latency_reduction: float = None
    latency_batch_size: int = 0
    device: str = None
    int8_latency: dict = None

    def table(self):
        """The per-layer table and the totals as text."""
        lines = [f"scheme {self.scheme}, recovery {self.method} {self.settings}"]
        for r in self.steps:
            lines.append(
                f"  {r.layer}: {r.detail} next-map MSE {r.mse_init:.4g} -> "
                f"{r.mse_trained:.4g} (BatchNorm {r.batchnorm}), fold error {r.fold_error:.2g}"
            )
        lines.append(f"params {self.params[0]:,} -> {self.params[1]:,}")
        lines.append(f"MACs {self.macs[0]:,} -> {self.macs[1]:,}")
        if self.finetune_curve:
            lines.append(
                f"whole-network {self.method}: loss {self.finetune_curve[0][1]:.4g} "
                f"-> {self.finetune_curve[-1][1]:.4g}"
            )
        if self.latency_ms[0] is not None:
            lines.append(
                f"latency ms (batch {self.latency_batch_size}) "
                f"{self.latency_ms[0]:.2f} -> {self.latency_ms[1]:.2f}"
            )
        if self.sparsity is not None:
            lines.append(
                f"zeros in the compressed kernels: {100 * self.sparsity:.1f}% "
                "(dense runtimes do not run them faster)"
            )
        if self.fidelity is not None:
            lines.append(f"fidelity {self.fidelity}")
        if self.exported:
            lines.append(f"exported {exporter.ExportResult(**self.exported)}")
        if self.int8_latency:
            lines.append(base.int8_latency_line(self.int8_latency))
        lines.append(
            "phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.phase_seconds.items())
        )
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        """A JSON-serialisable dict of the report."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def chosen_layers(name, candidates, layers):
    """The `layers` a scheme was asked for, in network order.

    Args:
        name: The scheme, for the message.
        candidates: Names of the layers it can compress, in network order.
        layers: The names asked for, or `None` for every candidate.

    Raises:
        ValueError: If a name is not a candidate.
    """
    chosen = candidates if layers is None else list(layers)
    unknown = [n for n in chosen if n not in candidates]
    if unknown:
        raise ValueError(
            f"Scheme {name!r} cannot compress {unknown}. Candidates: {candidates}"
        )
    return [n for n in candidates if n in chosen]


def saving(teacher, model, source):
    """Fraction of `teacher`'s latency (or MACs) that `model` saves.

    Args:
        teacher: The original model.
        model: A compressed copy.
        source: `"macs"`, `"measured"`, a runtime name or a callable
            `f(model) -> milliseconds` (as `compress(latency=...)`).

    Returns:
        A float; negative when `model` is slower.
    """
    if source == "macs":
        return 1 - macs_lib.count_macs(model) / macs_lib.count_macs(teacher)
    reductions = latency_lib.latency_reductions(
        {"original": teacher, "compressed": model}, source
    )
    return reductions["compressed"]


def knob_for_target(teacher, options, knob, target, source):
    """The scheme's setting that saves at least `target`, compressing least.

    Savings grow along `knob.values`; a bisection over them previews the
    untrained compression (its latency is the trained one's) and keeps the
    first value that meets the target.

    Args:
        teacher: The flat teacher.
        options: The scheme's options.
        knob: The scheme's `Knob`.
        target: Fraction of latency (or MACs) to remove, in (0, 1).
        source: How savings are assessed (see `saving`).

    Returns:
        `options` with the knob set.

    Raises:
        ValueError: If even the last value does not save `target`.
    """
    def saved(index):
        values = {**options, knob.name: knob.values[index]}
        return saving(teacher, knob.preview(teacher, values), source)

    low, high = 0, len(knob.values) - 1
    most = saved(high)
    if most < target:
        raise ValueError(
            f"{knob.name}={knob.values[high]!r}, the most this scheme removes, "
            f"saves {100 * most:.1f}% ({describe_source(source)}): "
            f"latency_target={target} cannot be met on this model."
        )
    while low < high:
        middle = (low + high) // 2
        if saved(middle) >= target:
            high = middle
        else:
            low = middle + 1
    return {**options, knob.name: knob.values[low]}


def describe_source(source):
    """A short name of a saving's source for messages."""
    return getattr(source, "__name__", source) if callable(source) else source


@dataclasses.dataclass(frozen=True)
class Knob:
    """The setting a scheme turns to meet a `latency_target`.

    Attributes:
        name: The option (e.g. `"keep"`).
        values: Its values, from the least to the most compression.
        preview: Callable `(teacher, options) -> model`: the untrained
            compression with those options (same layers and shapes as the
            trained one).
    """

    name: str
    values: tuple
    preview: object


# Fractions from 0.95 down to 0.05.
FRACTIONS = tuple(round(0.95 - 0.05 * i, 2) for i in range(19))


def scheme(name, plan, check=lambda options: None, extra=lambda model, names: {},
           knob=None):
    """The `base.Scheme` of a layer-wise scheme.

    Args:
        name: The scheme's registry name.
        plan: Callable `(teacher, options) -> (layer names, make_step)`,
            checking the options against the model; `make_step(model,
            layer_name, probe)` returns a `core.Step`.
        check: Callable `(options) -> None` raising on bad options before
            the model is copied.
        extra: Callable `(compressed, layer names) -> dict` of further
            `SchemeReport` fields (e.g. `sparsity`).
        knob: The `Knob` that meets a `latency_target`, or `None` when the
            scheme cannot make a dense network faster.

    Returns:
        A `base.Scheme`.
    """

    def check_all(options):
        if options["latency_target"] is not None and knob is None:
            raise ValueError(
                f"Scheme {name!r} does not make dense networks faster, so it "
                "cannot meet a latency_target. Received: "
                f"latency_target={options['latency_target']}"
            )
        validation.check_fraction(
            "latency_target", options["latency_target"], allow_none=True
        )
        savings_lib.check_source(options["latency"])
        check(options)

    def run(model, job, phases):
        with base.timed(phases, "data"):
            teacher = core.flat_copy(
                input_size.fixed_size_model(model, job.tiny.image_size)
            )
            options = job.options
            if options["latency_target"] is not None:
                options = knob_for_target(
                    teacher, options, knob, options["latency_target"],
                    options["latency"],
                )
            names, make_step = plan(teacher, options)
            if not names:
                raise ValueError(
                    f"Model {model.name!r} has no layer that scheme {name!r} applies to."
                )
            bank, tiny_set = feature_bank.build_bank(teacher, job.tiny, memory=job.memory)
            if job.method != "layerwise":
                recipes.check_method(job.method, bank.labels is not None)
        config = None
        if job.steps:
            config = job.train_config(
                job.steps, bank=bank, learning_rate=options["learning_rate"]
            )
        with base.timed(phases, "layers"):
            compressed, records = core.run_steps(
                teacher, names, make_step, bank.views,
                config if job.method in _LAYERWISE else None,
                verbose=job.verbose,
                # The bank caches no cuts here: their share of the budget
                # holds each layer's inputs and targets.
                max_bytes=bank.cache_bytes,
            )
        curve = []
        if job.method != "layerwise":
            with base.timed(phases, "finetune"):
                curve = recipes.train_whole(
                    compressed, bank, job.method,
                    job.train_config(
                        job.finetune_steps, verbose=job.verbose, bank=bank
                    ),
                )
        settings = {
            key: options.get(key)
            for key in (
                "keep", "rank", "energy", "sparsity", "learning_rate",
                "latency_target",
            )
        }
        settings.update(
            steps=job.steps, seed=job.seed,
            finetune_steps=job.finetune_steps if job.method != "layerwise" else None,
        )
        report = SchemeReport(
            scheme=name,
            method=job.method,
            layers=names,
            settings=settings,
            params=(macs_lib.count_params(teacher), macs_lib.count_params(compressed)),
            macs=(macs_lib.count_macs(teacher), macs_lib.count_macs(compressed)),
            sparsity=None,
            steps=records,
            phase_seconds=phases,
            finetune_curve=curve,
        )
        for field, value in extra(compressed, names).items():
            setattr(report, field, value)
        return base.Outcome(
            teacher, compressed, report, bank.views["eval"][:8], tiny_set
        )

    return base.Scheme(
        methods=METHODS, needs_data=True, check=check_all, run=run, min_steps=0,
        knob=knob,
    )
