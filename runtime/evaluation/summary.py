"""All figures of one evaluation, computed once from a model's outcomes, and their JSON form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gclf.runtime.evaluation.coverage import (
    REPORTED_ACCURACIES,
    REPORTED_COVERAGES,
    CoveragePoint,
    at_coverage,
    at_threshold,
    coverage_curve,
    for_accuracy,
)
from gclf.runtime.evaluation.group_metrics import DEFAULT_MIN_GROUP, GroupTable, accuracy_by_group
from gclf.runtime.evaluation.groups import Grouping
from gclf.runtime.evaluation.metrics import ClassFigures, Proportion, accuracy, confusion_matrix, per_class
from gclf.runtime.evaluation.outcomes import Outcomes
from gclf.runtime.evaluation.reliability import DEFAULT_BINS, Reliability, reliability, reliability_per_answer

NO_FACE_NOTE = "photos in which no face was found count as wrong in the overall accuracy and per-class recall"
COVERAGE_NOTE = "coverage is of the photos with an answer (a face found); photos without one are left out of it"


@dataclass(frozen=True)
class Evaluation:
    outcomes: Outcomes
    overall: Proportion  # every photo; no answer counts as wrong
    on_answered: Proportion  # photos with an answer only
    classes: list[ClassFigures]
    confusion: np.ndarray  # (C, C + 1): rows true, columns predicted, last column no answer
    reliability: Reliability  # of the answers
    reliability_per_answer: dict[str, Reliability]
    curve: list[CoveragePoint]  # the whole accuracy-coverage curve of the answers
    coverage_points: dict[float, CoveragePoint]  # target coverage -> its point, for REPORTED_COVERAGES
    accuracy_points: dict[float, CoveragePoint | None]  # target accuracy -> the most answers reaching it (None: none does)
    min_confidence: CoveragePoint | None  # answering only at confidence >= the user's threshold
    groups: list[GroupTable]

    @property
    def n_no_answer(self) -> int:
        return int((~self.outcomes.answered).sum())

    def answers(self) -> list[dict]:
        """Each photo's true class, answer, confidence and probabilities (None where it got no
        answer): what a later study needs to recompute any figure."""
        o = self.outcomes
        names = o.class_names
        return [
            {
                "path": str(path),
                "true": names[y],
                "answer": names[k] if k >= 0 else None,
                "confidence": None if k < 0 else float(row[k]),
                "probabilities": None if k < 0 else dict(zip(names, map(float, row))),
            }
            for path, y, k, row in zip(o.paths, o.labels, o.predicted, o.probabilities)
        ]

    def to_dict(self, *, with_answers: bool = False) -> dict:
        """Every figure; `with_answers` adds each photo's answer (large: one entry per photo)."""
        o = self.outcomes
        names = list(o.class_names)
        return {
            "model": o.model,
            "variant": o.variant,
            "calibration": o.calibration,
            "classes": names,
            "photos": o.n,
            "unreadable": [{"path": str(p), "reason": r} for p, r in o.unreadable],
            "faces": o.faces,
            "detector": o.detector,
            "answered": o.n - self.n_no_answer,
            "no_face": self.n_no_answer if o.faces else None,
            "notes": [NO_FACE_NOTE, COVERAGE_NOTE] if o.faces else [],
            "accuracy": self.overall.to_dict(),
            "accuracy_on_answered": self.on_answered.to_dict(),
            "per_class": {c.name: c.to_dict() for c in self.classes},
            "confusion_matrix": {"rows_true": names, "columns_predicted": names + ["no answer"], "counts": self.confusion.tolist()},
            "calibration_error": self.reliability.to_dict(),
            "reliability_per_answer": {name: r.to_dict() for name, r in self.reliability_per_answer.items()},
            "coverage": [{"target": t, **p.to_dict()} for t, p in self.coverage_points.items()],
            "threshold_for_accuracy": [{"target": t, "point": p.to_dict() if p else None} for t, p in self.accuracy_points.items()],
            "min_confidence": self.min_confidence.to_dict() if self.min_confidence else None,
            "groups": [g.to_dict() for g in self.groups],
            **({"answers": self.answers()} if with_answers else {}),
        }


def evaluate(
    outcomes: Outcomes,
    *,
    groupings: Sequence[Grouping] = (),
    min_group: int = DEFAULT_MIN_GROUP,
    min_confidence: float | None = None,
    n_bins: int = DEFAULT_BINS,
) -> Evaluation:
    o = outcomes
    answered = o.answered
    correct = o.correct
    conf, right = o.confidence[answered], correct[answered]
    probs = o.probabilities[answered]
    points = {c: at_coverage(conf, right, c) for c in REPORTED_COVERAGES} if conf.size else {}
    return Evaluation(
        outcomes=o,
        overall=accuracy(o.labels, o.predicted),
        on_answered=Proportion(int(right.sum()), int(answered.sum())),
        classes=per_class(o.labels, o.predicted, o.class_names),
        confusion=confusion_matrix(o.labels, o.predicted, len(o.class_names)),
        reliability=reliability(conf, right, n_bins),
        reliability_per_answer=reliability_per_answer(probs, o.labels[answered], o.class_names, n_bins),
        curve=coverage_curve(conf, right),
        coverage_points={c: p for c, p in points.items() if p is not None},
        accuracy_points={a: for_accuracy(conf, right, a) for a in REPORTED_ACCURACIES},
        min_confidence=at_threshold(conf, right, min_confidence) if min_confidence is not None else None,
        groups=[
            accuracy_by_group(g.groups_of(list(o.paths)), correct, grouping=g.name, order=g.order, min_n=min_group)
            for g in groupings
        ],
    )
