"""Does an engine give this model's answers on this machine? Checked once, against outputs the
model records, and remembered.

gclf-export records in each file (`gclf.reference_outputs`) the logits onnxruntime gave, on
the exporting machine, for a few generated input images: patterns computed from their index
with integer arithmetic, so every machine makes the same pixels (no photo, so no training
face, ever goes into a model). Of `CANDIDATES` patterns it keeps the `REFERENCES` whose two
top logits are closest: near the decision boundary a drift moves the probabilities most.

The first time an engine (its name, version, precision and layout) meets a model (its
sha256) on a CPU, `verify_engine` runs those inputs through it and compares softmax
probabilities with the recorded ones. The largest difference must stay within `TOLERANCE`:
an fp32 engine on another CPU lands within 1e-5, OpenVINO's int8 at 0 and its bf16 within
about 0.001, while a file with 8-bit weights on AVX2's saturating kernels moved by 0.039 and
swapped channels by 0.11 (docs/engines.md, the measurements). An engine over it is
refused (EngineRefusedError, one sentence). The verdict is cached in gclf_home()/parity/, so
later loads cost one hash of the file.

A model exported before gclf recorded references: onnxruntime, the default engine, runs it
as before (nothing to compare with), and another engine is compared with onnxruntime on
this machine, on the same kind of inputs.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gclf.runtime.atomic import write_bytes_atomic
from gclf.runtime.cpu_class import cpu_class_label, cpu_model_name, detect_cpu_class
from gclf.runtime.engine import describe, open_engine
from gclf.runtime.errors import BadModelError, EngineRefusedError, GclfError
from gclf.runtime.metadata import KEY_REFERENCE, ModelMetadata
from gclf.runtime.onnx_metadata import update_metadata
from gclf.runtime.paths import gclf_home
from gclf.runtime.preprocess import PreprocessSpec, to_model_input

PATTERNS = "gclf-patterns-1"  # the generator below; a new generator gets a new name
CANDIDATES = 32
REFERENCES = 6
TOLERANCE = 0.02  # largest |probability difference| an engine may show on the reference inputs
CHECK_VERSION = 1  # part of the cache key: a change to the check itself invalidates old verdicts

Logits = Callable[[np.ndarray], np.ndarray]  # float32 (N, 3, H, W) -> (N, C)


@dataclass(frozen=True)
class ParityResult:
    passed: bool
    against: str  # "recorded" (the model's reference outputs), "onnxruntime here", or "nothing" (not checked)
    max_prob_diff: float | None  # None when not checked
    tolerance: float
    engine: str  # gclf.runtime.engine.describe()
    cpu: str
    cached: bool = False
    problem: str = ""  # what made the answers unusable, where they were not numbers of the right shape

    def line(self) -> str:
        if self.against == "nothing":
            return f"{self.engine}: not checked (the model records no reference outputs: it was exported before gclf recorded them)"
        verdict = "passed" if self.passed else "FAILED"
        where = "the model's reference outputs" if self.against == "recorded" else "onnxruntime on this machine"
        return f"{self.engine}: parity {verdict} against {where}, largest probability difference {self.max_prob_diff:.2g} (tolerance {self.tolerance:g})"


# --- the generated inputs ---------------------------------------------------------------------


def pattern_image(index: int, height: int, width: int) -> np.ndarray:
    """Generated RGB uint8 image number `index`: a blend of a gradient, stripes and hashed
    noise, from integer arithmetic only (identical on every machine and numpy version)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    c = np.arange(3, dtype=np.int64).reshape(1, 1, 3)
    x, y = x[..., None], y[..., None]
    i = int(index)
    gradient = (x * (1 + i % 7) * 255 // max(width, 1) + y * (1 + i % 5) * 255 // max(height, 1) + c * 85 * (i % 3)) % 256
    stripes = ((x * (i % 4 + 1) + y * (i % 3)) // (2 + i % 6) % 2) * 255
    h = (x * 374761393 + y * 668265263 + (i * 3 + c) * 1274126177) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    noise = h >> 24
    k = i % 4  # how much of each: smooth, striped, noisy, mixed
    mix = (gradient * (4 - k) + noise * k + stripes * (i % 2)) // (5 if i % 2 else 4)
    return np.clip(mix, 0, 255).astype(np.uint8)


def pattern_inputs(spec: PreprocessSpec, indices: list[int]) -> np.ndarray:
    """Model input for the generated images `indices`, at the model's size."""
    images = np.stack([pattern_image(i, spec.input_height, spec.input_width) for i in indices])
    return to_model_input(images, spec)


def choose_references(run: Logits, spec: PreprocessSpec) -> dict:
    """What gclf-export records: of CANDIDATES patterns, the REFERENCES closest to the
    decision boundary under `run`, and `run`'s logits for them."""
    logits = np.asarray(run(pattern_inputs(spec, list(range(CANDIDATES)))), dtype=np.float64)
    top2 = np.sort(logits, axis=1)[:, -2:]
    chosen = sorted(np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:REFERENCES].tolist())
    return {"inputs": PATTERNS, "indices": chosen, "logits": [[float(v) for v in logits[i]] for i in chosen]}


def record_references(path: Path) -> dict:
    """Record in the model file `path` the references onnxruntime gives here (gclf-export's
    step; torch-free): its metadata rewritten in place, the graph untouched. Returns them."""
    engine = open_engine(path, path.read_bytes())
    spec = ModelMetadata.from_props(engine.metadata_props(), source=str(path)).spec
    refs = {**choose_references(engine.run, spec), "engine": describe(engine), "cpu_class": detect_cpu_class()}
    update_metadata(path, {KEY_REFERENCE: json.dumps(refs, sort_keys=True)})
    return refs


def read_references(text: str | None, n_classes: int, source: str) -> dict | None:
    """The recorded references, checked (BadModelError naming `source` if malformed); None if absent."""
    if text is None:
        return None
    try:
        ref = json.loads(text)
        indices, logits = ref["indices"], ref["logits"]
        ok = (ref.get("inputs") == PATTERNS and isinstance(indices, list) and isinstance(logits, list) and 0 < len(indices) == len(logits) <= CANDIDATES
              and all(isinstance(i, int) and 0 <= i < CANDIDATES for i in indices)
              and all(isinstance(row, list) and len(row) == n_classes and all(isinstance(v, (int, float)) and np.isfinite(v) for v in row) for row in logits))
    except (ValueError, TypeError, KeyError, RecursionError):
        ok = False
    if not ok:
        raise BadModelError(f"{source}: {KEY_REFERENCE} is not a list of reference outputs this gclf can read ({PATTERNS}, {n_classes} logits each)")
    return ref


# --- the check ----------------------------------------------------------------------------------


def max_probability_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(_softmax(np.asarray(a, np.float64)) - _softmax(np.asarray(b, np.float64))).max())


