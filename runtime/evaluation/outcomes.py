"""One model's answers on a labelled set: the arrays every figure of an evaluation comes from."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from gclf.runtime.evaluation.metrics import NO_ANSWER


@dataclass(frozen=True)
class Outcomes:
    """Per photo: its true class and the model's probabilities.

    A faces model answers a photo with its largest face's probabilities; a photo in which no
    face was found has a row of NaN (`answered` False): it is counted apart, and as wrong in
    the overall accuracy. Files that could not be read are not in the arrays (`unreadable`).
    """

    model: str  # the model file's name
    variant: str  # "fp32" or "int8", from its metadata
    class_names: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: np.ndarray  # (N,) int64 true class index, in the model's class order
    probabilities: np.ndarray  # (N, C) float64; NaN rows: no answer
    faces: bool  # faces were detected (then `answered` False means no face found)
    detector: str | None = None  # the face detector's name
    unreadable: tuple[tuple[Path, str], ...] = ()  # (file, why) left out
    calibration: str | None = None  # how the probabilities were calibrated; None: as the model gave them

    def __post_init__(self) -> None:
        n = len(self.paths)
        if self.labels.shape != (n,) or self.probabilities.shape != (n, len(self.class_names)):
            raise ValueError(f"{n} paths need ({n},) labels and ({n}, {len(self.class_names)}) probabilities, got {self.labels.shape} and {self.probabilities.shape}")

    @property
    def n(self) -> int:
        return len(self.paths)

    @property
    def answered(self) -> np.ndarray:
        return ~np.isnan(self.probabilities).any(axis=1)

    @property
    def predicted(self) -> np.ndarray:
        """Class index of each answer, NO_ANSWER (-1) where there is none."""
        filled = np.where(self.answered[:, None], self.probabilities, -1.0)
        return np.where(self.answered, filled.argmax(axis=1), NO_ANSWER).astype(np.int64)

    @property
    def confidence(self) -> np.ndarray:
        """Top-class probability of each answer; NaN where there is none."""
        return np.where(self.answered, np.nan_to_num(self.probabilities, nan=0.0).max(axis=1), np.nan)

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Outcomes":
        idx = np.asarray(indices, dtype=np.int64)
        return replace(self, paths=tuple(self.paths[i] for i in idx), labels=self.labels[idx], probabilities=self.probabilities[idx])

    def with_probabilities(self, probabilities: np.ndarray, calibration: str) -> "Outcomes":
        """The same photos with other probabilities (calibrated); unanswered rows stay NaN."""
        probs = np.where(self.answered[:, None], probabilities, np.nan)
        return replace(self, probabilities=probs, calibration=calibration)
