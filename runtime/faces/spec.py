"""`FaceCropSpec`: the record of how training photos were cropped to faces.

What the checkpoint and the ONNX file's `gclf.training` ("face_crop") say about the detector
that cropped the training photos, so that the runtime crops new photos the same way. Plain
data with no imports of the detectors: the model's metadata reads it back
(gclf.runtime.faces.crops makes one from a detector, and crops as one says).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

# What `gclf.training`'s "face_crop" entry and a checkpoint's train_config record: the detector
# that cropped the training photos, so the runtime can crop new photos the same way.
FACE_CROP_KINDS = ("haar", "yunet")


@dataclass(frozen=True)
class FaceCropSpec:
    """How training photos were cropped to faces: the largest face the detector found, its box
    widened by `margin` (expand_box). Plain data, JSON in the checkpoint and in the ONNX file's
    `gclf.training` ("face_crop"); read back by the runtime, which must not import torch.

    `model_sha256` identifies the detector's file (for Haar the cascade XML that ships in the
    opencv wheel), `model_file` its file name (where the runtime looks for it). The detection
    settings are recorded as they were, so a later change of a default is visible.
    """

    kind: str  # one of FACE_CROP_KINDS
    model_sha256: str
    model_file: str
    margin: float
    min_face_fraction: float | None  # Haar: smallest face, share of the shorter side; YuNet: None (no minimum)
    score_threshold: float | None  # YuNet: smallest face score; Haar: None (it has none)
    detect_max_side: int  # detection runs on a copy whose longer side is at most this

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in FACE_CROP_KINDS:
            problems.append(f"kind must be one of {list(FACE_CROP_KINDS)}, got {self.kind!r}")
        if not (isinstance(self.model_sha256, str) and len(self.model_sha256) == 64):
            problems.append("model_sha256 must be a sha256 in hex")
        if not isinstance(self.model_file, str) or not self.model_file or "/" in self.model_file or "\\" in self.model_file:
            problems.append("model_file must be a file name")
        if not (isinstance(self.margin, (int, float)) and 0.0 <= self.margin <= 2.0):
            problems.append(f"margin must be a number from 0 to 2, got {self.margin!r}")
        for name in ("min_face_fraction", "score_threshold"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                problems.append(f"{name} must be null or a number from 0 to 1, got {value!r}")
        if not (isinstance(self.detect_max_side, int) and self.detect_max_side > 0):
            problems.append(f"detect_max_side must be a positive integer, got {self.detect_max_side!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "FaceCropSpec":
        """Raises ValueError naming what is wrong (missing or unknown fields, bad values)."""
        if not isinstance(d, Mapping):
            raise ValueError("must be a JSON object")
        names = {f.name for f in fields(cls)}
        missing, unknown = sorted(names - d.keys()), sorted(d.keys() - names)
        if missing or unknown:
            raise ValueError(f"fields do not match (missing {missing}, unknown {unknown})")
        return cls(**{k: d[k] for k in names})

    def describe(self) -> str:
        return f"{self.kind} ({self.model_file}, sha256 {self.model_sha256[:12]}...), margin {self.margin:g}"
