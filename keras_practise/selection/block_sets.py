"""Choosing which blocks to drop from their recoverability scores."""

import warnings

from keras_practise.selection import savings as savings_lib
from keras_practise.utils import validation


def combined_reduction(model, blocks, source="measured", batch_size=8, runs=20):
    """Fraction of latency (or MACs) saved by dropping `blocks` together.

    Args:
        model: The original model.
        blocks: `Block`s of `model`.
        source: `"measured"`, `"macs"`, a runtime name or a callable (see
            `recoverability.latency_reductions`).
        batch_size: Batch size of the latency measurement.
        runs: Timed runs per model.

    Returns:
        The reduction as a fraction of the original.
    """
    return savings_lib.savings(model, [blocks], source, batch_size, runs)[0]


def select_blocks(
    model, candidates, report, drop=None, latency_target=None, latency="measured"
):
    """Picks the blocks to drop: lowest recoverability score first.

    Args:
        model: The original model.
        candidates: The scored `Block`s, in the order of `report`.
        report: A `RecoverabilityReport` for `candidates`.
        drop: Number of blocks to drop.
        latency_target: Fraction of the latency to remove instead (e.g.
            `0.2`): blocks are added in score order until dropping them
            together saves at least that much.
        latency: How the combined saving is measured for `latency_target`:
            `"measured"` or `"macs"`.

    Returns:
        A tuple `(blocks, reduction)`: the chosen `Block`s in network order,
        and for `latency_target` the combined reduction reached (else
        `None`).

    Raises:
        ValueError: If neither or both of `drop` and `latency_target` are
            given, or they are out of range.
    """
    if (drop is None) == (latency_target is None):
        raise ValueError(
            "Pass exactly one of `drop` and `latency_target`. Received: "
            f"drop={drop}, latency_target={latency_target}"
        )
    by_name = {b.name: b for b in candidates}
    ranked = [by_name[s.block] for s in report.best(len(report))]
    order = {b.name: i for i, b in enumerate(candidates)}
    if drop is not None:
        check_drop(drop, len(candidates))
        chosen = ranked[:drop]
        return sorted(chosen, key=lambda b: order[b.name]), None
    validation.check_fraction("latency_target", latency_target)
    chosen, reduction = [], 0.0
    for block in ranked:
        chosen.append(block)
        reduction = combined_reduction(model, chosen, latency)
        if reduction >= latency_target:
            break
    else:
        warnings.warn(
            f"Dropping every candidate saves {100 * reduction:.1f}%, short of "
            f"latency_target={latency_target}.",
            stacklevel=2,
        )
    return sorted(chosen, key=lambda b: order[b.name]), reduction


def check_drop(drop, available):
    """Raises `ValueError` unless `1 <= drop <= available`."""
    validation.check_int("drop", drop)
    if drop > available:
        raise ValueError(
            f"`drop` is larger than the number of droppable blocks "
            f"({available}). Received: drop={drop}"
        )
