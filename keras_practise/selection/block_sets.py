"""Choosing which set of blocks to drop.

Blocks are dropped together and their damage compounds: two neighbours that
each recover well alone can be hard to recover together. The default rule is
therefore greedy *conditional* recoverability (`choose_blocks`): the first
block is the one with the lowest recoverability score; every further block
is chosen by scoring each remaining candidate again, dropped together with
the blocks already chosen (the whole set's adaptors trained, the set's MSE
divided by the set's latency reduction). That costs one scoring pass over
the remaining candidates per chosen block. The rules it is compared with:
`"independent"` (the k lowest single-block scores) and `"one_per_stage"`
(the same, at most one block per stage while stages last; the earlier
paper's constraint).

`rank_sets` ranks whole sets without any training, by the feature MSE right
after dropping the set together, per latency saved: the shortlist that
`"shortlist"` selection (`recovery/auditions.py`) recovers briefly.
"""

import dataclasses
import itertools
import math
import warnings

from keras_practise.distillation import trainer
from keras_practise.selection import recoverability as scoring
from keras_practise.selection import savings as savings_lib
from keras_practise.selection import switched
from keras_practise.utils import validation

RULES = ("auto", "shortlist", "greedy", "independent", "one_per_stage")
# The rules that train adaptors per candidate (`choose_blocks`).
SCORING_RULES = RULES[2:]


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
    check_target(drop, latency_target, len(candidates))
    by_name = {b.name: b for b in candidates}
    ranked = [by_name[s.block] for s in report.best(len(report))]
    chosen, reduction = [], None
    for block in ranked:
        chosen.append(block)
        done, reduction = _reached(model, chosen, drop, latency_target, latency)
        if done:
            break
    else:
        _warn_short(reduction, latency_target)
    return _network_order(chosen, candidates), reduction


def _reached(model, chosen, k, latency_target, latency):
    """Whether `chosen` meets the target, and its combined latency cut.

    The cut is measured only for a `latency_target` (else `None`).
    """
    if k is not None:
        return len(chosen) == k, None
    reduction = combined_reduction(model, chosen, latency)
    return reduction >= latency_target, reduction


def _network_order(chosen, candidates):
    order = {b.name: i for i, b in enumerate(candidates)}
    return sorted(chosen, key=lambda b: order[b.name])


def _warn_short(reduction, latency_target):
    warnings.warn(
        f"Dropping every candidate saves {100 * reduction:.1f}%, short of "
        f"latency_target={latency_target}.",
        stacklevel=3,
    )


def check_target(drop, latency_target, available):
    """Raises `ValueError` unless exactly one valid target is given.

    Args:
        drop: Number of blocks to drop, or `None`.
        latency_target: Fraction of the latency to remove, or `None`.
        available: Number of candidate blocks.
    """
    if (drop is None) == (latency_target is None):
        raise ValueError(
            "Pass exactly one of `drop` and `latency_target`. Received: "
            f"drop={drop}, latency_target={latency_target}"
        )
    if drop is not None:
        check_drop(drop, available)
    else:
        validation.check_fraction("latency_target", latency_target)


@dataclasses.dataclass
class SetChoice:
    """The blocks `choose_blocks` chose and the scores it chose them by.

    Attributes:
        blocks: The chosen `Block`s, in network order.
        rule: The rule used (one of `RULES`).
        rounds: `RecoverabilityReport`s, one per scoring pass: the first
            scores every candidate alone; with `"greedy"`, round `i + 1`
            scores the remaining candidates each dropped together with the
            `i` blocks chosen before (MSE and latency cut of the whole set).
        reduction: For `latency_target`, the combined reduction reached
            (else `None`).
    """

    blocks: list
    rule: str
    rounds: list
    reduction: float = None


