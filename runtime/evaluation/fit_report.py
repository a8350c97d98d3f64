"""Calibrating on a labelled set without fooling oneself: split it (seeded, class-stratified),
fit every calibration method on one part, measure each on the other part side by side, and
write a model copy that records the chosen one and where it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gclf.runtime.evaluation.calibration import KEY_CALIBRATION, METHODS, Calibration, fit_calibration, log_probabilities, split_fit_report
from gclf.runtime.evaluation.decision import choose_decision
from gclf.runtime.evaluation.outcomes import Outcomes
from gclf.runtime.metadata import FORMAT_VERSION, KEY_DECISION, KEY_FORMAT, Decision


@dataclass(frozen=True)
class FitReport:
    """The two parts of a set and every method fitted on the first."""

    fit: Outcomes  # what the calibrations were fitted on
    report: Outcomes  # what their figures are measured on; nothing was fitted here
    fitted: dict[str, Calibration]  # method -> calibration fitted on `fit`
    seed: int
    fit_share: float

    def calibrated_report(self, method: str) -> Outcomes:
        """The report part's outcomes with `method`'s calibration applied."""
        cal = self.fitted[method]
        answered = self.report.answered
        probs = np.full_like(self.report.probabilities, np.nan)
        if answered.any():
            probs[answered] = cal.apply(log_probabilities(self.report.probabilities[answered]))
        return self.report.with_probabilities(probs, describe(cal))


def decide_on_fit(fit: FitReport, method: str) -> Decision:
    """The default decision threshold (gclf.runtime.evaluation.decision's rule), chosen on the
    fit part's answered photos with `method`'s calibration applied, as the copy will answer."""
    answered = fit.fit.answered
    probs = fit.fitted[method].apply(log_probabilities(fit.fit.probabilities[answered]))
    correct = probs.argmax(axis=1) == fit.fit.labels[answered]
    description = fit.fitted[method].fitted_on.get("description", "the fit part")
    return choose_decision(probs.max(axis=1), correct, chosen_on=f"{description}, {method} applied")


def describe(cal: Calibration) -> str:
    """"temperature 1.412" or "vector scaling (scale ...; bias ...)": for tables."""
    return cal.describe()


def files_sha256(outcomes: Outcomes, root: Path) -> str:
    """sha256 of the sorted list of photo paths (relative to `root`, one a line): names the
    exact photos a calibration was fitted on, without listing them in the model file."""
    names = sorted(p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix() for p in outcomes.paths)
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


def fit_on_part(outcomes: Outcomes, *, data_root: Path, model_sha256: str, seed: int = 0, fit_share: float = 0.5) -> FitReport:
    """Split `outcomes` (seeded, class-stratified), fit every method on the fit part's answered
    photos, and keep the report part for measuring."""
    fit_idx, report_idx = split_fit_report(outcomes.labels, fit_share=fit_share, seed=seed)
    fit, report = outcomes.subset(fit_idx), outcomes.subset(report_idx)
    answered = fit.answered
    fitted_on = {
        "description": (
            f"{fit_share:.0%} of {data_root.name} ({fit.n} of {outcomes.n} photos, each class split alike, seed {seed})"
            + (f", the {int(answered.sum())} with a face found" if outcomes.faces else "")
        ),
        "data": data_root.name,
        "photos": fit.n,
        "seed": seed,
        "fit_share": fit_share,
        "files_sha256": files_sha256(fit, data_root),
        "model": {"file": outcomes.model, "sha256": model_sha256},
    }
    z = log_probabilities(fit.probabilities[answered])
    y = fit.labels[answered]
    fitted = {m: fit_calibration(m, z, y, fitted_on=fitted_on) for m in METHODS}
    return FitReport(fit, report, fitted, seed, fit_share)


def write_calibrated_copy(source: Path, dest: Path, calibration: Calibration, decision: Decision | None = None) -> None:
    """Copy the model file `source` to `dest` (or rewrite it, where they are one file) with
    `calibration` recorded under KEY_CALIBRATION (replacing any recorded one), `decision`
    under KEY_DECISION, and the
    metadata format version that makes older runtimes refuse the file rather than ignore the
    calibration; every other byte as it was (no onnx import, atomic write)."""
    from gclf.runtime.onnx_metadata import update_metadata

    update = {KEY_FORMAT: FORMAT_VERSION, KEY_CALIBRATION: calibration.to_json()}
    if decision is not None:
        update[KEY_DECISION] = decision.to_json()
    update_metadata(source, update, dest)
