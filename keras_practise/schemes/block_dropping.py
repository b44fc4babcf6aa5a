"""Block dropping, PRACTISE's own scheme: its report and its run.

tiny set (or synthesised images) -> teacher features -> choose a set
(auditions of a shortlist, or greedy recoverability) -> drop + adaptors ->
recover -> fold.
"""

import dataclasses
import json

import numpy as np

from keras_practise.data import synthesis
from keras_practise.data import tiny_set as data_lib
from keras_practise.distillation import feature_bank
from keras_practise.export import exporter
from keras_practise.graph import candidates as candidates_lib
from keras_practise.graph import flat_graph as graph_lib
from keras_practise.graph import input_size
from keras_practise.profiling import macs as macs_lib
from keras_practise.recovery import auditions as auditions_lib
from keras_practise.recovery import recipes as recovery
from keras_practise.schemes import base
from keras_practise.selection import block_sets
from keras_practise.selection import recoverability as scoring
from keras_practise.selection import savings as savings_lib
from keras_practise.utils import text_table
from keras_practise.utils import validation


@dataclasses.dataclass
class CompressionReport:
    """What `compress()` did, with before/after figures.

    Attributes:
        blocks: Names of the dropped blocks, in network order.
        labels: Their `stage.position` labels.
        method: The recovery recipe.
        scores: The `RecoverabilityReport` (empty when blocks were given).
        params: `(before, after)` parameter counts.
        macs: `(before, after)` multiply-accumulates per image.
        latency_ms: `(before, after)` median latency in ms (`None` when not
            measured), with `latency_batch_size` and `device`.
        latency_reduction: Fraction of latency saved.
        recovery_curve: `(step, loss)` pairs of the recovery training.
        phase_seconds: Wall time per phase.
        tiny_set: Source, size, seed and the drawn indices or files.
        settings: The arguments that shaped the run.
        fidelity: The `fidelity.Fidelity` of the result on held-out views
            of the tiny set (agreement with the teacher, output and feature
            errors, accuracies when labelled).
        exported: The `ExportResult` of `export=` as a dict (file, format,
            size, max abs difference in its runtime), or `None`.
        rounds: With `selection="greedy"`, the `RecoverabilityReport` of
            each later choice (remaining candidates scored dropped together
            with the blocks chosen before).
        auditions: With `selection="shortlist"`, the `AuditionReport` of
            the shortlisted sets (each recovered briefly), else empty.
        selection: The rule that chose the blocks (`"auto"` resolved), or
            `None` when they were given.
        int8_latency: With `quantize="int8"` and a non-zero
            `latency_batch_size`: the int8 file and a float export of the
            same compressed model timed interleaved in the int8 file's
            runtime at `latency_batch_size` (dict: `runtime`, `batch_size`,
            `runs`, median `float_ms` and `int8_ms`, `ratio` =
            `int8_ms / float_ms`), else `None`.
    """

    blocks: list
    labels: list
    method: str
    scores: list
    params: tuple
    macs: tuple
    latency_ms: tuple
    latency_reduction: float
    latency_batch_size: int
    device: str
    recovery_curve: list
    phase_seconds: dict
    tiny_set: dict
    settings: dict
    exported: dict = None
    fidelity: object = None
    rounds: list = dataclasses.field(default_factory=list)
    int8_latency: dict = None
    auditions: list = dataclasses.field(default_factory=list)
    selection: str = None

    def table(self):
        """The before/after table (and the candidate scores) as text."""
        lines = []
        if self.scores:
            lines += ["Recoverability of the candidates:", self.scores.table(), ""]
        for i, scores in enumerate(self.rounds):
            lines += [
                f"Choice {i + 2}: each candidate dropped with the {i + 1} "
                "chosen before:", scores.table(), "",
            ]
        if self.auditions:
            folds = self.auditions.folds
            if folds > 1:
                judged = f"on each of {folds} parts of the images, trained on the others"
            elif self.auditions[0].fidelity.unseen_images:
                judged = "on the held-out images"
            else:
                judged = "on new views of the images they trained on"
            aside = self.auditions.set_aside
            if aside:
                lines += [
                    f"Shortlisted sets, each recovered briefly on {aside.folds} "
                    "parts of the images in turn: no recovery predicted the "
                    "teacher on the part left out better than a constant "
                    "(output error >= 1), so these did not decide:",
                    aside.table(), "",
                ]

            lines += [
                f"Shortlisted sets, each recovered briefly (judged {judged}):",
                self.auditions.table(), "",
            ]
        lines.append(
            f"Dropped {len(self.blocks)} blocks: "
            + ", ".join(f"{n} ({l})" for n, l in zip(self.blocks, self.labels))
            + (f"; chosen by: {self.selection}" if self.selection else "")
            + f"; recovery: {self.method}"
        )
        rows = [("", "before", "after", "change")]
        rows.append(_row("params", self.params, "{:,}"))
        rows.append(_row("MACs", self.macs, "{:,}"))
        if self.latency_ms[0] is not None:
            rows.append(_row(f"latency ms (batch {self.latency_batch_size})",
                             self.latency_ms, "{:.2f}"))
        lines.append(text_table.format_table(rows))
        if self.fidelity is not None:
            lines.append(f"fidelity {self.fidelity}")
        if self.exported:
            lines.append(f"exported {exporter.ExportResult(**self.exported)}")
        if self.int8_latency:
            lines.append(base.int8_latency_line(self.int8_latency))
        lines.append(
            "phases: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in self.phase_seconds.items())
        )
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        """A JSON-serialisable dict of the report."""
        result = dataclasses.asdict(self)
        result["scores"] = [dataclasses.asdict(s) for s in self.scores]
        return json.loads(json.dumps(result, default=_json_default))


