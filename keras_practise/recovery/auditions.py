"""Choosing among shortlisted block sets by recovering each one briefly.

Scores measured before recovery (the feature MSE right after dropping, or
after training adaptors only) predict how well a set of blocks recovers
only roughly, and they are measured on the images the adaptors were fitted
on. `"shortlist"` selection asks the question itself: the few best sets by
`block_sets.rank_sets` are each recovered with the chosen recipe for a few
steps (an *audition*), and judged by how close the result stays to the
teacher on views of the tiny set that no training step saw
(`views.held_out_views`, from a seed of their own, so the final fidelity
check is not the one the choice was tuned on) and on blends of two such
views (`views.blended_views`): the highest top-1 agreement with the teacher
on the two together, ties broken by the lower output error on the views
(the output error alone for outputs that are not class scores). The set
that comes closest is recovered in full.

Why those and not the feature MSE the recovery minimises: on the selection
benchmark (docs/results.md, "Choosing blocks by brief recoveries") the
agreement after 100 audition steps ranked the sets' final accuracy better
than the feature error did, and auditions much shorter than 100 steps
ranked them worse than no training at all (their runs were rejected by the
recovery's no-worse check, leaving the sets as merely dropped):
`MIN_STEPS`. Why the blends: new crops of the images a brief recovery was
fitted on favour the sets whose recovery fits those images best; on the
user-style ResNet that picked a set 1.44 points below the best on average,
blends 0.20 (docs/results.md, "Judging auditions on blended views").
"""

import dataclasses
import math
import time

import numpy as np

from keras_practise.data import views as views_lib
from keras_practise.recovery import fidelity as fidelity_lib
from keras_practise.recovery import recipes
from keras_practise.utils import progress
from keras_practise.utils import text_table

# Below this many steps per audition, `selection="auto"` chooses greedily
# instead: on the VGG-style net of the selection benchmark, 25- and 50-step
# auditions ranked the sets against their final accuracy (Spearman -0.62
# and -0.53), 100-step ones with it (+0.91).
MIN_STEPS = 100

# Pairings of the audition views blended: a brief recovery far from its
# teacher agrees with it on few blends, and one pairing of ~300 views left
# that too noisy to rank by (the selection benchmark's VGG-style net).
BLEND_PAIRINGS = 4


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
        blend_agreement: Mean top-1 agreement with the teacher on blends of
            the audition views (`views.blended_views`, `BLEND_PAIRINGS`
            pairings), `None` for outputs that are not class scores.
    """

    blocks: list
    labels: list
    dropped_mse: float
    reduction: float
    fidelity: object
    seconds: float
    trained: bool = True
    blend_agreement: float = None

    @property
    def rank(self):
        """The sort key, lower is better (`rank_key`)."""
        return rank_key(
            self.fidelity.agreement, self.fidelity.output_error,
            self.blend_agreement,
        )


def rank_key(agreement, output_error, blend_agreement=None):
    """How auditions are compared, lower is better: `(-(agreement +
    blend agreement), output error)`, an agreement `None` (no class scores)
    counting as 0; a value that is not a finite number counts as the worst."""
    total = sum(
        _finite(0.0 if a is None else a, -math.inf)
        for a in (agreement, blend_agreement)
    )
    return (-total, _finite(output_error))


def _finite(value, worst=math.inf):
    return value if value is not None and math.isfinite(value) else worst


class AuditionReport(list):
    """`Audition`s in shortlist order, printable as a table."""

    def best(self):
        """The audition closest to the teacher (`Audition.rank`; the
        earliest of equals)."""
        return min(self, key=lambda a: a.rank)

    def table(self):
        """Formats the auditions as a text table."""
        best = self.best() if self else None
        rows = [(
            "blocks", "mse(dropped)", "saved", "feature error", "output error",
            "agreement", "on blends", "seconds", "",
        )]
        for a in self:
            agreement = a.fidelity.agreement
            rows.append((
                "+".join(a.labels),
                f"{a.dropped_mse:.4g}",
                f"{100 * a.reduction:.2f}%",
                _number(a.fidelity.feature_error),
                _number(a.fidelity.output_error),
                _percent(agreement),
                _percent(a.blend_agreement),
                f"{a.seconds:.1f}",
                ("chosen" if a is best else "")
                + ("" if a.trained else " (not trained: every run rejected)"),
            ))
        return text_table.format_table(rows, right_aligned=range(1, 8))

    def __str__(self):
        return self.table()


def _number(value):
    return "-" if value is None else f"{value:.4g}"


def _percent(value):
    return "-" if value is None else f"{100 * value:.1f}%"


def audition(
    model, bank, shortlist, views, method="mimic", config=None, verbose=0, seed=0
):
    """Recovers each shortlisted set briefly and measures it on `views`
    and on blends of them.

    Args:
        model: The original model (not modified).
        bank: The `feature_bank.FeatureBank` of `model` (its cached cut
            activations may be released: recovery needs none).
        shortlist: `block_sets.CandidateSet`s, in the order to audition.
        views: Views no training step saw (`views.held_out_views`).
        method: The recovery recipe (`recipes.METHODS`).
        config: The `TrainConfig` of each brief recovery.
        verbose: 0 silent, 1 a progress bar over the sets.
        seed: Seed of the blends' pairings.

    Returns:
        An `AuditionReport`; `.best()` is the set to recover in full.
    """
    report = AuditionReport()
    reference = fidelity_lib.outputs(model, views)
    # One pairing's blends at a time: each is as large as `views`.
    pairings = [seed * BLEND_PAIRINGS + i for i in range(BLEND_PAIRINGS)]
    blend_references = [
        fidelity_lib.outputs(model, views_lib.blended_views(views, p))
        for p in pairings
    ]
    progbar = progress.progbar(len(shortlist), verbose, unit_name="set")
    for i, candidate in enumerate(shortlist):
        start = time.perf_counter()
        recovered, curve = recipes.recover(
            model, candidate.blocks, bank, method, config
        )
        fidelity = fidelity_lib.estimate(model, recovered, views, reference=reference)
        on_blends = [
            fidelity_lib.estimate(
                model, recovered, views_lib.blended_views(views, p), reference=r
            ).agreement
            for p, r in zip(pairings, blend_references)
        ]
        blend_agreement = None if None in on_blends else float(np.mean(on_blends))
        report.append(Audition(
            blocks=[b.name for b in candidate.blocks],
            labels=[b.label for b in candidate.blocks],
            dropped_mse=candidate.dropped_mse,
            reduction=candidate.reduction,
            fidelity=fidelity,
            seconds=time.perf_counter() - start,
            trained=bool(curve) or method == "none",
            blend_agreement=blend_agreement,
        ))
        progbar.update(i + 1, [("agreement", -report[-1].rank[0] / 2)])
    return report
