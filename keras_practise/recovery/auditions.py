"""Choosing among shortlisted block sets by recovering each one briefly.

Scores measured before recovery (the feature MSE right after dropping, or
after training adaptors only) predict how well a set of blocks recovers
only roughly, and they are measured on the images the adaptors were fitted
on. `"shortlist"` selection asks the question itself: the few best sets by
`block_sets.rank_sets` are each recovered with the chosen recipe for a few
steps (an *audition*), and judged by how close the result stays to the
teacher on views of the tiny set that no training step saw
(`views.held_out_views`, from a seed of their own, so the final fidelity
check is not the one the choice was tuned on): the highest top-1 agreement
with the teacher, ties broken by the lower output error (the output error
alone for outputs that are not class scores). The set that comes closest
is recovered in full.

Why those and not the feature MSE the recovery minimises: on the selection
benchmark (docs/results.md, "Choosing blocks by brief recoveries") the
agreement after 100 audition steps ranked the sets' final accuracy better
than the feature error did, and auditions much shorter than 100 steps
ranked them worse than no training at all (their runs were rejected by the
recovery's no-worse check, leaving the sets as merely dropped):
`MIN_STEPS`.
"""

import dataclasses
import math
import time

from keras_practise.recovery import fidelity as fidelity_lib
from keras_practise.recovery import recipes
from keras_practise.utils import progress
from keras_practise.utils import text_table

# Below this many steps per audition, `selection="auto"` chooses greedily
# instead: on the VGG-style net of the selection benchmark, 25- and 50-step
# auditions ranked the sets against their final accuracy (Spearman -0.62
# and -0.53), 100-step ones with it (+0.91).
MIN_STEPS = 100


@dataclasses.dataclass
class Audition:
    """One shortlisted set, recovered briefly.

    Attributes:
        blocks: Names of the blocks dropped together, in network order.
        labels: Their `stage.position` labels.
        dropped_mse: Relative feature MSE right after dropping, before any
            training (what shortlisted the set).
        reduction: Latency (or MACs) saved, a fraction.
        fidelity: The `Fidelity` of the briefly recovered model on the
            audition views.
        seconds: Wall time of the audition.
        trained: Whether the brief recovery was kept; `False` when every
            learning rate diverged or ended worse than it started, and the
            set was judged as merely dropped.
    """

    blocks: list
    labels: list
    dropped_mse: float
    reduction: float
    fidelity: object
    seconds: float
    trained: bool = True

    @property
    def rank(self):
        """The sort key, lower is better (`rank_key`)."""
        return rank_key(self.fidelity.agreement, self.fidelity.output_error)


def rank_key(agreement, output_error):
    """How auditions are compared, lower is better: `(-agreement, output
    error)`, agreement `None` (no class scores) counting as 0; a value
    that is not a finite number counts as the worst."""
    agreement = 0.0 if agreement is None else agreement
    return (-_finite(agreement, -math.inf), _finite(output_error))


def beats_a_constant(output_error):
    """Whether an output error (relative to the teacher's output variance)
    is below that of a constant at the teacher's mean output, i.e. 1."""
    return _finite(output_error) < 1.0


def _finite(value, worst=math.inf):
    return value if value is not None and math.isfinite(value) else worst