def choose_blocks(
    model,
    bank,
    candidates,
    k=None,
    rule="greedy",
    config=None,
    latency="macs",
    latency_target=None,
    report=None,
    verbose=0,
):
    """Chooses a set of blocks to drop together.

    Args:
        model: The original model (not modified).
        bank: A `feature_bank.FeatureBank` built on `model`.
        candidates: The `Block`s to choose from.
        k: Number of blocks to drop (or pass `latency_target`).
        rule: `"greedy"` (conditional recoverability, the default),
            `"independent"` (the k best single-block scores) or
            `"one_per_stage"` (independent, at most one block per stage
            while stages last).
        config: A `trainer.TrainConfig` for the adaptor training. Defaults
            to `TrainConfig(steps=200)`.
        latency: `"measured"` or `"macs"`: how latency reductions are
            assessed. Defaults to `"macs"`.
        latency_target: Fraction of the latency to remove instead of `k`:
            blocks are added until dropping them together saves at least
            that much.
        report: Optional `RecoverabilityReport` of `candidates` already
            computed with the same bank and config (the first round).
        verbose: 0 silent, 1 progress bars.

    Returns:
        A `SetChoice`.

    Raises:
        ValueError: If `rule` is unknown, or neither or both of `k` and
            `latency_target` are given, or they are out of range.

    Example:

    ```python
    bank, _ = feature_bank.build_bank(model, images)
    choice = choose_blocks(model, bank, blocks.find_blocks(model), k=2)
    print([b.label for b in choice.blocks], choice.rounds[-1])
    ```
    """
    if rule not in SCORING_RULES:
        raise ValueError(
            f"`rule` must be one of {SCORING_RULES}. Received: rule={rule!r}"
        )
    check_target(k, latency_target, len(candidates))
    config = config or trainer.TrainConfig(steps=200)
    # One pool for every round: its students are traced once for all sets.
    pool = (
        scoring.student_pool(model, candidates, bank, config)
        if switched.pays_off(config) else None
    )
    if report is None:
        report = scoring.score_blocks(
            model, candidates, bank, config, latency, verbose, pool=pool
        )
    rounds = [report]
    if rule == "independent":
        chosen, reduction = select_blocks(
            model, candidates, report, k, latency_target, latency
        )
        return SetChoice(chosen, rule, rounds, reduction)
    by_name = {b.name: b for b in candidates}
    reductions = {s.block: s.latency_reduction for s in report}
    ranked = [by_name[s.block] for s in report.best(len(report))]
    chosen, names, reduction = [], set(), None
    while len(chosen) < len(candidates):
        if rule == "one_per_stage":
            stages = {b.stage for b in chosen}
            rest = [b for b in ranked if b.name not in names]
            block = next((b for b in rest if b.stage not in stages), rest[0])
        elif not chosen:
            block = ranked[0]
        else:
            remaining = [b for b in candidates if b.name not in names]
            base = sum(reductions[b.name] for b in chosen)
            rounds.append(
                scoring.score_blocks(
                    model, remaining, bank, config, latency, verbose,
                    reductions=[base + reductions[b.name] for b in remaining],
                    dropped=chosen, pool=pool,
                )
            )
            block = by_name[rounds[-1].best(1)[0].block]
        chosen.append(block)
        names.add(block.name)
        done, reduction = _reached(model, chosen, k, latency_target, latency)
        if done:
            break
    else:
        _warn_short(reduction, latency_target)
    return SetChoice(_network_order(chosen, candidates), rule, rounds, reduction)


def check_drop(drop, available):
    """Raises `ValueError` unless `1 <= drop <= available`."""
    validation.check_int("drop", drop)
    if drop > available:
        raise ValueError(
            f"`drop` is larger than the number of droppable blocks "
            f"({available}). Received: drop={drop}"
        )


