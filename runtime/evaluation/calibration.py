"""Fitting a model's confidence to how often it is right: a temperature (one number), or a
scale and bias per class (vector scaling), fitted by minimising the negative log-likelihood
of labelled answers. Applying them, and the record a calibrated model file carries, are the
runtime core's (gclf.runtime.calibration: every runtime path applies a recorded one); they
are re-exported here for the fitting code's callers.

Both act on logits. Log-probabilities serve as well: softmax is unchanged by adding a
constant to a row, and log softmax(z) is z minus such a constant, so softmax(log p / T) =
softmax(z / T), and the same holds for a per-class scale and bias (the bias absorbs it for
the scale; see `log_probabilities`).

- Temperature scaling (Guo et al. 2017) divides every logit by T. It never changes an answer,
  only how sure it sounds, so accuracy and the accuracy-coverage curve stay as they are.
- Vector scaling (same paper) multiplies class c's logit by w_c and adds b_c. It can move the
  decision threshold between classes (a model that reads too many women as men) and so can
  change answers; it needs more photos to fit (2 x classes numbers, against 1).
- Equal recall is the temperature, then a bias per class chosen so that each class's recall
  is the same on the fit photos (equal opportunity between the classes: the share of women
  read as women equals the share of men read as men). Where a model reads too many of one
  class as the other on the deployer's photos, it closes that gap at a small cost in overall
  accuracy; it does nothing for groups within a class.

`split_fit_report` makes the seeded, class-stratified split under every calibration figure:
the calibrator is fitted on one part and measured on the other, never on what it was fitted on.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from gclf.runtime.calibration import (  # noqa: F401  (re-exported: the fitting code's callers use them from here)
    KEY_CALIBRATION,
    METHODS,
    TEMPERATURE_RANGE,
    Calibration,
    apply_temperature,
    apply_vector_scaling,
    log_probabilities,
    softmax,
)
from gclf.runtime.errors import EXIT_BAD_DATA, GclfError
from gclf.runtime.evaluation.reliability import DEFAULT_BINS, expected_calibration_error

# The temperature is searched in [1/100, 100]: far beyond any useful value (a fit at the edge
# means the answers are all right, or all wrong, and says so in the record's NLL).
LOG_T_RANGE = (math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1]))
_L2 = 1e-4  # vector scaling's pull towards (scale 1, bias 0): fixes the free shift of the biases


class CalibrationError(GclfError):
    """Nothing to fit a calibration on (no answered photo, one class only)."""

    exit_code = EXIT_BAD_DATA


def nll(logits: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes under softmax(logits)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    shifted = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_norm - shifted[np.arange(y.size), y]))


def _check_fit_data(logits: np.ndarray, labels: np.ndarray) -> None:
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"need (N, C) logits and N labels, got {logits.shape} and {labels.shape}")
    if labels.size == 0:
        raise CalibrationError("no answered photos to fit a calibration on")
    if np.unique(labels).size < 2:
        raise CalibrationError("the photos to fit a calibration on are all of one class; it needs at least two")
    if not np.isfinite(logits).all():
        raise ValueError("logits must be finite (see log_probabilities)")


def fit_temperature(logits: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """The temperature T minimising the NLL of softmax(logits / T).

    The NLL is convex in 1/T (a log-sum-exp of a linear function minus a linear function), so
    it has one minimum along log T: a grid over LOG_T_RANGE brackets it, and a golden-section
    search narrows the bracket to 1e-7 in log T. No gradient, no starting point to get wrong."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    _check_fit_data(z, y)

    def loss(log_t: float) -> float:
        return nll(z / math.exp(log_t), y)

    grid = np.linspace(*LOG_T_RANGE, 81)
    losses = [loss(v) for v in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > 1e-7:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return math.exp((lo + hi) / 2)


def fit_vector_scaling(logits: np.ndarray, labels: Sequence[int] | np.ndarray, *, max_steps: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (scale, bias) minimising the NLL of softmax(logits * scale + bias), plus a
    small L2 pull towards (1, 0).

    Newton steps with a backtracking line search, from the fitted temperature (scale 1/T,
    bias 0): the objective is convex in (scale, bias), the start is already the best single
    temperature, and every accepted step lowers the loss, so on the fit data the result is no
    worse than temperature scaling (but for the L2 pull, which is tiny)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    _check_fit_data(z, y)
    n, c = z.shape
    onehot = np.zeros_like(z)
    onehot[np.arange(n), y] = 1.0
    target = np.concatenate([np.ones(c), np.zeros(c)])

    def objective(theta: np.ndarray) -> float:
        return nll(z * theta[:c] + theta[c:], y) + _L2 / 2 * float(np.sum((theta - target) ** 2))

    theta = np.concatenate([np.full(c, 1.0 / fit_temperature(z, y)), np.zeros(c)])
    current = objective(theta)
    for _ in range(max_steps):
        p = softmax(z * theta[:c] + theta[c:])
        r = p - onehot
        grad = np.concatenate([(r * z).mean(axis=0), r.mean(axis=0)]) + _L2 * (theta - target)
        if np.abs(grad).max() < 1e-9:
            break
        zp = z * p
        # The Hessian of the mean NLL in (scale, bias), from diag(p) - p p^T per photo.
        h_ww = np.diag((z * zp).mean(axis=0)) - zp.T @ zp / n
        h_wb = np.diag(zp.mean(axis=0)) - zp.T @ p / n
        h_bb = np.diag(p.mean(axis=0)) - p.T @ p / n
        hessian = np.block([[h_ww, h_wb], [h_wb.T, h_bb]]) + _L2 * np.eye(2 * c)
        step = np.linalg.solve(hessian, grad)
        size = 1.0
        while size > 1e-8:
            candidate = theta - size * step
            value = objective(candidate)
            if value < current:
                break
            size /= 2
        else:
            break  # no step lowers the loss: at the minimum to rounding
        improvement = current - value
        theta, current = candidate, value
        if improvement < 1e-12:
            break
    return theta[:c].copy(), theta[c:].copy()


RECALL_STEP = 0.005  # the bias step of the equal-recall search (logit units)
RECALL_MAX_STEPS = 4000  # a shift of up to 20 logits: far beyond any useful one


def recalls(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Each class's recall under argmax (NaN for a class with no photo)."""
    predicted = np.argmax(logits, axis=1)
    return np.array([np.mean(predicted[labels == c] == c) if np.any(labels == c) else np.nan for c in range(n_classes)])


def fit_equal_recall(logits: np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[float, np.ndarray]:
    """(temperature, per-class bias): the fitted temperature, then biases that make the classes'
    recalls as equal as the fit photos allow.

    A greedy search: raise the bias of the class recognised least often, one small step at a
    time, and keep the biases with the smallest spread of recalls (ties: the higher accuracy).
    The biases are centred (adding a constant to every class changes nothing)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    _check_fit_data(z, y)
    t = fit_temperature(z, y)
    scaled, c = z / t, z.shape[1]
    bias = np.zeros(c)
    best = (np.inf, -np.inf, bias.copy())
    for _ in range(RECALL_MAX_STEPS):
        r = recalls(scaled + bias, y, c)
        spread = float(np.nanmax(r) - np.nanmin(r))
        accuracy = float(np.mean(np.argmax(scaled + bias, axis=1) == y))
        if (spread, -accuracy) < (best[0], -best[1]):
            best = (spread, accuracy, bias.copy())
        if spread == 0.0:
            break
        bias[int(np.nanargmin(r))] += RECALL_STEP
    chosen = best[2]
    return t, chosen - chosen.mean()


def fit_calibration(
    method: str,
    logits: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    fitted_on: Mapping[str, Any],
    n_bins: int = DEFAULT_BINS,
) -> Calibration:
    """Fit `method` on (logits, labels) and record it with its ECE and NLL before and after,
    on those same photos (the fit part: figures to report come from the other part)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if method == "temperature":
        parameters: dict[str, Any] = {"temperature": fit_temperature(z, y)}
    elif method == "vector_scaling":
        scale, bias = fit_vector_scaling(z, y)
        parameters = {"scale": scale.tolist(), "bias": bias.tolist()}
    elif method == "equal_recall":
        t, bias = fit_equal_recall(z, y)
        parameters = {"temperature": t, "bias": bias.tolist()}
    else:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    fitted = Calibration(method, parameters, {**fitted_on, "n": int(y.size)})
    after = fitted.apply(z)
    figures = {
        "ece_before": expected_calibration_error(softmax(z), y, n_bins),
        "ece_after": expected_calibration_error(after, y, n_bins),
        "nll_before": nll(z, y),
        "nll_after": nll(log_probabilities(after), y),
        "ece_bins": n_bins,
    }
    return Calibration(method, parameters, fitted.fitted_on, figures)


def split_fit_report(labels: Sequence[int] | np.ndarray, *, fit_share: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a fit part and a report part, class by class: `fit_share` of each class
    (rounded) in the fit part, chosen by a generator seeded with `seed`; sorted. The same
    labels and seed give the same split on every machine (numpy's PCG64)."""
    if not 0 < fit_share < 1:
        raise ValueError(f"fit_share must be between 0 and 1, got {fit_share}")
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    fit: list[np.ndarray] = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        fit.append(members[: int(round(fit_share * members.size))])
    fit_idx = np.sort(np.concatenate(fit)) if fit else np.zeros(0, dtype=np.int64)
    report_idx = np.setdiff1d(np.arange(y.size), fit_idx)
    return fit_idx.astype(np.int64), report_idx.astype(np.int64)
