"""What a gclf ONNX file says about itself, stored as JSON strings in `metadata_props`.

Keys (all required unless noted):
- `gclf.format_version`: "1"
- `gclf.preprocess`: the `PreprocessSpec` as JSON
- `gclf.class_names`: JSON list of class names, in output order
- `gclf.variant`: "fp32" or "int8"
- `gclf.training`: JSON object, a short training summary (init, epochs, accuracy, ...); for a
  faces model trained on detector crops its "face_crop" is a `FaceCropSpec` (models without
  it were trained on the photos as they were, and load as before)
- `gclf.quantization`: JSON object, only (and always) on int8 files
- `gclf.reference_outputs` (optional): JSON object, the logits onnxruntime gave for a few
  generated inputs when the file was exported; engines are checked against them
  (gclf.runtime.parity, which reads and validates it). Files without it load as before.
- `gclf.decision` (optional): JSON object, the confidence below which the model's answer is
  `unsure` and how it was chosen: {"min_confidence": float in [0, 1], "chosen_on": str,
  "target_accuracy": float, "coverage": float, "accuracy": float, "photos": int}. Files
  without it answer always (no `unsure`).
- `gclf.card` (optional): JSON object, what gclf-export knew of the training run, for the
  model card (gclf.runtime.evaluation.model_card documents its fields); never needed to run.

Class names never include `UNSURE` ("unsure", any case): that label is the runtime's own
answer for "below the model's confidence threshold", never a class.

The runtime refuses a file whose metadata is missing or inconsistent; it never falls back to
defaults, because a wrong mean or channel order fails silently as lower accuracy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gclf.runtime.errors import BadModelError
from gclf.runtime.labels import UNSURE, is_unsure
from gclf.runtime.log import warn
from gclf.runtime.faces.spec import FaceCropSpec
from gclf.runtime.preprocess import PreprocessSpec

FORMAT_VERSION = "1"
KEY_FORMAT = "gclf.format_version"
KEY_PREPROCESS = "gclf.preprocess"
KEY_CLASSES = "gclf.class_names"
KEY_VARIANT = "gclf.variant"
KEY_TRAINING = "gclf.training"
KEY_QUANTIZATION = "gclf.quantization"
KEY_REFERENCE = "gclf.reference_outputs"
KEY_DECISION = "gclf.decision"
VARIANTS = ("fp32", "int8")
# What the model was trained on (`gclf.training`'s "input_kind"): face crops, or whole images.
INPUT_KINDS = ("faces", "whole_image")
DEFAULT_INPUT_KIND = "whole_image"  # what models trained before gclf recorded input_kind expect
KEY_FACE_CROP = "face_crop"  # in `gclf.training`: the detector that cropped the training photos


@dataclass(frozen=True)
class ModelMetadata:
    spec: PreprocessSpec
    class_names: tuple[str, ...]
    variant: str = "fp32"
    training: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    reference_outputs: str | None = None  # KEY_REFERENCE's JSON text, as the file holds it
    decision: dict[str, Any] | None = None  # KEY_DECISION's object: the recorded confidence threshold

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise BadModelError("gclf metadata is inconsistent: " + "; ".join(problems))

    @property
    def input_kind(self) -> str | None:
        """"faces" or "whole_image" from the training summary, None if the model predates it.

        An unknown value is refused, never guessed: a faces model fed whole frames (or the
        reverse) fails silently as lower accuracy.
        """
        kind = self.training.get("input_kind")
        if kind is not None and kind not in INPUT_KINDS:
            raise BadModelError(f"model metadata has input_kind {kind!r}; this gclf knows {list(INPUT_KINDS)}")
        return kind

    @property
    def face_crop(self) -> FaceCropSpec | None:
        """The detector that cropped the training photos (`gclf-train --face-crop`), or None
        for a model trained on the photos as they were (and every model from before the record)."""
        value = self.training.get(KEY_FACE_CROP)
        return None if value is None else FaceCropSpec.from_dict(value)  # checked in __post_init__

    @property
    def min_confidence(self) -> float | None:
        """The recorded threshold (`gclf.decision`'s "min_confidence"): answers whose top
        confidence is below it are `UNSURE`; None for a model that records no decision."""
        return None if self.decision is None else float(self.decision["min_confidence"])

    def to_props(self) -> dict[str, str]:
        props = {
            KEY_FORMAT: FORMAT_VERSION,
            KEY_PREPROCESS: self.spec.to_json(),
            KEY_CLASSES: json.dumps(list(self.class_names)),
            KEY_VARIANT: self.variant,
            KEY_TRAINING: json.dumps(self.training, sort_keys=True),
        }
        if self.quantization is not None:
            props[KEY_QUANTIZATION] = json.dumps(self.quantization, sort_keys=True)
        if self.reference_outputs is not None:
            props[KEY_REFERENCE] = self.reference_outputs
        if self.decision is not None:
            props[KEY_DECISION] = json.dumps(self.decision, sort_keys=True)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], *, source: str = "model") -> "ModelMetadata":
        """Parse and validate; raises `BadModelError` with a sentence naming `source`."""
        if KEY_FORMAT not in props:
            raise BadModelError(
                f"{source} has no gclf metadata: it was not written by gclf-export "
                "(a gclf model carries its preprocessing and class names inside the file)"
            )
        if props[KEY_FORMAT] != FORMAT_VERSION:
            raise BadModelError(f"{source}: gclf metadata version {props[KEY_FORMAT]!r} is not supported (expected {FORMAT_VERSION})")
        missing = [k for k in (KEY_PREPROCESS, KEY_CLASSES, KEY_VARIANT, KEY_TRAINING) if k not in props]
        if missing:
            raise BadModelError(f"{source}: gclf metadata is missing {', '.join(missing)}")
        try:
            spec = PreprocessSpec.from_json(props[KEY_PREPROCESS])
            classes = _json(props[KEY_CLASSES], KEY_CLASSES, list)
            training = _json(props[KEY_TRAINING], KEY_TRAINING, dict)
            quant = _json(props[KEY_QUANTIZATION], KEY_QUANTIZATION, dict) if KEY_QUANTIZATION in props else None
            decision = _json(props[KEY_DECISION], KEY_DECISION, dict) if KEY_DECISION in props else None
            return cls(spec=spec, class_names=tuple(classes), variant=props[KEY_VARIANT], training=training, quantization=quant,
                       reference_outputs=props.get(KEY_REFERENCE), decision=decision)
        except BadModelError as exc:
            raise BadModelError(f"{source}: {exc}") from None
        except (ArithmeticError, RecursionError, TypeError, ValueError) as exc:
            # Values no check above foresaw (a number too large for a float, ...): the file is
            # untrusted input, so one sentence naming it, never a traceback.
            raise BadModelError(f"{source}: gclf metadata holds a value gclf cannot use ({type(exc).__name__}: {_short(exc)})") from None


def _json(text: str, key: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadModelError(f"{key} is nested too deeply to be gclf metadata") from None
    except ValueError as exc:  # not JSON, or a number of more digits than Python converts
        raise BadModelError(f"{key} is not valid JSON ({_short(exc)})") from None
    if not isinstance(value, kind):
        raise BadModelError(f"{key} must be a JSON {kind.__name__}")
    return value


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def _problems(meta: ModelMetadata) -> list[str]:
    problems = []
    names = meta.class_names
    if len(names) < 2:
        problems.append(f"a classifier needs at least 2 class names, got {len(names)}")
    if not all(isinstance(n, str) and n for n in names):
        problems.append("class names must be non-empty strings")
    elif len(set(names)) != len(names):
        problems.append("class names must be unique")
    elif any(is_unsure(n) for n in names):
        problems.append(f"class names must not include {UNSURE!r}, the label gclf gives answers below the confidence threshold")
    if meta.variant not in VARIANTS:
        problems.append(f"variant must be one of {list(VARIANTS)}, got {meta.variant!r}")
    if (meta.variant == "int8") != (meta.quantization is not None):
        problems.append("int8 files (and only they) carry quantization metadata")
    crop = meta.training.get(KEY_FACE_CROP)
    if crop is not None:
        try:
            FaceCropSpec.from_dict(crop)
        except (ArithmeticError, TypeError, ValueError) as exc:
            problems.append(f"training.{KEY_FACE_CROP} is not a face-crop record ({exc})")
        if meta.training.get("input_kind") != "faces":
            problems.append(f"training.{KEY_FACE_CROP} is recorded for a model whose input_kind is not faces")
    if meta.decision is not None:
        problems.extend(decision_problems(meta.decision))
    return problems


# gclf.decision's keys besides "min_confidence", and what each must be when present.
_DECISION_SHARES = ("target_accuracy", "coverage", "accuracy")


def decision_problems(decision: Mapping[str, Any]) -> list[str]:
    """What is wrong with a `gclf.decision` object (empty: nothing)."""
    problems = []
    if "min_confidence" not in decision:
        problems.append(f"{KEY_DECISION} has no min_confidence")
    for key in ("min_confidence", *_DECISION_SHARES):
        value = decision.get(key)
        if key in decision and not (_is_number(value) and 0.0 <= value <= 1.0):
            problems.append(f"{KEY_DECISION}'s {key} must be a number from 0 to 1, got {value!r}"[:300])
    photos = decision.get("photos")
    if "photos" in decision and not (isinstance(photos, int) and not isinstance(photos, bool) and photos >= 0):
        problems.append(f"{KEY_DECISION}'s photos must be a whole number of at least 0, got {photos!r}"[:300])
    if "chosen_on" in decision and not isinstance(decision["chosen_on"], str):
        problems.append(f"{KEY_DECISION}'s chosen_on must be a string")
    return problems


def _is_number(value: object) -> bool:
    # NaN and infinities fail the range checks that follow; a huge int compares exactly.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def use_face_detection(metadata: ModelMetadata, override: bool | None, *, warn: Callable[[str], None] = warn) -> bool:
    """Whether to detect faces: the --faces/--no-faces override, else the model's metadata."""
    if override is not None:
        return override
    kind = metadata.input_kind
    if kind is None:
        warn(
            f"the model does not record whether it expects face crops or whole images (no input_kind); "
            f"treating it as {DEFAULT_INPUT_KIND} (pass --faces if it was trained on faces)"
        )
        kind = DEFAULT_INPUT_KIND
    return kind == "faces"
