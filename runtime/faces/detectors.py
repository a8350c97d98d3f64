"""Finding faces in a frame, so a model trained on face crops sees face crops.

Two detectors behind one small interface (`detect(bgr) -> boxes`); `default_face_model` picks
YuNet where its file is cached and Haar otherwise:
- `HaarFaceDetector`: OpenCV 4.x ships its Haar cascades inside the wheel
  (`cv2.data.haarcascades`), so it works offline with nothing to download. Fast, but it
  misses turned and tilted faces and faces that fill the whole image.
- `YuNetFaceDetector` (`--face-model yunet` or `PATH`): OpenCV's small CNN detector
  (`cv2.FaceDetectorYN`), more robust; the model file comes from the OpenCV Zoo
  (`yunet`: fetched once into a user cache, gclf.runtime.faces.models).

Boxes are (x, y, width, height) in pixels of the frame given. A detector's raw answer is
checked before it is used: boxes that are not finite, empty, or outside the frame are dropped.

OpenCV is imported inside the functions: `gclf-infer --help` reads constants of this package
and must not pay for loading OpenCV.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from gclf.runtime.errors import UsageError
from gclf.runtime.faces.models import cached_model_path, model_bytes, yunet_model_path, yunet_source

if TYPE_CHECKING:
    import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height, in pixels

# Detection runs on a copy whose longer side is at most this: its cost grows with the pixels.
# Measured (benchmarks/live_bench.py, 2-core x86, 640x480 frames with a 240 px face): Haar
# 46 -> 23 ms and YuNet 45 -> 9 ms per frame from 640 to 320, finding faces in 78 -> 76 and
# 100 -> 99 of 100 frames. At 320 a face must still be about 40 px high in a 640x480 frame.
DETECT_MAX_SIDE = 320
HAAR_CASCADE = "haarcascade_frontalface_default.xml"


class FaceDetector(Protocol):
    name: str  # for messages and reports: "haar", "yunet"

    def detect(self, bgr: np.ndarray) -> list[Box]:
        """Faces in a BGR uint8 image, sorted left to right."""
        ...


def downscaled(bgr: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """`bgr` shrunk so its longer side is at most `max_side`, and the factor back to full size."""
    import cv2

    h, w = bgr.shape[:2]
    scale = max(h, w) / max_side
    if scale <= 1.0:
        return bgr, 1.0
    small = cv2.resize(bgr, (round(w / scale), round(h / scale)), interpolation=cv2.INTER_AREA)
    return small, scale


def _to_full(boxes: Sequence[Sequence[float]], scale: float, frame_hw: tuple[int, int]) -> list[Box]:
    """Boxes of the working copy as whole-pixel boxes of the full frame, clipped to it. A
    detector's answer is not trusted: a box with a coordinate that is not finite (a network
    can answer NaN or infinity) or with nothing left inside the frame is dropped."""
    h, w = frame_hw
    result = []
    for box in boxes:
        if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
            continue
        x, y, bw, bh = (float(v) for v in box)
        if bw <= 0 or bh <= 0:
            continue
        x0, y0 = max(0, round(x * scale)), max(0, round(y * scale))
        x1, y1 = min(w, round((x + bw) * scale)), min(h, round((y + bh) * scale))
        if x1 > x0 and y1 > y0:
            result.append((x0, y0, x1 - x0, y1 - y0))
    return sorted(result)


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade, bundled with opencv-python(-headless) 4.x."""

    name = "haar"
    MIN_FACE_FRACTION = 0.08  # smallest face, as a share of the shorter side
    MIN_NEIGHBORS = 5  # higher: fewer false faces, more missed ones
    SCALE_FACTOR = 1.1

    def __init__(self, *, max_side: int = DETECT_MAX_SIDE) -> None:
        import cv2

        self.max_side = max_side  # the working copy's longer side (benchmarks/track_bench.py varies it)
        path = os.path.join(cv2.data.haarcascades, HAAR_CASCADE)
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise UsageError(
                f"OpenCV's Haar cascade {HAAR_CASCADE} was not found in {cv2.data.haarcascades}; "
                "install opencv-python-headless 4.x (it ships the cascades) or use a YuNet face model"
            )

    def detect(self, bgr: np.ndarray) -> list[Box]:
        import cv2

        small, scale = downscaled(bgr, self.max_side)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))  # evens out lighting
        side = max(20, round(min(grey.shape) * self.MIN_FACE_FRACTION))  # the cascade's window is 24 px
        found = self._cascade.detectMultiScale(
            grey, scaleFactor=self.SCALE_FACTOR, minNeighbors=self.MIN_NEIGHBORS, minSize=(side, side)
        )
        return _to_full(found, scale, bgr.shape[:2])


