"""Finding faces in a frame, so a model trained on face crops sees face crops.

Two detectors behind one small interface (`detect(bgr) -> boxes`); `default_face_model` picks
YuNet where its file is cached and Haar otherwise:
- `HaarFaceDetector`: OpenCV 4.x ships its Haar cascades inside the wheel
  (`cv2.data.haarcascades`), so it works offline with nothing to download. Fast, but it
  misses turned and tilted faces and faces that fill the whole image.
- `YuNetFaceDetector` (`--face-model yunet` or `PATH`): OpenCV's small CNN detector
  (`cv2.FaceDetectorYN`), more robust; the model file comes from the OpenCV Zoo
  (`yunet`: fetched once into a user cache, gclf.runtime.faces.models).

A detector's `detect` gives its answer as it found it: (x, y, width, height[, score]) per
face, in pixels of the frame given. That answer is not trusted (a network can answer NaN,
infinity, an empty or inverted box, a box outside the frame, a score that is not a
probability): `find_faces` checks it before anything uses it, drops what is not a usable
face, and says how many it dropped. Every user of a detector in gclf goes through it (the
live loop, files, the Python API, training's crops, export's calibration).

OpenCV is imported inside the functions: `gclf-infer --help` reads constants of this package
and must not pay for loading OpenCV.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Sequence

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

    def detect(self, bgr: np.ndarray) -> Sequence[Sequence[float]]:
        """The faces in a BGR uint8 image as the detector answers: (x, y, width, height) or
        (x, y, width, height, score) each, in the image's pixels. Unchecked: use `find_faces`."""
        ...


class Found(NamedTuple):
    """A detector's answer, checked: the usable boxes (whole pixels, inside the frame, left to
    right) and how many entries of the answer were dropped as unusable."""

    boxes: list[Box]
    dropped: int


def dropped_answers(n: int) -> str:
    """How a run's summary says that `n` entries of the detector's answers were dropped."""
    return f"{n} detector answer{'' if n == 1 else 's'} dropped"


def find_faces(detector: FaceDetector, bgr: np.ndarray) -> Found:
    """The faces `detector` finds in a BGR frame, its answer checked (`check_answer`)."""
    return check_answer(detector.detect(bgr), bgr.shape[:2])


def check_answer(answer: Any, frame_hw: tuple[int, int]) -> Found:
    """A detector's answer as usable boxes: an entry is dropped (and counted) unless it is four
    finite numbers, or four and a score from 0 to 1, with a positive width and height and
    something left inside the frame once clipped to it. None is no face."""
    h, w = frame_hw
    boxes, dropped = [], 0
    for entry in () if answer is None else answer:
        box = _usable_box(entry, w, h)
        if box is None:
            dropped += 1
        else:
            boxes.append(box)
    return Found(sorted(boxes), dropped)


def _usable_box(entry: Any, frame_w: int, frame_h: int) -> Box | None:
    try:
        values = [float(v) for v in entry]
    except (TypeError, ValueError):  # not a sequence of numbers
        return None
    if len(values) not in (4, 5) or not all(math.isfinite(v) for v in values):
        return None
    x, y, bw, bh = values[:4]
    if bw <= 0 or bh <= 0 or (len(values) == 5 and not 0.0 <= values[4] <= 1.0):
        return None
    # Clipped before rounding: finite values can still add up to infinity (1e308 + 1e308).
    x0, y0 = round(max(0.0, x)), round(max(0.0, y))
    x1, y1 = round(min(float(frame_w), x + bw)), round(min(float(frame_h), y + bh))
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def downscaled(bgr: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """`bgr` shrunk so its longer side is at most `max_side`, and the factor back to full size."""
    import cv2

    h, w = bgr.shape[:2]
    scale = max(h, w) / max_side
    if scale <= 1.0:
        return bgr, 1.0
    small = cv2.resize(bgr, (round(w / scale), round(h / scale)), interpolation=cv2.INTER_AREA)
    return small, scale


def _scaled(rows: Any, scale: float) -> list[tuple[float, ...]]:
    """The working copy's boxes (x, y, w, h[, score]) in the full frame's pixels, unchecked."""
    return [(*(float(v) * scale for v in row[:4]), *(float(v) for v in row[4:])) for row in rows]


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

    def detect(self, bgr: np.ndarray) -> list[tuple[float, ...]]:
        import cv2

        small, scale = downscaled(bgr, self.max_side)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))  # evens out lighting
        side = max(20, round(min(grey.shape) * self.MIN_FACE_FRACTION))  # the cascade's window is 24 px
        found = self._cascade.detectMultiScale(
            grey, scaleFactor=self.SCALE_FACTOR, minNeighbors=self.MIN_NEIGHBORS, minSize=(side, side)
        )
        return _scaled(found, scale)


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

    def detect(self, bgr: np.ndarray) -> list[tuple[float, ...]]:
        small, scale = downscaled(bgr, self.max_side)
        size = (small.shape[1], small.shape[0])
        if size != self._size:  # re-planning the network per call would cost time
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(small)
        if faces is None:
            return []
        # Each row: x, y, w, h, five landmarks (x, y), score; the score is checked with the box.
        return _scaled([(*row[:4], row[14]) for row in faces], scale)


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
