"""The face crop of training photos, recorded so that the runtime crops new photos the same way.

`FaceCropSpec` is what the checkpoint and the ONNX file's `gclf.training` ("face_crop") say
about the detector that cropped the training photos; `FaceCropper` crops a photo to its
largest face as a spec says (gclf-train --face-crop, and the export's quality gate).
Torch-free: the runtime reads the record back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from gclf.runtime.faces import (
    DEFAULT_FACE_MARGIN,
    DETECT_MAX_SIDE,
    Box,
    FaceDetector,
    HaarFaceDetector,
    YuNetFaceDetector,
    detector_file,
    detector_of,
    expand_box,
)

if TYPE_CHECKING:
    import numpy as np

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


def face_crop_spec(face_model: Path | str | None, margin: float = DEFAULT_FACE_MARGIN) -> tuple[FaceCropSpec, Path]:
    """The FaceCropSpec of the detector `face_model` names (make_detector's values) with the
    runtime's detection settings, and the detector's file (for "haar" the bundled cascade).
    The detector is built once here, so a bad file fails now, with its one sentence."""
    from gclf.runtime.listing import sha256_file

    kind, path = detector_file(face_model)
    detector_of(kind, path)
    spec = FaceCropSpec(
        kind=kind,
        model_sha256=sha256_file(path),
        model_file=path.name,
        margin=float(margin),
        min_face_fraction=HaarFaceDetector.MIN_FACE_FRACTION if kind == "haar" else None,
        score_threshold=YuNetFaceDetector.SCORE_THRESHOLD if kind == "yunet" else None,
        detect_max_side=DETECT_MAX_SIDE,
    )
    return spec, path


def largest_face(boxes: Sequence[Box]) -> Box | None:
    """The largest box (the first of equal ones: boxes come left to right), as the runtime
    lists a photo's faces largest first."""
    return min(boxes, key=lambda b: -b[2] * b[3]) if boxes else None


class FaceCropper:
    """Crops an RGB image to its largest face, as a FaceCropSpec says; None without a face.

    Picklable (worker processes): the OpenCV detector is made on first use in each process
    and never pickled. `key` identifies the crop (for cache keys of cropped images).
    """

    def __init__(self, spec: FaceCropSpec, model_path: Path | None) -> None:
        self.spec = spec
        self.model_path = None if model_path is None else str(model_path)
        self._detector: FaceDetector | None = None

    @classmethod
    def create(cls, face_model: Path | str | None, margin: float = DEFAULT_FACE_MARGIN) -> "FaceCropper":
        spec, path = face_crop_spec(face_model, margin)
        return cls(spec, path if spec.kind == "yunet" else None)

    @property
    def key(self) -> str:
        s = self.spec
        return f"face:{s.kind}:{s.model_sha256[:16]}:m{s.margin:g}:max{s.detect_max_side}"

    def __getstate__(self) -> dict:
        return {"spec": self.spec, "model_path": self.model_path, "_detector": None}

    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = detector_of(self.spec.kind, self.model_path, max_side=self.spec.detect_max_side)
        return self._detector

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        import numpy as np

        bgr = np.ascontiguousarray(rgb[..., ::-1])  # the detectors take OpenCV's order
        box = largest_face(self.detector().detect(bgr))
        if box is None:
            return None
        x, y, w, h = expand_box(box, rgb.shape[:2], self.spec.margin)
        return np.ascontiguousarray(rgb[y : y + h, x : x + w])
