"""What a gclf ONNX file says about itself, stored as JSON strings in `metadata_props`.

Keys (all required unless noted):
- `gclf.format_version`: "2" for a file that records a calibration, else "1". A gclf that
  knows only "1" refuses a "2" file in one sentence instead of answering with the raw softmax
  its writer did not mean; this gclf refuses any version newer than FORMAT_VERSION likewise.
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
  They are raw logits: a recorded calibration is applied after the engine, never inside it.
- `gclf.calibration` (optional): JSON object, the calibration every runtime path applies to
  the logits (gclf.runtime.calibration.Calibration: temperature or vector scaling, and what
  it was fitted on). Without it the answers are the plain softmax.
- `gclf.decision` (optional): JSON object, the default decision threshold (`Decision`):
  answers whose confidence is below "min_confidence" are unsure; with how it was chosen.
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

from gclf.runtime.calibration import KEY_CALIBRATION, Calibration
from gclf.runtime.errors import BadModelError
from gclf.runtime.labels import UNSURE, is_unsure
from gclf.runtime.log import warn
from gclf.runtime.faces.spec import FaceCropSpec
from gclf.runtime.preprocess import PreprocessSpec

FORMAT_VERSION = "2"  # the newest this gclf reads and writes
PLAIN_FORMAT_VERSION = "1"  # what a file without a calibration is written as (every gclf reads it)
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
class Decision:
    """The default decision threshold a model records (KEY_DECISION): an answer whose
    confidence is below `min_confidence` is unsure. The other fields say how it was chosen."""

    min_confidence: float  # in [0, 1], on the probabilities the runtime answers (calibrated where recorded)
    chosen_on: str  # the photos it was chosen on, in words
    target_accuracy: float  # the accuracy the answers given were to reach there
    coverage: float  # the share of those photos answered at min_confidence
    accuracy: float  # how often those answers were right
    photos: int  # how many photos it was chosen on
    rule: str = ""  # the rule that chose it, in words

    def __post_init__(self) -> None:
        shares = {k: getattr(self, k) for k in ("min_confidence", "target_accuracy", "coverage", "accuracy")}
        bad = [k for k, v in shares.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1]
        if bad:
            raise BadModelError(f"{KEY_DECISION}: {', '.join(bad)} must be {'a number' if len(bad) == 1 else 'numbers'} from 0 to 1"[:300])
        if isinstance(self.photos, bool) or not isinstance(self.photos, int) or self.photos < 0:
            raise BadModelError(f"{KEY_DECISION}: photos must be a whole number of at least 0, got {self.photos!r}"[:300])
        for name in ("chosen_on", "rule"):
            if not isinstance(getattr(self, name), str):
                raise BadModelError(f"{KEY_DECISION}: {name} must be a string")

    def to_dict(self) -> dict[str, Any]:
        record = {k: getattr(self, k) for k in ("min_confidence", "chosen_on", "target_accuracy", "coverage", "accuracy", "photos")}
        return {**record, "rule": self.rule} if self.rule else record

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "Decision":
        needed = ("min_confidence", "chosen_on", "target_accuracy", "coverage", "accuracy", "photos")
        missing = [k for k in needed if k not in record]
        if missing:
            raise BadModelError(f"{KEY_DECISION} is missing {', '.join(missing)}")
        return cls(**{k: record[k] for k in needed}, rule=record.get("rule", ""))


@dataclass(frozen=True)
class ModelMetadata:
    spec: PreprocessSpec
    class_names: tuple[str, ...]
    variant: str = "fp32"
    training: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    reference_outputs: str | None = None  # KEY_REFERENCE's JSON text, as the file holds it
    calibration: Calibration | None = None  # applied to the logits by every runtime path
    decision: Decision | None = None  # the default decision threshold

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
        """The recorded default decision threshold, None where the model records none."""
        return None if self.decision is None else float(self.decision.min_confidence)

    @property
    def format_version(self) -> str:
        """What `to_props` writes: "2" where a calibration is recorded (a runtime that would
        ignore it refuses the file instead), else "1"."""
        return FORMAT_VERSION if self.calibration is not None else PLAIN_FORMAT_VERSION

    def to_props(self) -> dict[str, str]:
        props = {
            KEY_FORMAT: self.format_version,
            KEY_PREPROCESS: self.spec.to_json(),
            KEY_CLASSES: json.dumps(list(self.class_names)),
            KEY_VARIANT: self.variant,
            KEY_TRAINING: json.dumps(self.training, sort_keys=True),
        }
        if self.quantization is not None:
            props[KEY_QUANTIZATION] = json.dumps(self.quantization, sort_keys=True)
        if self.reference_outputs is not None:
            props[KEY_REFERENCE] = self.reference_outputs
        if self.calibration is not None:
            props[KEY_CALIBRATION] = self.calibration.to_json()
        if self.decision is not None:
            props[KEY_DECISION] = self.decision.to_json()
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], *, source: str = "model") -> "ModelMetadata":
        """Parse and validate; raises `BadModelError` with a sentence naming `source`."""
        if KEY_FORMAT not in props:
            raise BadModelError(
                f"{source} has no gclf metadata: it was not written by gclf-export "
                "(a gclf model carries its preprocessing and class names inside the file)"
            )
        check_format_version(props[KEY_FORMAT], source)
        missing = [k for k in (KEY_PREPROCESS, KEY_CLASSES, KEY_VARIANT, KEY_TRAINING) if k not in props]
        if missing:
            raise BadModelError(f"{source}: gclf metadata is missing {', '.join(missing)}")
        try:
            spec = PreprocessSpec.from_json(props[KEY_PREPROCESS])
            classes = _json(props[KEY_CLASSES], KEY_CLASSES, list)
            training = _json(props[KEY_TRAINING], KEY_TRAINING, dict)
            quant = _json(props[KEY_QUANTIZATION], KEY_QUANTIZATION, dict) if KEY_QUANTIZATION in props else None
            calibration = Calibration.from_dict(_json(props[KEY_CALIBRATION], KEY_CALIBRATION, dict)) if KEY_CALIBRATION in props else None
            decision = Decision.from_dict(_json(props[KEY_DECISION], KEY_DECISION, dict)) if KEY_DECISION in props else None
            return cls(spec=spec, class_names=tuple(classes), variant=props[KEY_VARIANT], training=training, quantization=quant,
                       reference_outputs=props.get(KEY_REFERENCE), calibration=calibration, decision=decision)
        except BadModelError as exc:
            raise BadModelError(f"{source}: {exc}") from None
        except (ArithmeticError, RecursionError, TypeError, ValueError) as exc:
            # Values no check above foresaw (a number too large for a float, ...): the file is
            # untrusted input, so one sentence naming it, never a traceback.
            raise BadModelError(f"{source}: gclf metadata holds a value gclf cannot use ({type(exc).__name__}: {_short(exc)})") from None


def check_format_version(version: str, source: str) -> None:
    """Refuse a `gclf.format_version` this gclf cannot read: one newer than FORMAT_VERSION
    (it may record something this gclf would silently ignore, such as a calibration) asks for
    a newer gclf; anything else that is not a known version is not gclf metadata."""
    if version in (PLAIN_FORMAT_VERSION, FORMAT_VERSION):
        return
    if version.isascii() and version.isdigit() and len(version) < 10 and int(version) > int(FORMAT_VERSION):
        raise BadModelError(
            f"{source} was written by a newer gclf (metadata format version {version}; this gclf reads versions "
            f"{PLAIN_FORMAT_VERSION} to {FORMAT_VERSION}): upgrade gclf to run it"
        )
    raise BadModelError(f"{source}: gclf metadata version {version[:40]!r} is not supported (this gclf reads versions {PLAIN_FORMAT_VERSION} to {FORMAT_VERSION})")


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
    if meta.calibration is not None and meta.calibration.n_classes not in (None, len(names)):
        problems.append(f"{KEY_CALIBRATION} scales {meta.calibration.n_classes} classes and the model has {len(names)}")
    crop = meta.training.get(KEY_FACE_CROP)
    if crop is not None:
        try:
            FaceCropSpec.from_dict(crop)
        except (ArithmeticError, TypeError, ValueError) as exc:
            problems.append(f"training.{KEY_FACE_CROP} is not a face-crop record ({exc})")
        if meta.training.get("input_kind") != "faces":
            problems.append(f"training.{KEY_FACE_CROP} is recorded for a model whose input_kind is not faces")
    return problems


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