class YuNetFaceDetector:
    """OpenCV's YuNet CNN face detector (`cv2.FaceDetectorYN`) from an ONNX file."""

    name = "yunet"
    SCORE_THRESHOLD = 0.7
    NMS_THRESHOLD = 0.3

    def __init__(self, model_path: str | os.PathLike, *, max_side: int = DETECT_MAX_SIDE) -> None:
        import cv2

        self.path = Path(model_path)
        self.max_side = max_side  # benchmarks/scene_bench.py's reference boxes use full resolution
        if not self.path.is_file():
            raise UsageError(f"{self.path}: no such face model file")
        import numpy as np

        try:
            # From the bytes that were checked, never the path again (see faces.models.model_bytes).
            # The input size is set per frame in detect(); 320x320 is only a placeholder.
            weights = np.frombuffer(model_bytes(self.path), np.uint8)
            self._net = cv2.FaceDetectorYN.create("onnx", weights, np.empty(0, np.uint8), (320, 320), self.SCORE_THRESHOLD, self.NMS_THRESHOLD, 5000)
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot read the face model ({exc.strerror or exc})") from None
        except cv2.error as exc:
            lines = str(exc).strip().splitlines()
            raise UsageError(f"{self.path}: not a YuNet face model OpenCV can load ({lines[-1] if lines else exc})") from None
        self._size: tuple[int, int] = (320, 320)

    def detect(self, bgr: np.ndarray) -> list[Box]:
        small, scale = downscaled(bgr, self.max_side)
        size = (small.shape[1], small.shape[0])
        if size != self._size:  # re-planning the network per call would cost time
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(small)
        if faces is None:
            return []
        # Each row: x, y, w, h, five landmarks (x, y), score.
        return _to_full(faces[:, :4], scale, bgr.shape[:2])


def default_face_model() -> Path | str:
    """The detector used where nothing names one (no `--face-model`, nothing recorded in the
    model): YuNet where its file is at hand, i.e. the pinned file is already in the user cache
    (`--face-model yunet` once puts it there), else "haar", the bundled cascade. Never downloads.

    Why YuNet when it can be had: on faces placed in scenes (benchmarks/scene_bench.py) it found
    84.6% of faces against Haar's 66.7% at a fifth of the time per frame, and in the live loop
    it is the faster of the two (docs/measurements.md). The one place this choice is made.
    """
    path = cached_model_path(yunet_source())
    return path if path is not None else "haar"


def make_detector(face_model: Path | str | None) -> FaceDetector:
    """The detector `--face-model` names: None the default (`default_face_model`: YuNet if
    cached, else Haar), "haar" the bundled Haar cascade, "yunet" the pinned OpenCV Zoo YuNet
    from the user cache (downloaded once, see gclf.runtime.faces.models), a path a YuNet ONNX file."""
    return detector_of(*detector_file(face_model))


def detector_of(kind: str, path: Path | str | None, *, max_side: int = DETECT_MAX_SIDE) -> FaceDetector:
    """A detector of `kind` ("haar" or "yunet", as gclf.runtime.faces.spec.FACE_CROP_KINDS); `path` is YuNet's file."""
    return HaarFaceDetector(max_side=max_side) if kind == "haar" else YuNetFaceDetector(path, max_side=max_side)


def haar_cascade_path() -> Path:
    import cv2

    return Path(cv2.data.haarcascades) / HAAR_CASCADE


def detector_file(face_model: Path | str | None) -> tuple[str, Path]:
    """(kind, file) of the detector `--face-model` names (see make_detector); None: the
    default's (default_face_model)."""
    if face_model is None:
        face_model = default_face_model()
    if face_model == "haar":
        return "haar", haar_cascade_path()
    if face_model == "yunet":
        return "yunet", yunet_model_path()
    return "yunet", Path(face_model)
