"""Finding faces in a frame, so a model trained on face crops sees face crops.

Two detectors behind one small interface (`detect(bgr) -> boxes`); `default_face_model` picks
YuNet where its file is cached and Haar otherwise:
- `HaarFaceDetector`: OpenCV 4.x ships its Haar cascades inside the wheel
  (`cv2.data.haarcascades`), so it works offline with nothing to download. Fast, but it
  misses turned and tilted faces and faces that fill the whole image.
- `YuNetFaceDetector` (`--face-model yunet` or `PATH`): OpenCV's small CNN detector
  (`cv2.FaceDetectorYN`), more robust; the model file comes from the OpenCV Zoo
  (`yunet`: fetched once into a user cache, gclf.runtime.face_models).

Boxes are (x, y, width, height) in pixels of the frame given. `faces_to_model_input` widens
them by a margin and turns the crops into one model-input batch through the preprocessing
contract; the live loop and `Classifier.predict_faces` both call it. Training's record of its
crop is gclf.runtime.face_crop, the choice of detector and margin gclf.runtime.face_choice.

OpenCV is imported inside the functions: `gclf-infer --help` reads DEFAULT_FACE_MARGIN from
here and must not pay for loading OpenCV.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from gclf.runtime.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from gclf.runtime.preprocess import PreprocessSpec

Box = tuple[int, int, int, int]  # x, y, width, height, in pixels

# How much each face box is widened on every side before cropping, as a share of its size.
# Measured on gender-faces (benchmarks/live_bench.py): YuNet's box is about 96% of the
# photo's side, i.e. those face-crop photos are framed about as tightly as the detector's
# box, hence 0; face crops with more context around the face need a larger margin.
DEFAULT_FACE_MARGIN = 0.0

# What `predict_files(faces=True)` does with a photo in which no face is found: classify the
# whole image (the default: on photos of people in scenes, largest face else whole image gave
# 73.7% where whole images alone gave 52.6%, issue 11), or leave it unclassified.
NO_FACE_ACTIONS = ("whole", "skip")

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


def _downscaled(bgr: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """`bgr` shrunk so its longer side is at most `max_side`, and the factor back to full size."""
    import cv2

    h, w = bgr.shape[:2]
    scale = max(h, w) / max_side
    if scale <= 1.0:
        return bgr, 1.0
    small = cv2.resize(bgr, (round(w / scale), round(h / scale)), interpolation=cv2.INTER_AREA)
    return small, scale


def _to_full(boxes: Sequence[Sequence[float]], scale: float, frame_hw: tuple[int, int]) -> list[Box]:
    h, w = frame_hw
    result = []
    for x, y, bw, bh in boxes:
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

        small, scale = _downscaled(bgr, self.max_side)
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

        from gclf.runtime.face_models import model_bytes

        try:
            # From the bytes that were checked, never the path again (see face_models.model_bytes).
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
        small, scale = _downscaled(bgr, self.max_side)
        size = (small.shape[1], small.shape[0])
        if size != self._size:  # re-planning the network per call would cost time
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(small)
        if faces is None:
            return []
        # Each row: x, y, w, h, five landmarks (x, y), score.
        return _to_full(faces[:, :4], scale, bgr.shape[:2])


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

    return [cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) for crop in _bgr_crops(bgr, boxes, margin)]


def _bgr_crops(bgr: np.ndarray, boxes: Sequence[Box], margin: float) -> list[np.ndarray]:
    """Views of the faces in a BGR frame, each box widened by `margin` (no copy)."""
    crops = []
    for box in boxes:
        x, y, w, h = expand_box(box, bgr.shape[:2], margin)
        crops.append(bgr[y : y + h, x : x + w])
    return crops


def faces_to_model_input(
    bgr: np.ndarray, spec: PreprocessSpec, detector: FaceDetector, *, margin: float = DEFAULT_FACE_MARGIN
) -> tuple[list[Box], np.ndarray]:
    """The faces in a BGR frame as detected, and their crops (each widened by `margin`) as one
    float32 model-input batch, in the same order."""
    boxes = detector.detect(bgr)
    return boxes, boxes_to_model_input(bgr, boxes, spec, margin=margin)


def boxes_to_model_input(bgr: np.ndarray, boxes: Sequence[Box], spec: PreprocessSpec, *, margin: float = DEFAULT_FACE_MARGIN) -> np.ndarray:
    """The crops of `boxes` (each widened by `margin`) as one float32 model-input batch, in order;
    for boxes found otherwise than by a detector on this frame (carried over by the live loop's tracker)."""
    from gclf.runtime.preprocess import preprocess_batch

    return preprocess_batch(_bgr_crops(bgr, boxes, margin), spec, color="bgr")


def default_face_model() -> Path | str:
    """The detector used where nothing names one (no `--face-model`, nothing recorded in the
    model): YuNet where its file is at hand, i.e. the pinned file is already in the user cache
    (`--face-model yunet` once puts it there), else "haar", the bundled cascade. Never downloads.

    Why YuNet when it can be had: on faces placed in scenes (benchmarks/scene_bench.py) it found
    84.6% of faces against Haar's 66.7% at a fifth of the time per frame, and in the live loop
    it is the faster of the two (docs/measurements.md). The one place this choice is made.
    """
    from gclf.runtime.face_models import cached_model_path, yunet_source

    path = cached_model_path(yunet_source())
    return path if path is not None else "haar"


def make_detector(face_model: Path | str | None) -> FaceDetector:
    """The detector `--face-model` names: None the default (`default_face_model`: YuNet if
    cached, else Haar), "haar" the bundled Haar cascade, "yunet" the pinned OpenCV Zoo YuNet
    from the user cache (downloaded once, see gclf.runtime.face_models), a path a YuNet ONNX file."""
    return detector_of(*detector_file(face_model))


def detector_of(kind: str, path: Path | str | None, *, max_side: int = DETECT_MAX_SIDE) -> FaceDetector:
    """A detector of `kind` ("haar" or "yunet", as gclf.runtime.face_crop.FACE_CROP_KINDS); `path` is YuNet's file."""
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
        from gclf.runtime.face_models import yunet_model_path

        return "yunet", yunet_model_path()
    return "yunet", Path(face_model)
