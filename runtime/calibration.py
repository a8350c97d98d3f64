"""A model's recorded calibration (`gclf.calibration`) and applying it: logits -> calibrated
probabilities. Fitting one is gclf.runtime.evaluation.calibration's (gclf-eval --calibrate,
gclf-export); this is what every runtime path needs to answer as the file says.

- Temperature scaling divides every logit by T: never changes an answer, only how sure it
  sounds.
- Vector scaling multiplies class c's logit by w_c and adds b_c: can move the threshold
  between classes, so it can change answers.
- Equal recall divides every logit by a temperature T, then adds b_c: the biases are chosen so
  that every class is recognised equally often on the fit photos (the same share of men read as
  men as of women read as women). It moves the threshold between classes on purpose.

Both act on logits; log-probabilities serve as well (softmax is unchanged by adding a constant
to a row, and log softmax(z) is z minus such a constant; see `log_probabilities`).

A record is untrusted input like every metadata value: anything but a known method with
finite parameters in a sane range is a `BadModelError` (exit 6), never a guess.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from gclf.runtime.errors import BadModelError

KEY_CALIBRATION = "gclf.calibration"  # the model metadata key holding a `Calibration` as JSON
METHODS = ("temperature", "vector_scaling", "equal_recall")
# Fitting searches the temperature in [1/100, 100] (far beyond any useful value); a record
# outside it was not written by gclf.
TEMPERATURE_RANGE = (0.01, 100.0)
# Vector scaling's scales and biases: a fit stays far inside (it starts at 1/T and 0, with an
# L2 pull towards 1 and 0); larger values would only turn logits into infinities.
MAX_ABS_VECTOR_PARAMETER = 1e4


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, C) logits -> (N, C) float64 probabilities."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities -> logits that give them back under softmax (their logarithms); an exact
    zero becomes the log of the smallest normal float, so every logit is finite."""
    p = np.asarray(probabilities, dtype=np.float64)
    return np.log(np.maximum(p, np.finfo(np.float64).tiny))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature)


def apply_vector_scaling(logits: np.ndarray, scale: Sequence[float] | np.ndarray, bias: Sequence[float] | np.ndarray) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) * np.asarray(scale) + np.asarray(bias))


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration and where it came from: what a calibrated model file records
    under KEY_CALIBRATION, as JSON (`to_dict`)."""

    method: str  # one of METHODS
    parameters: Mapping[str, Any]  # {"temperature": T}, {"scale": [...], "bias": [...]} or {"temperature": T, "bias": [...]}
    fitted_on: Mapping[str, Any] = field(default_factory=dict)  # description, n, seed, ...
    fit_figures: Mapping[str, float] = field(default_factory=dict)  # ECE/NLL before and after, on the fit photos

    def __post_init__(self) -> None:
        problem = _problem(self.method, self.parameters)
        if problem:
            raise BadModelError(f"{KEY_CALIBRATION} is not a usable calibration: {problem}")

    @property
    def n_classes(self) -> int | None:
        """The classes a per-class calibration was fitted for; None for a temperature (any count)."""
        if self.method == "temperature":
            return None
        return len(self.parameters["bias"])

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """(N, C) logits (or log-probabilities) -> calibrated (N, C) probabilities."""
        if self.method == "temperature":
            return apply_temperature(logits, float(self.parameters["temperature"]))
        if np.shape(logits)[1] != self.n_classes:
            raise BadModelError(f"{KEY_CALIBRATION} has {self.n_classes} classes and the model {np.shape(logits)[1]}")
        if self.method == "equal_recall":
            t = float(self.parameters["temperature"])
            return apply_vector_scaling(logits, np.full(self.n_classes, 1.0 / t), self.parameters["bias"])
        return apply_vector_scaling(logits, self.parameters["scale"], self.parameters["bias"])

    def describe(self) -> str:
        """"temperature 1.412" or "vector scaling (scale ...; bias ...)": for tables and logs."""
        if self.method == "temperature":
            return f"temperature {self.parameters['temperature']:.3f}"
        if self.method == "equal_recall":
            bias = ", ".join(f"{v:+.3f}" for v in self.parameters["bias"])
            return f"equal recall (temperature {self.parameters['temperature']:.3f}; bias {bias})"
        scale = ", ".join(f"{v:.3f}" for v in self.parameters["scale"])
        bias = ", ".join(f"{v:+.3f}" for v in self.parameters["bias"])
        return f"vector scaling (scale {scale}; bias {bias})"

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "input": "logits (log-probabilities give the same result)",
            "parameters": dict(self.parameters),
            "fitted_on": dict(self.fitted_on),
            "fit_figures": dict(self.fit_figures),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "Calibration":
        if not isinstance(record, Mapping) or not isinstance(record.get("parameters"), Mapping):
            raise BadModelError(f"{KEY_CALIBRATION} must be a JSON object with method and parameters")
        for key in ("fitted_on", "fit_figures"):
            if not isinstance(record.get(key) or {}, Mapping):
                raise BadModelError(f"{KEY_CALIBRATION}'s {key} must be a JSON object")
        return cls(
            method=record.get("method"),  # type: ignore[arg-type]  # checked in __post_init__
            parameters=dict(record["parameters"]),
            fitted_on=dict(record.get("fitted_on") or {}),
            fit_figures=dict(record.get("fit_figures") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        try:
            return cls.from_dict(json.loads(text))
        except RecursionError:
            raise BadModelError(f"{KEY_CALIBRATION} is nested too deeply to be gclf metadata") from None
        except ValueError as exc:  # not JSON (JSONDecodeError), or a number of too many digits
            raise BadModelError(f"{KEY_CALIBRATION} is not valid JSON ({str(exc)[:200]})") from None


def _finite_numbers(value: Any, limit: float) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= limit for v in value)
    )


def _problem(method: Any, parameters: Mapping[str, Any]) -> str | None:
    if method in ("temperature", "equal_recall"):
        t = parameters.get("temperature")
        low, high = TEMPERATURE_RANGE
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not low * (1 - 1e-9) <= t <= high * (1 + 1e-9):
            return f"temperature must be a number from {low:g} to {high:g}, got {t!r}"
        bias = parameters.get("bias")
        if method == "equal_recall" and not (_finite_numbers(bias, MAX_ABS_VECTOR_PARAMETER) and len(bias) >= 2):
            return f"equal_recall needs a list bias of finite numbers (at most {MAX_ABS_VECTOR_PARAMETER:g} in size), one per class"
        return None
    if method == "vector_scaling":
        scale, bias = parameters.get("scale"), parameters.get("bias")
        limit = MAX_ABS_VECTOR_PARAMETER
        if not (_finite_numbers(scale, limit) and _finite_numbers(bias, limit) and len(scale) == len(bias)):
            return f"vector_scaling needs lists scale and bias of finite numbers (at most {limit:g} in size), one per class"
        return None
    return f"method must be one of {list(METHODS)}, got {method!r}"


__all__ = ["KEY_CALIBRATION", "METHODS", "Calibration", "apply_temperature", "apply_vector_scaling", "log_probabilities", "softmax"]