def _row(name, pair, fmt):
    before, after = pair
    change = f"{100 * (after - before) / before:+.1f}%" if before else ""
    return (name, fmt.format(before), fmt.format(after), change)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _check_labels(model, tiny_set):
    if tiny_set.labels is None:
        return
    classes = graph_lib.FlatGraph(model).outputs[0].shape[-1]
    labels = tiny_set.labels
    if labels.min() < 0 or (classes is not None and labels.max() >= classes):
        raise ValueError(
            f"Labels must be class indices in [0, {classes}) to match the "
            f"model's {classes} outputs. Received: labels in "
            f"[{labels.min()}, {labels.max()}]"
        )


def _tiny_set(teacher, job):
    """The tiny set: drawn from the data, or synthesised when there is none."""
    tiny = job.tiny
    if tiny.data is not None:
        return tiny.load(teacher)
    result = synthesis.synthesize_images(
        teacher,
        num_images=tiny.num_samples or 64,
        image_size=input_size.model_image_size(teacher, tiny.image_size),
        steps=job.options["synthesis_steps"],
        seed=tiny.seed,
        verbose=job.verbose,
    )
    return data_lib.TinySet(
        images=result.images, source="data-free synthesis", seed=tiny.seed
    )


def check(options):
    """Checks block dropping's options before any work starts.

    Raises:
        TypeError: If a count is not an integer.
        ValueError: If a value is out of range or not one of the choices.
    """
    validation.check_int("drop", options["drop"], 1)
    validation.check_int("synthesis_steps", options["synthesis_steps"], 1)
    validation.check_int("finalists", options["finalists"], 1)
    validation.check_int(
        "finalist_steps", options["finalist_steps"], 1, allow_none=True
    )
    validation.check_int("finalist_folds", options["finalist_folds"], 1)
    validation.check_fraction(
        "latency_target", options["latency_target"], allow_none=True
    )
    savings_lib.check_source(options["latency"])
    if options["selection"] not in block_sets.RULES:
        raise ValueError(
            f"`selection` must be one of {block_sets.RULES}. "
            f"Received: selection={options['selection']!r}"
        )


def run(model, job, phases):
    """Drops the chosen blocks of `model` and recovers (see `compress()`).

    Args:
        model: The user's model (not modified).
        job: A `base.Job` with block dropping's options.
        phases: Dict to record wall time per phase in.

    Returns:
        A `base.Outcome` with a `CompressionReport`.
    """
    options = job.options
    teacher, candidates, chosen = candidates_lib.working_copy(
        model, job.tiny.image_size, options["blocks"]
    )
    if chosen is None and options["latency_target"] is None:
        block_sets.check_drop(options["drop"], len(candidates))
    with base.timed(phases, "data"):
        tiny_set = _tiny_set(teacher, job)
        _check_labels(teacher, tiny_set)
        recovery.check_method(job.method, tiny_set.labels is not None)
    with base.timed(phases, "teacher features"):
        tiny = dataclasses.replace(job.tiny, data=tiny_set)
        cuts = [] if chosen is not None else scoring.candidate_cuts(teacher, candidates)
        bank, _ = feature_bank.build_bank(teacher, tiny, cuts=cuts, memory=job.memory)
    scores, rounds, auditions = scoring.RecoverabilityReport(), [], []
    rule = None if chosen is not None else selection_rule(job)
    if rule == "shortlist":
        chosen, auditions = _shortlist(teacher, bank, candidates, tiny_set, job, phases)
    elif rule is not None:
        with base.timed(phases, "recoverability"):
            target = options["latency_target"]
            choice = block_sets.choose_blocks(
                teacher, bank, candidates,
                k=None if target is not None else options["drop"],
                rule=rule,
                config=job.train_config(job.steps, bank=bank),
                latency=options["latency"], latency_target=target,
                verbose=job.verbose,
            )
        scores, chosen, rounds = choice.rounds[0], choice.blocks, choice.rounds[1:]
    bank.release()
    with base.timed(phases, "recovery"):
        compressed, curve = recovery.recover(
            teacher, chosen, bank, job.method,
            job.train_config(job.finetune_steps, verbose=job.verbose, bank=bank),
        )
    report = CompressionReport(
        blocks=[b.name for b in chosen],
        labels=[b.label for b in chosen],
        method=job.method,
        scores=scores,
        params=(macs_lib.count_params(teacher), macs_lib.count_params(compressed)),
        macs=(macs_lib.count_macs(teacher), macs_lib.count_macs(compressed)),
        latency_ms=(None, None),
        latency_reduction=None,
        latency_batch_size=0,
        device=None,
        recovery_curve=curve,
        phase_seconds=phases,
        tiny_set={
            "source": tiny_set.source,
            "size": len(tiny_set),
            "labelled": tiny_set.labels is not None,
            "seed": tiny_set.seed,
            "indices": _as_list(tiny_set.indices),
        },
        settings={
            **job.settings, "method": job.method,
            **{k: v for k, v in options.items() if k != "blocks"},
        },
        rounds=rounds,
        auditions=auditions,
        selection=rule,
    )
    return base.Outcome(teacher, compressed, report, tiny_set.images[:8], tiny_set)


