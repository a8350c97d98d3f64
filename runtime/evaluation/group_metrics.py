"""Accuracy per group (race x gender, age band, a user's own groups), with intervals, and the
worst group named with its gap to the best.

A group of 40 photos has a 95% interval some 20 points wide, so ranking tiny groups ranks
noise: only groups of at least `min_n` photos (default 30) are ranked; smaller ones are shown
as "too few to rank", with their interval, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gclf.runtime.evaluation.metrics import Proportion

DEFAULT_MIN_GROUP = 30


@dataclass(frozen=True)
class GroupFigure:
    name: str
    accuracy: Proportion
    ranked: bool  # n >= the table's min_n

    def to_dict(self) -> dict:
        return {"group": self.name, "accuracy": self.accuracy.to_dict(), "ranked": self.ranked}


@dataclass(frozen=True)
class GroupTable:
    grouping: str  # what the groups are, e.g. "race x gender"
    groups: tuple[GroupFigure, ...]  # in the grouping's order, small groups included
    min_n: int
    ungrouped: int  # photos of the set that belong to no group of this grouping

    @property
    def ranked(self) -> list[GroupFigure]:
        return [g for g in self.groups if g.ranked]

    @property
    def too_few(self) -> list[GroupFigure]:
        return [g for g in self.groups if not g.ranked]

    @property
    def worst(self) -> GroupFigure | None:
        """The ranked group with the lowest accuracy (first in the grouping's order on a tie)."""
        ranked = self.ranked
        return min(ranked, key=lambda g: g.accuracy.value) if ranked else None

    @property
    def best(self) -> GroupFigure | None:
        ranked = self.ranked
        return max(ranked, key=lambda g: g.accuracy.value) if ranked else None

    @property
    def gap(self) -> float | None:
        """Best minus worst accuracy of the ranked groups (a share, not points); None with
        fewer than two ranked groups."""
        if len(self.ranked) < 2:
            return None
        return self.best.accuracy.value - self.worst.accuracy.value  # type: ignore[union-attr]

    def sentence(self) -> str:
        """The worst group and its gap to the best, with both intervals; or why there is none."""
        if len(self.ranked) < 2:
            return f"{self.grouping}: fewer than two groups of {self.min_n} or more photos, so no group is ranked"
        worst, best = self.worst, self.best
        assert worst is not None and best is not None
        return (
            f"{self.grouping}: worst {worst.name} {worst.accuracy.percent()}, "
            f"{100 * (self.gap or 0.0):.1f} points below the best, {best.name} {best.accuracy.percent()}"
        )

    def to_dict(self) -> dict:
        worst, best = self.worst, self.best
        return {
            "grouping": self.grouping,
            "min_n": self.min_n,
            "groups": [g.to_dict() for g in self.groups],
            "worst": worst.name if worst and self.gap is not None else None,
            "best": best.name if best and self.gap is not None else None,
            "gap": self.gap,
            "too_few_to_rank": [g.name for g in self.too_few],
            "ungrouped": self.ungrouped,
        }


def accuracy_by_group(
    groups: Sequence[str | None],
    correct: Sequence[bool] | np.ndarray,
    *,
    grouping: str,
    order: Sequence[str] = (),
    min_n: int = DEFAULT_MIN_GROUP,
) -> GroupTable:
    """Each photo's group (None: in no group) and whether it was answered right -> the table.

    Groups come in `order` (names not in it follow, sorted); a name in `order` with no photo
    is left out."""
    right = np.asarray(correct, dtype=bool)
    if len(groups) != right.size:
        raise ValueError(f"{len(groups)} groups for {right.size} outcomes")
    if min_n < 1:
        raise ValueError(f"min_n must be at least 1, got {min_n}")
    counts: dict[str, list[int]] = {}
    for group, ok in zip(groups, right):
        if group is not None:
            tally = counts.setdefault(group, [0, 0])
            tally[0] += int(ok)
            tally[1] += 1
    names = [g for g in order if g in counts] + sorted(g for g in counts if g not in set(order))
    figures = tuple(GroupFigure(g, Proportion(*counts[g]), counts[g][1] >= min_n) for g in names)
    return GroupTable(grouping, figures, min_n, sum(g is None for g in groups))
