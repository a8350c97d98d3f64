"""Face crops: boxes widened by a margin, cut out of a frame and turned into model input.

`faces_to_model_input` (detect, then crop) and `boxes_to_model_input` (crop boxes found
earlier) go through the preprocessing contract, so the live loop, `Classifier.predict_faces`
and training's crops (`FaceCropper`, as a `FaceCropSpec` records) cut faces the same way.
Each takes the detector's answer through `find_faces`, which drops what is not a usable box.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from gclf.runtime.faces.detectors import (
    DETECT_MAX_SIDE,
    Box,
    FaceDetector,
    Found,
    HaarFaceDetector,
    YuNetFaceDetector,
    detector_file,
    detector_of,
    find_faces,
)
from gclf.runtime.faces.spec import FaceCropSpec
from gclf.runtime.files import sha256_file

if TYPE_CHECKING:
    import numpy as np

    from gclf.runtime.preprocess import PreprocessSpec

# How much each face box is widened on every side before cropping, as a share of its size.
# Measured on gender-faces (benchmarks/live_bench.py): YuNet's box is about 96% of the
# photo's side, i.e. those face-crop photos are framed about as tightly as the detector's
# box, hence 0; face crops with more context around the face need a larger margin.
DEFAULT_FACE_MARGIN = 0.0

# What `predict_files(faces=True)` does with a photo in which no face is found: classify the
# whole image (the default: on photos of people in scenes, largest face else whole image gave
# 73.7% where whole images alone gave 52.6% on the study's photos), or leave it unclassified.
NO_FACE_ACTIONS = ("whole", "skip")


def expand_box(box: Box, frame_hw: tuple[int, int], margin: float) -> Box:
    """Widen `box` by `margin` times its width/height on every side, clipped to the frame.

    The crop the model sees should be framed like its training crops (see DEFAULT_FACE_MARGIN).
    """
    x, y, w, h = box
    fh, fw = frame_hw
    dx, dy = round(w * margin), round(h * margin)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(fw, x + w + dx), min(fh, y + h + dy)
    return (x0, y0, x1 - x0, y1 - y0)


def face_crops(bgr: np.ndarray, boxes: Sequence[Box], margin: float) -> list[np.ndarray]:
    """RGB crops (the preprocessing contract's input) of the faces in a BGR frame."""
    import cv2

    return [cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) for crop in bgr_crops(bgr, boxes, margin)]


def bgr_crops(bgr: np.ndarray, boxes: Sequence[Box], margin: float) -> list[np.ndarray]:
    """Views of the faces in a BGR frame, each box widened by `margin` (no copy)."""
    crops = []
    for box in boxes:
        x, y, w, h = expand_box(box, bgr.shape[:2], margin)
        crops.append(bgr[y : y + h, x : x + w])
    return crops


def faces_to_model_input(
    bgr: np.ndarray, spec: PreprocessSpec, detector: FaceDetector, *, margin: float = DEFAULT_FACE_MARGIN
) -> tuple[Found, np.ndarray]:
    """The faces in a BGR frame as detected (checked: `found.boxes`, and `found.dropped` entries
    of the detector's answer that were not usable), and their crops (each widened by `margin`)
    as one float32 model-input batch, in the same order."""
    found = find_faces(detector, bgr)
    return found, boxes_to_model_input(bgr, found.boxes, spec, margin=margin)


def boxes_to_model_input(bgr: np.ndarray, boxes: Sequence[Box], spec: PreprocessSpec, *, margin: float = DEFAULT_FACE_MARGIN) -> np.ndarray:
    """The crops of `boxes` (each widened by `margin`) as one float32 model-input batch, in order;
    for boxes found otherwise than by a detector on this frame (carried over by the live loop's tracker)."""
    from gclf.runtime.preprocess import preprocess_batch  # here: it loads numpy and OpenCV, and --help reads this package

    return preprocess_batch(bgr_crops(bgr, boxes, margin), spec, color="bgr")


def largest_face(boxes: Sequence[Box]) -> Box | None:
    """The largest box (the first of equal ones: boxes come left to right), as the runtime
    lists a photo's faces largest first."""
    return min(boxes, key=lambda b: -b[2] * b[3]) if boxes else None


def face_crop_spec(face_model: Path | str | None, margin: float = DEFAULT_FACE_MARGIN) -> tuple[FaceCropSpec, Path]:
    """The FaceCropSpec of the detector `face_model` names (make_detector's values) with the
    runtime's detection settings, and the detector's file (for "haar" the bundled cascade).
    The detector is built once here, so a bad file fails now, with its one sentence."""
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




class FaceCropper:
    """Crops an RGB image to its largest face, as a FaceCropSpec says; None without a face.

    Picklable (worker processes): the OpenCV detector is made on first use in each process
    and never pickled. `key` identifies the crop (for cache keys of cropped images).
    `detector`: one to use in this process instead of making the one `spec` names (a stand-in,
    or one already loaded); a pickled copy makes its own. `dropped`: entries of the detector's
    answers dropped as unusable so far, in this process.
    """

    def __init__(self, spec: FaceCropSpec, model_path: Path | None, *, detector: FaceDetector | None = None) -> None:
        self.spec = spec
        self.model_path = None if model_path is None else str(model_path)
        self._detector = detector
        self.dropped = 0

    @classmethod
    def create(cls, face_model: Path | str | None, margin: float = DEFAULT_FACE_MARGIN) -> "FaceCropper":
        spec, path = face_crop_spec(face_model, margin)
        return cls(spec, path if spec.kind == "yunet" else None)

    @property
    def key(self) -> str:
        s = self.spec
        return f"face:{s.kind}:{s.model_sha256[:16]}:m{s.margin:g}:max{s.detect_max_side}"

    def __getstate__(self) -> dict:
        return {"spec": self.spec, "model_path": self.model_path, "_detector": None, "dropped": 0}

    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = detector_of(self.spec.kind, self.model_path, max_side=self.spec.detect_max_side)
        return self._detector

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        import numpy as np

        bgr = np.ascontiguousarray(rgb[..., ::-1])  # the detectors take OpenCV's order
        found = find_faces(self.detector(), bgr)
        self.dropped += found.dropped
        box = largest_face(found.boxes)
        if box is None:
            return None
        x, y, w, h = expand_box(box, rgb.shape[:2], self.spec.margin)
        return np.ascontiguousarray(rgb[y : y + h, x : x + w])