def audition_steps(job):
    """Steps of each audition: `finalist_steps`, or a fifth of the
    recovery's."""
    return job.options["finalist_steps"] or max(1, job.finetune_steps // 5)


def selection_rule(job):
    """The rule that chooses the set: `selection`, with `"auto"` resolved.

    `"auto"` auditions a shortlist (`"shortlist"`) when each audition gets
    at least `auditions.MIN_STEPS` steps, and chooses greedily otherwise:
    shorter auditions ranked sets worse than no training did.
    """
    selection = job.options["selection"]
    if selection != "auto":
        return selection
    enough = audition_steps(job) >= auditions_lib.MIN_STEPS
    return "shortlist" if enough else "greedy"


def audition_folds(job, tiny_set):
    """Parts of the tiny set's images the sets are auditioned on:
    `finalist_folds`, or `1` (train on every image, judge on new views of
    them) when `validation_split` already holds images out or there are
    fewer than two images per part."""
    folds = job.options["finalist_folds"]
    if job.tiny.validation_split or len(tiny_set) < 2 * folds:
        return 1
    return folds


def _shortlist(teacher, bank, candidates, tiny_set, job, phases):
    """`selection="shortlist"`: the sets `rank_sets` ranks (at most
    `finalists`), each recovered briefly; returns the winner and the
    auditions.

    With several folds (`audition_folds`), the images are cut into that
    many parts and every set is auditioned once per part: recovered from
    the other parts' images (a bank of their own) and judged on views of
    the part's, which no step of that audition saw; the folds' judgements
    are pooled (`auditions.combine`). When no set's recovery predicts the
    teacher on the held-out parts better than a constant
    (`AuditionReport.informative`), the sets are auditioned again on
    every image and judged on new views of them (the folds are kept in
    the report's `set_aside`). Judged on new views of images it
    trained on, a brief recovery that fits the tiny set looks best: on the
    user-style ResNet of the selection benchmark, the sets whose recovery
    trains the most of the network (docs/results.md, "Choosing blocks by
    brief recoveries").
    """
    options = job.options
    target = options["latency_target"]
    with base.timed(phases, "shortlist"):
        ranked = block_sets.rank_sets(
            teacher, bank, candidates,
            k=None if target is not None else options["drop"],
            latency_target=target, latency=options["latency"],
            max_sets=options["finalists"],
        )
    bank.release()
    steps = audition_steps(job)
    folds = audition_folds(job, tiny_set)
    with base.timed(phases, "auditions"):
        report = None
        if folds > 1:
            report = auditions_lib.combine([
                _audition_fold(teacher, bank, ranked, tiny_set, job, steps, (i, folds))
                for i in range(folds)
            ])
        if report is None or not report.informative():
            # A draw apart from the final fidelity check's views.
            views, _ = job.held_out_views(
                tiny_set, bank.views["eval"].shape[1:3], seed_offset=1
            )
            on_views = auditions_lib.audition(
                teacher, bank, ranked, views, job.method,
                job.train_config(steps, bank=bank), verbose=job.verbose,
            )
            on_views.set_aside = report
            report = on_views
    by_name = {b.name: b for b in candidates}
    return [by_name[n] for n in report.best().blocks], report


def _audition_fold(teacher, bank, ranked, tiny_set, job, steps, fold):
    """Auditions `ranked` trained without the images of `fold` (an
    `(index, folds)` of `views.split_tiny_set`), judged on views of them.

    The fold's bank is planned within what `bank` leaves of the budget.
    """
    memory = job.memory.beside(bank.held_bytes)
    spec = dataclasses.replace(job.tiny, data=tiny_set, fold=fold)
    fold_bank, _ = feature_bank.build_bank(teacher, spec, memory=memory)
    views, _ = job.held_out_views(
        tiny_set, fold_bank.views["eval"].shape[1:3], seed_offset=1, fold=fold
    )
    config = job.train_config(
        steps, activation_memory=memory.training_bytes(fold_bank.held_bytes)
    )
    return auditions_lib.audition(
        teacher, fold_bank, ranked, views, job.method, config, verbose=job.verbose
    )


def _as_list(indices):
    if indices is None:
        return None
    return [str(i) if not isinstance(i, (int, np.integer)) else int(i) for i in indices]


SCHEME = base.Scheme(
    methods=recovery.METHODS, needs_data=False, check=check, run=run
)