@dataclasses.dataclass
class CandidateSet:
    """A set of blocks dropped together, before any training.

    Attributes:
        blocks: The `Block`s, in network order.
        dropped_mse: Relative feature MSE right after dropping them
            (`recoverability.dropped_mse`).
        reduction: Latency (or MACs) saved, as the sum of the members'
            single-block savings (exact for MACs).
    """

    blocks: list
    dropped_mse: float
    reduction: float

    @property
    def score(self):
        """`dropped_mse / reduction`, lower is better; `inf` when not finite."""
        value = self.dropped_mse / self.reduction if self.reduction > 0 else math.inf
        return value if math.isfinite(value) else math.inf


def rank_sets(
    model, bank, candidates, k=None, latency_target=None, latency="macs",
    max_sets=20, reductions=None,
):
    """Ranks sets of candidates to drop together, without training.

    Each single candidate is dropped and scored first (`CandidateSet.score`);
    the sets are then the `k`-combinations of the fewest best-scored
    candidates that give at least `max_sets` of them (all of them when
    there are few), each dropped together and scored alike, and the best
    `max_sets` are returned. With
    `latency_target`, `k` is the fewest blocks whose summed savings can
    reach it, and only sets that reach it are ranked.

    Args:
        model: The original model (not modified).
        bank: A `feature_bank.FeatureBank` built on `model`, not released.
        candidates: The `Block`s to choose from, in network order.
        k: Number of blocks per set (or pass `latency_target`).
        latency_target: Fraction of the latency the set must save.
        latency: How savings are assessed (see `savings.savings`).
        max_sets: Most sets returned. Defaults to `20`.
        reductions: Optional single-block savings of `candidates`.

    Returns:
        A list of `CandidateSet`s, best score first (ties in network order).

    Raises:
        ValueError: If the target is invalid or `max_sets < 1`.
    """
    check_target(k, latency_target, len(candidates))
    validation.check_int("max_sets", max_sets)
    if reductions is None:
        reductions = scoring.latency_reductions(model, candidates, latency)
    saving = {b.name: r for b, r in zip(candidates, reductions)}
    singles = [
        CandidateSet([b], scoring.dropped_mse(model, [b], bank), saving[b.name])
        for b in candidates
    ]
    if k is None:
        largest = sorted(reductions, reverse=True)
        k = next(
            (i + 1 for i in range(len(largest))
             if sum(largest[: i + 1]) >= latency_target),
            len(candidates),
        )
        if sum(largest) < latency_target:
            _warn_short(sum(largest), latency_target)
    ranked = [s.blocks[0] for s in sorted(singles, key=lambda s: s.score)]
    if k == 1:
        sets = [s for s in singles if _reaches(s, latency_target)] or singles
        return sorted(sets, key=lambda s: s.score)[:max_sets]
    size = pool_size(len(ranked), k, max_sets)
    combos = _reaching(ranked, size, k, saving, latency_target, max_sets)
    sets = [
        CandidateSet(
            blocks, scoring.dropped_mse(model, blocks, bank),
            sum(saving[b.name] for b in blocks),
        )
        for blocks in (_network_order(c, candidates) for c in combos)
    ]
    return sorted(sets, key=lambda s: s.score)[:max_sets]


def pool_size(count, k, max_sets):
    """How many of `count` best-scored single blocks `rank_sets` combines:
    the fewest whose `k`-combinations number at least `max_sets` (all of
    them when there are fewer)."""
    size = k
    while size < count and math.comb(size, k) < max_sets:
        size += 1
    return size


def _reaches(candidate_set, latency_target):
    return latency_target is None or candidate_set.reduction >= latency_target


def _reaching(ranked, size, k, saving, latency_target, wanted):
    """The `k`-combinations of the first `size` of `ranked` that reach the
    target; the pool grows until `wanted` of them do, or every candidate
    is in it (when none reaches, the best `k`)."""
    while True:
        combos = [
            c for c in itertools.combinations(ranked[:size], k)
            if latency_target is None
            or sum(saving[b.name] for b in c) >= latency_target
        ]
        if len(combos) >= wanted or size >= len(ranked):
            return combos or [tuple(ranked[:k])]
        size += 1
