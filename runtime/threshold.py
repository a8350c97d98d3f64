"""Which confidence threshold a run answers `unsure` below, and where it came from.

A model may record the threshold it was calibrated for (`gclf.decision`, see
gclf.runtime.metadata); a user may give another (`gclf-infer --min-confidence`,
`Classifier(..., min_confidence=...)`), and 0 turns it off. A model that records none
answers always, as gclf did before `unsure` existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gclf.runtime.errors import UsageError
from gclf.runtime.labels import UNSURE
from gclf.runtime.metadata import Decision, ModelMetadata

# Where a threshold came from: given by the user, recorded in the model, or neither (off).
Origin = Literal["given", "model", "none"]


@dataclass(frozen=True)
class Threshold:
    """Answers whose top confidence is below `min_confidence` are `UNSURE`; 0: never."""

    min_confidence: float
    origin: Origin
    decision: Decision | None = None  # the model's record, when the threshold is the model's

    @property
    def active(self) -> bool:
        return self.min_confidence > 0.0

    def label(self, best: str, confidence: float) -> str:
        """The answer's label: `best`, or `UNSURE` when `confidence` is below the threshold."""
        return UNSURE if confidence < self.min_confidence else best

    def describe(self, option: str = "min_confidence") -> str:
        """One sentence for the start of a run and `--check`: the threshold and its origin;
        `option` is how the user gives another (the command's option or the API's keyword)."""
        if self.origin == "given":
            if not self.active:
                return f"every answer is given, none is {UNSURE} ({option} 0)"
            return f"answers below confidence {self.min_confidence:g} are {UNSURE} ({option} {self.min_confidence:g})"
        if self.origin == "none":
            return f"every answer is given: the model records no confidence threshold (set one with {option})"
        if not self.active:
            return f"every answer is given: the model's recorded decision needs no threshold ({_record(self.decision)}; {option} P sets one)"
        return f"answers below confidence {self.min_confidence:g} are {UNSURE}: the model's recorded decision ({_record(self.decision)}; {option} 0 turns it off)"


def _record(decision: Decision | None) -> str:
    """The model's decision in words: how the threshold was chosen and what it promised."""
    if decision is None:
        return "no details recorded"
    parts = [f"chosen on {decision.chosen_on}", f"{decision.photos} photos"]
    for value, name in ((decision.target_accuracy, "target accuracy"), (decision.accuracy, "accuracy"), (decision.coverage, "coverage")):
        parts.append(f"{name} {value:.3f}")
    return ", ".join(parts) or "no details recorded"


def check_min_confidence(value: float) -> float:
    """`value` as a threshold, or UsageError: a number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UsageError(f"min_confidence must be a number from 0 to 1 (0 turns it off), got {value!r}")
    return float(value)


def resolve_threshold(given: float | None, metadata: ModelMetadata) -> Threshold:
    """The threshold a run uses: `given` (0 turns it off), else the model's recorded one,
    else none (every answer is given)."""
    if given is not None:
        return Threshold(check_min_confidence(given), "given")
    recorded = metadata.min_confidence
    if recorded is None:
        return Threshold(0.0, "none")
    return Threshold(recorded, "model", metadata.decision)


__all__ = ["UNSURE", "Threshold", "check_min_confidence", "resolve_threshold"]