class AuditionReport(list):
    """`Audition`s in shortlist order, printable as a table.

    Args:
        auditions: The `Audition`s.
        folds: How many parts of the tiny set's images the sets were
            auditioned on, each judged on the images its part left out
            (`combine`); `1`: trained on every image, judged on new views
            of them.
        set_aside: The cross-fitted auditions these replaced because they
            could not tell the sets apart (`informative`), or `None`.
    """

    def __init__(self, auditions=(), folds=1, set_aside=None):
        super().__init__(auditions)
        self.folds = folds
        self.set_aside = set_aside

    def informative(self):
        """Whether some set's brief recovery predicts the teacher on the
        judging views better than a constant at the teacher's mean output
        (output error below 1, `fidelity.Fidelity`).

        On images the auditions never trained on, brief recoveries of a
        network that needs a long one can all be worse than that: on the
        selection benchmark's plain VGG-style net (output errors 1.01-1.63
        on the held-out halves; 0.14-0.88 on the other two models) their
        agreement there was near chance and ranked the sets by noise.
        """
        return any(beats_a_constant(a.fidelity.output_error) for a in self)

    def best(self):
        """The audition closest to the teacher (`Audition.rank`; the
        earliest of equals)."""
        return min(self, key=lambda a: a.rank)

    def table(self):
        """Formats the auditions as a text table."""
        best = self.best() if self else None
        rows = [(
            "blocks", "mse(dropped)", "saved", "feature error", "output error",
            "agreement", "seconds", "",
        )]
        for a in self:
            agreement = a.fidelity.agreement
            rows.append((
                "+".join(a.labels),
                f"{a.dropped_mse:.4g}",
                f"{100 * a.reduction:.2f}%",
                _number(a.fidelity.feature_error),
                _number(a.fidelity.output_error),
                "-" if agreement is None else f"{100 * agreement:.1f}%",
                f"{a.seconds:.1f}",
                ("chosen" if a is best else "")
                + ("" if a.trained else " (not trained: every run rejected)"),
            ))
        return text_table.format_table(rows, right_aligned=range(1, 7))

    def __str__(self):
        return self.table()


def _number(value):
    return "-" if value is None else f"{value:.4g}"


def combine(reports):
    """The auditions of one shortlist in several folds, as one report.

    Each set's fidelities are pooled over the folds' judging views
    (`fidelity.pool`) and its seconds summed; it counts as trained when
    any fold's brief recovery was kept.

    Args:
        reports: `AuditionReport`s of the same sets in the same order, one
            per fold.

    Returns:
        An `AuditionReport` with `folds` set to the number of reports.
    """
    combined = AuditionReport(folds=len(reports))
    for parts in zip(*reports, strict=True):
        combined.append(dataclasses.replace(
            parts[0],
            fidelity=fidelity_lib.pool([a.fidelity for a in parts]),
            seconds=sum(a.seconds for a in parts),
            trained=any(a.trained for a in parts),
        ))
    return combined


def audition(model, bank, shortlist, views, method="mimic", config=None, verbose=0):
    """Recovers each shortlisted set briefly and measures it on `views`.

    Args:
        model: The original model (not modified).
        bank: The `feature_bank.FeatureBank` of `model` (its cached cut
            activations may be released: recovery needs none).
        shortlist: `block_sets.CandidateSet`s, in the order to audition.
        views: Views no training step saw (`views.held_out_views`); of
            images the bank holds out (`bank.held_out`), or new views of
            its training images.
        method: The recovery recipe (`recipes.METHODS`).
        config: The `TrainConfig` of each brief recovery.
        verbose: 0 silent, 1 a progress bar over the sets.

    Returns:
        An `AuditionReport`; `.best()` is the set to recover in full.
    """
    report = AuditionReport()
    reference = fidelity_lib.outputs(model, views)
    progbar = progress.progbar(len(shortlist), verbose, unit_name="set")
    for i, candidate in enumerate(shortlist):
        start = time.perf_counter()
        recovered, curve = recipes.recover(
            model, candidate.blocks, bank, method, config
        )
        report.append(Audition(
            blocks=[b.name for b in candidate.blocks],
            labels=[b.label for b in candidate.blocks],
            dropped_mse=candidate.dropped_mse,
            reduction=candidate.reduction,
            fidelity=fidelity_lib.estimate(
                model, recovered, views, reference=reference,
                unseen_images=bank.held_out,
            ),
            seconds=time.perf_counter() - start,
            trained=bool(curve) or method == "none",
        ))
        progbar.update(i + 1, [("agreement", -report[-1].rank[0])])
    return report