def verify_engine(run: Logits, *, engine: str, model: bytes, spec: PreprocessSpec, references: dict | None,
                  reference_engine: Callable[[], Logits] | None, source: str) -> ParityResult:
    """The engine `run` (described as `engine`) against the references of the model whose
    file's bytes are `model`; the verdict is cached under the file's sha256.

    `references`: read_references' result, or None for a model without; then
    `reference_engine()` (None for the default engine itself) gives onnxruntime here to
    compare with. Raises EngineRefusedError when the engine drifts.
    """
    cpu = f"{cpu_model_name()} ({cpu_class_label()})"
    if references is None and reference_engine is None:
        return ParityResult(True, "nothing", None, TOLERANCE, engine, cpu)
    model_sha256 = hashlib.sha256(model).hexdigest()  # only when there is something to check: hashing is slow on a Pi
    key = hashlib.sha256("|".join((model_sha256, engine, cpu, str(CHECK_VERSION), str(TOLERANCE))).encode()).hexdigest()
    cache = gclf_home() / "parity" / f"{key}.json"
    result = _cached(cache)
    if result is None:
        if references is not None:
            indices, expected, against = references["indices"], np.asarray(references["logits"]), "recorded"
        else:
            chosen = choose_references(reference_engine(), spec)
            indices, expected, against = chosen["indices"], np.asarray(chosen["logits"]), "onnxruntime here"
        got = np.asarray(run(pattern_inputs(spec, indices)))
        if got.shape != expected.shape:
            problem = f"an output of shape {got.shape} for {len(indices)} inputs of {expected.shape[1]} classes"
        elif not np.isfinite(got).all():
            problem = "outputs that are not numbers (NaN or infinity)"
        else:
            problem = ""
        diff = max_probability_difference(got, expected) if not problem else 1.0
        result = ParityResult(not problem and diff <= TOLERANCE, against, diff, TOLERANCE, engine, cpu, problem=problem)
        _store(cache, result)
    if not result.passed:
        where = "the reference outputs the model records" if result.against == "recorded" else "onnxruntime on this machine"
        what = (f"gives {result.problem} instead of answers to compare with {where}" if result.problem else
                f"gives answers that drift from {where} on this CPU (largest probability difference {result.max_prob_diff:.3g} > {result.tolerance:g})")
        raise EngineRefusedError(
            f"{source}: {engine} {what}, so gclf will not run it here: "
            + ("use the onnxruntime engine" if not engine.startswith("onnxruntime") else
               "an int8 file with full 8-bit weights saturates on some CPUs (re-export it with gclf-export --quantize, whose 7-bit "
               "weights give the same answers on every CPU); otherwise the file is damaged")
        )
    return result


def _cached(path) -> ParityResult | None:
    try:
        record = json.loads(path.read_text())
        return ParityResult(**{**{k: record[k] for k in ("passed", "against", "max_prob_diff", "tolerance", "engine", "cpu")},
                               "problem": str(record.get("problem", "")), "cached": True})
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: check again


def _store(path, result: ParityResult) -> None:
    record = {**asdict(result), "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    record.pop("cached")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps(record, indent=1).encode())
    except (OSError, GclfError):
        pass  # a read-only home: the check runs again next time, which costs a few inferences


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
