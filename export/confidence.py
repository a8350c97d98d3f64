"""How far an exported model's confidence can be trusted, fitted at export time on the run's
validation split: a temperature (recorded in the file, applied by every runtime path) and,
side by side for the log, vector scaling; and the default decision threshold (`gclf.decision`)
chosen on the calibrated answers.

The logits come from the runtime itself (raw, `Classifier(calibrated=False)`: the pipeline's
`model_logits`) on the photos as the export's parity checks see them: the training's
preprocessing and, for a faces model, its face crops. Each file (fp32, int8) is fitted on its
own outputs: int8 logits differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from gclf.runtime.calibration import Calibration, log_probabilities, softmax
from gclf.runtime.evaluation.calibration import CalibrationError, fit_calibration, nll
from gclf.runtime.evaluation.decision import choose_decision
from gclf.runtime.evaluation.fit_report import write_calibrated_copy
from gclf.runtime.evaluation.reliability import expected_calibration_error
from gclf.runtime.files import sha256_file
from gclf.runtime.log import Log
from gclf.runtime.metadata import Decision


# Below this many validation photos a fitted temperature is a rough estimate, and the log says
# so: on a stand-in faces run, one fitted on 230 made the test split's NLL worse.
FEW_PHOTOS = 500


@dataclass(frozen=True)
class ConfidenceFit:
    """What the export fitted on the validation split for one model file."""

    temperature: Calibration  # recorded in the file
    vector_scaling: Calibration  # fitted side by side, for the log: can change answers, needs more photos
    decision: Decision  # the default decision threshold, on the temperature-calibrated answers
    # method -> ECE and NLL before and after on the test split, which nothing was fitted on
    # (`held_out_figures`); None where the run has no test split.
    held_out: Mapping[str, Mapping[str, float]] | None = None


def fitted_on(model_path: Path, files: Sequence[tuple[Path, int]], *, split_seed: int | None, face_crops: bool, name: str) -> dict:
    """Where a calibration fitted at export came from, as its record says (`name`: the model
    file's name once in place; the sha256 is of the file as fitted, before the record)."""
    names = sorted(p.as_posix() for p, _ in files)
    return {
        "description": f"the run's validation split ({len(files)} photos" + (", face crops as in training)" if face_crops else ")"),
        "data": "validation split",
        "photos": len(files),
        "seed": split_seed,  # the run's split seed (gclf-train --seed)
        "files_sha256": hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest(),
        "model": {"file": name, "sha256": sha256_file(model_path)},
    }


def fit_confidence(logits: np.ndarray, labels: np.ndarray, source: Mapping[str, object]) -> ConfidenceFit:
    """Temperature and vector scaling fitted on (logits, labels), and the decision threshold
    chosen on the temperature-calibrated answers. Raises CalibrationError where they cannot
    be fitted (one class only)."""
    temperature = fit_calibration("temperature", logits, labels, fitted_on=source)
    vector = fit_calibration("vector_scaling", logits, labels, fitted_on=source)
    probs = temperature.apply(logits)
    decision = choose_decision(probs.max(axis=1), probs.argmax(axis=1) == labels, chosen_on=f"{source['description']}, temperature applied")
    return ConfidenceFit(temperature, vector, decision)


def log_fit(fit: ConfidenceFit, variant: str, log: Log) -> None:
    for cal in (fit.temperature, fit.vector_scaling):
        f = cal.fit_figures
        log(
            f"{variant} calibration, {cal.describe()}, on {cal.fitted_on['photos']} validation photos: "
            f"ECE {f['ece_before']:.4f} -> {f['ece_after']:.4f}, NLL {f['nll_before']:.4f} -> {f['nll_after']:.4f}"
            + ("  (recorded)" if cal is fit.temperature else "  (not recorded: measured beside it)")
        )
    d = fit.decision
    log(f"{variant} default decision threshold {d.min_confidence:.3f}: answers {d.coverage:.1%} of the validation photos, right {d.accuracy:.1%} of the time")


def held_out_figures(fit: ConfidenceFit, logits: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Each fitted method's ECE and NLL before and after on photos it was not fitted on: how
    far the validation split's calibration carries to other photos."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    figures = {}
    for cal in (fit.temperature, fit.vector_scaling):
        after = cal.apply(z)
        figures[cal.method] = {
            "ece_before": expected_calibration_error(softmax(z), y),
            "ece_after": expected_calibration_error(after, y),
            "nll_before": nll(z, y),
            "nll_after": nll(log_probabilities(after), y),
        }
    return figures


def log_held_out(figures: Mapping[str, Mapping[str, float]], photos: int, variant: str, log: Log) -> None:
    for method, f in figures.items():
        log(
            f"{variant} calibration, {method.replace('_', ' ')}, on the {photos} test photos (nothing fitted on them): "
            f"ECE {f['ece_before']:.4f} -> {f['ece_after']:.4f}, NLL {f['nll_before']:.4f} -> {f['nll_after']:.4f}"
        )


def record_confidence(path: Path, fit: ConfidenceFit) -> None:
    """Record the temperature and the decision threshold in the model file, in place (metadata
    only, atomically; format version 2, so a runtime that would ignore the calibration refuses)."""
    write_calibrated_copy(path, path, fit.temperature, fit.decision)


def calibrate_file(
    path: Path, files: Sequence[tuple[Path, int]], logits: np.ndarray, variant: str, log: Log, *, split_seed: int | None, face_crops: bool,
    name: str,
) -> ConfidenceFit | None:
    """Fit on `files` (the validation split) and `logits`, `path`'s own raw outputs for them;
    log, and record in `path`. None, said in one line, where there is nothing to fit on."""
    labels = np.array([y for _, y in files], dtype=np.int64)
    try:
        fit = fit_confidence(logits, labels, fitted_on(path, files, split_seed=split_seed, face_crops=face_crops, name=name))
    except CalibrationError as exc:
        log(f"warning: {name} records no calibration: {exc}")
        return None
    log_fit(fit, variant, log)
    if len(files) < FEW_PHOTOS:
        log(f"warning: {name}'s calibration is fitted on only {len(files)} validation photos: a rough estimate (gclf-eval --calibrate refits it on more)")
    record_confidence(path, fit)
    return fit
