"""Counting figures: proportions with Wilson 95% intervals, top-1 accuracy, per-class
precision/recall/F1 and the confusion matrix.

Predictions are class indices; -1 stands for "no answer" (a photo in which no face was
found): it is wrong for accuracy and recall, and predicts no class, so precision ignores it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile: a two-sided 95% interval
NO_ANSWER = -1  # a predicted index for "no answer"


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for k successes in n trials (Wilson 1927; Newcombe 1998's
    recommended method): unlike the normal approximation it stays inside [0, 1] and keeps
    its coverage for small n and for proportions near 0 or 1. n = 0 gives (0, 1): nothing
    is known."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At k = 0 or k = n one end is exactly 0 or 1; rounding must not move it inside.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Proportion:
    """k of n, with its Wilson 95% interval."""

    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def to_dict(self) -> dict:
        low, high = self.interval
        return {"k": self.k, "n": self.n, "value": self.value if self.n else None, "low": low, "high": high}

    def percent(self) -> str:
        """"89.2% (1070/1200, 87.3-90.8%)": for tables and sentences."""
        if not self.n:
            return "- (0/0)"
        low, high = self.interval
        return f"{100 * self.value:.1f}% ({self.k}/{self.n}, {100 * low:.1f}-{100 * high:.1f}%)"


def _indices(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels and predictions must be 1-D and of one length, got {y.shape} and {p.shape}")
    return y, p


def accuracy(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> Proportion:
    """Top-1 accuracy; a photo without an answer (-1) counts as wrong."""
    y, p = _indices(labels, predicted)
    return Proportion(int(np.sum(y == p)), int(y.size))


def confusion_matrix(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows true classes, columns predicted classes, plus a last column for photos
    without an answer: shape (n_classes, n_classes + 1)."""
    y, p = _indices(labels, predicted)
    if y.size and (y.min() < 0 or y.max() >= n_classes or p.max() >= n_classes or p.min() < NO_ANSWER):
        raise ValueError(f"class indices must be in [0, {n_classes}) (predictions may also be {NO_ANSWER})")
    matrix = np.zeros((n_classes, n_classes + 1), dtype=np.int64)
    np.add.at(matrix, (y, np.where(p == NO_ANSWER, n_classes, p)), 1)
    return matrix


@dataclass(frozen=True)
class ClassFigures:
    """One class's figures: recall is of the photos of this class, precision of the answers
    that named it."""

    name: str
    recall: Proportion  # right answers / photos of the class (no answer counts against it)
    precision: Proportion  # right answers / answers naming the class

    @property
    def f1(self) -> float:
        p, r = self.precision.value, self.recall.value
        if math.isnan(p) or math.isnan(r) or p + r == 0:
            return 0.0
        return 2 * p * r / (p + r)

    def to_dict(self) -> dict:
        return {"recall": self.recall.to_dict(), "precision": self.precision.to_dict(), "f1": self.f1, "support": self.recall.n}


def per_class(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, class_names: Sequence[str]) -> list[ClassFigures]:
    """Precision, recall and F1 of each class, in the model's class order."""
    matrix = confusion_matrix(labels, predicted, len(class_names))
    figures = []
    for i, name in enumerate(class_names):
        right = int(matrix[i, i])
        figures.append(ClassFigures(name, Proportion(right, int(matrix[i].sum())), Proportion(right, int(matrix[:, i].sum()))))
    return figures
