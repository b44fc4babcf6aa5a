"""Choosing among shortlisted block sets by recovering each one briefly.

Scores measured before recovery (the feature MSE right after dropping, or
after training adaptors only) predict how well a set of blocks recovers
only roughly, and they are measured on the images the adaptors were fitted
on. `"shortlist"` selection asks the question itself: the few best sets by
`block_sets.rank_sets` are each recovered with the chosen recipe for a few
steps (an *audition*), and judged by how close the result stays to the
teacher on views of the tiny set that no training step saw
(`views.held_out_views`, from a seed of their own, so the final fidelity
check is not the one the choice was tuned on). The set that comes closest
is recovered in full.
"""

import dataclasses
import math
import time

from keras_practise.recovery import fidelity as fidelity_lib
from keras_practise.recovery import recipes
from keras_practise.utils import progress
from keras_practise.utils import text_table

# What auditions are judged by: a `Fidelity` attribute, lower is better.
CRITERION = "feature_error"


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
    """

    blocks: list
    labels: list
    dropped_mse: float
    reduction: float
    fidelity: object
    seconds: float

    @property
    def error(self):
        """The judged error (`CRITERION`); `inf` when not a finite number."""
        value = getattr(self.fidelity, CRITERION)
        return value if value is not None and math.isfinite(value) else math.inf


class AuditionReport(list):
    """`Audition`s in shortlist order, printable as a table."""

    def best(self):
        """The audition with the lowest error (the earliest of equals)."""
        return min(self, key=lambda a: a.error)

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
                "chosen" if a is best else "",
            ))
        return text_table.format_table(rows, right_aligned=range(1, 7))

    def __str__(self):
        return self.table()


def _number(value):
    return "-" if value is None else f"{value:.4g}"


def audition(model, bank, shortlist, views, method="mimic", config=None, verbose=0):
    """Recovers each shortlisted set briefly and measures it on `views`.

    Args:
        model: The original model (not modified).
        bank: The `feature_bank.FeatureBank` of `model` (its cached cut
            activations may be released: recovery needs none).
        shortlist: `block_sets.CandidateSet`s, in the order to audition.
        views: Views no training step saw (`views.held_out_views`).
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
        recovered, _ = recipes.recover(model, candidate.blocks, bank, method, config)
        report.append(Audition(
            blocks=[b.name for b in candidate.blocks],
            labels=[b.label for b in candidate.blocks],
            dropped_mse=candidate.dropped_mse,
            reduction=candidate.reduction,
            fidelity=fidelity_lib.estimate(
                model, recovered, views, reference=reference
            ),
            seconds=time.perf_counter() - start,
        ))
        progbar.update(i + 1, [("error", report[-1].error)])
    return report
