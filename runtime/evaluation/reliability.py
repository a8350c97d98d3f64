"""Does a confidence of 0.9 mean 9 in 10 right? Expected calibration error and the bins of a
reliability diagram, for all answers and for the answers naming each class.

Binning: `DEFAULT_BINS` (15) equal-width bins of the top-class confidence over [0, 1], each
[low, high) and the last one closed, as in Guo et al. 2017 ("On Calibration of Modern Neural
Networks"); ECE is the photo-weighted mean of |accuracy - mean confidence| over the bins.
Equal-width bins are the common choice, so figures compare with published ones; with two
classes the bins below 0.5 stay empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_BINS = 15


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    mean_confidence: float  # nan where n == 0
    accuracy: float  # share right; nan where n == 0

    def to_dict(self) -> dict:
        empty = self.n == 0
        return {
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "mean_confidence": None if empty else self.mean_confidence,
            "accuracy": None if empty else self.accuracy,
        }


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's bins and the expected calibration error they give."""

    bins: tuple[ReliabilityBin, ...]
    n: int
    ece: float  # 0 where n == 0
    mean_confidence: float
    accuracy: float

    @property
    def overconfidence(self) -> float:
        """Mean confidence minus accuracy: > 0 the answers claim more than they deliver."""
        return self.mean_confidence - self.accuracy if self.n else 0.0

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "ece": self.ece,
            "bins_note": f"{len(self.bins)} equal-width bins of the top-class confidence",
            "mean_confidence": self.mean_confidence if self.n else None,
            "accuracy": self.accuracy if self.n else None,
            "bins": [b.to_dict() for b in self.bins],
        }


def _flat(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    if conf.shape != right.shape or conf.ndim != 1:
        raise ValueError(f"confidence and correct must be 1-D and of one length, got {conf.shape} and {right.shape}")
    if conf.size and (np.nanmin(conf) < 0 or np.nanmax(conf) > 1 or np.isnan(conf).any()):
        raise ValueError("confidences must be probabilities in [0, 1]")
    return conf, right


def bin_index(confidence: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Each confidence's bin: [i/B, (i+1)/B), with 1.0 in the last bin."""
    return np.minimum((np.asarray(confidence, dtype=np.float64) * n_bins).astype(np.int64), n_bins - 1)


def reliability(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, n_bins: int = DEFAULT_BINS) -> Reliability:
    """Bins and ECE of answers given with `confidence` (their top-class probability) and
    `correct` (whether each was right)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    conf, right = _flat(confidence, correct)
    which = bin_index(conf, n_bins)
    bins = []
    gap = 0.0
    for i in range(n_bins):
        inside = which == i
        n = int(inside.sum())
        mean_conf = float(conf[inside].mean()) if n else math.nan
        acc = float(right[inside].mean()) if n else math.nan
        if n:
            gap += n * abs(acc - mean_conf)
        bins.append(ReliabilityBin(i / n_bins, (i + 1) / n_bins, n, mean_conf, acc))
    n_all = int(conf.size)
    return Reliability(
        bins=tuple(bins),
        n=n_all,
        ece=gap / n_all if n_all else 0.0,
        mean_confidence=float(conf.mean()) if n_all else math.nan,
        accuracy=float(right.mean()) if n_all else math.nan,
    )


def expected_calibration_error(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """ECE of (N, C) probabilities against true class indices (top-class confidence)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    top = probs.argmax(axis=1)
    return reliability(probs.max(axis=1), top == np.asarray(labels), n_bins).ece


def reliability_per_answer(
    probabilities: np.ndarray, labels: Sequence[int] | np.ndarray, class_names: Sequence[str], n_bins: int = DEFAULT_BINS
) -> dict[str, Reliability]:
    """One reliability diagram per class, of the answers naming it: does "woman 0.9" mean
    the same as "man 0.9"? A class the model over-claims shows bins below the diagonal."""
    probs = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    top = probs.argmax(axis=1) if probs.size else np.zeros(0, dtype=np.int64)
    out = {}
    for i, name in enumerate(class_names):
        named = top == i
        out[name] = reliability(probs[named, i] if probs.size else np.zeros(0), y[named] == i, n_bins)
    return out
