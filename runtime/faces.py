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
contract; the live loop and `Classifier.predict_faces` both call it.

OpenCV is imported inside the functions: `gclf-infer --help` reads DEFAULT_FACE_MARGIN from
here and must not pay for loading OpenCV.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Sequence

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
    return _detector_of(*_detector_file(face_model))


def _detector_of(kind: str, path: Path | str | None, *, max_side: int = DETECT_MAX_SIDE) -> FaceDetector:
    """A detector of `kind` ("haar" or "yunet", see FACE_CROP_KINDS); `path` is YuNet's file."""
    return HaarFaceDetector(max_side=max_side) if kind == "haar" else YuNetFaceDetector(path, max_side=max_side)


# --- the detector a model was trained with ---------------------------------------------------

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


def _haar_cascade_path() -> Path:
    import cv2

    return Path(cv2.data.haarcascades) / HAAR_CASCADE


def _detector_file(face_model: Path | str | None) -> tuple[str, Path]:
    """(kind, file) of the detector `--face-model` names (see make_detector); None: the
    default's (default_face_model)."""
    if face_model is None:
        face_model = default_face_model()
    if face_model == "haar":
        return "haar", _haar_cascade_path()
    if face_model == "yunet":
        from gclf.runtime.face_models import yunet_model_path

        return "yunet", yunet_model_path()
    return "yunet", Path(face_model)


def face_crop_spec(face_model: Path | str | None, margin: float = DEFAULT_FACE_MARGIN) -> tuple[FaceCropSpec, Path]:
    """The FaceCropSpec of the detector `face_model` names (make_detector's values) with the
    runtime's detection settings, and the detector's file (for "haar" the bundled cascade).
    The detector is built once here, so a bad file fails now, with its one sentence."""
    from gclf.runtime.listing import sha256_file

    kind, path = _detector_file(face_model)
    _detector_of(kind, path)
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
            self._detector = _detector_of(self.spec.kind, self.model_path, max_side=self.spec.detect_max_side)
        return self._detector

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        import numpy as np

        bgr = np.ascontiguousarray(rgb[..., ::-1])  # the detectors take OpenCV's order
        box = largest_face(self.detector().detect(bgr))
        if box is None:
            return None
        x, y, w, h = expand_box(box, rgb.shape[:2], self.spec.margin)
        return np.ascontiguousarray(rgb[y : y + h, x : x + w])


def resolve_face_margin(face_margin: float | None, recorded: FaceCropSpec | None) -> float:
    """The margin to crop with: the explicit one, else the model's training margin, else
    DEFAULT_FACE_MARGIN."""
    if face_margin is not None:
        return face_margin
    return recorded.margin if recorded is not None else DEFAULT_FACE_MARGIN


def resolve_face_detection(
    face_model: Path | str | None,
    face_margin: float | None,
    recorded: FaceCropSpec | None,
    *,
    model_dir: Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[Path | str, float]:
    """(face model, margin) to detect with: an explicit option wins, else what the model
    records it was trained with, else today's default (default_face_model, DEFAULT_FACE_MARGIN).

    A recorded YuNet is looked for by its file name in the model's folder and the face-model
    cache; a file found there whose sha256 is not the recorded one is used, with one sentence
    through `warn`. Not found, it is never replaced by another detector: only a recorded file
    that is the pinned YuNet (gclf.runtime.face_models) is fetched, and only into a cache that
    can be written (a service at boot may have neither network nor a writable home: no
    download is tried then). Anything else is a `WeightsUnavailableError` (exit 7) naming the
    file and where to put it. An explicit `face_model` path that is not the recorded file is
    used, with one sentence through `warn` (a device's unit names its detector by path).
    """
    margin = resolve_face_margin(face_margin, recorded)
    if face_model is not None:
        if warn is not None and recorded is not None and isinstance(face_model, Path):
            if recorded.kind == "haar":
                warn(f"the model was trained on crops by the Haar cascade and --face-model names the YuNet file {face_model}; "
                     "its crops may differ from training's (--face-model haar crops as in training)")
            else:
                _warn_if_not_recorded(face_model, recorded, warn)
        return face_model, margin
    if recorded is None:
        return default_face_model(), margin
    if recorded.kind == "haar":
        path = _haar_cascade_path()
        chosen: Path | str = "haar"
    else:
        path = _recorded_yunet_file(recorded, model_dir)
        chosen = path
    if warn is not None:
        _warn_if_not_recorded(path, recorded, warn)
    return chosen, margin


def find_recorded_face_model(recorded: FaceCropSpec, model_dir: Path | None) -> tuple[Path | None, list[Path]]:
    """Where a recorded detector file is looked for, in order (beside the model, then gclf's
    face-model cache), and the first that holds it (None: in none of them). Nothing is
    downloaded; gclf-infer --check asks the same question."""
    from gclf.runtime.face_models import cache_dir

    folders = ([model_dir] if model_dir is not None else []) + [cache_dir()]
    return next((d / recorded.model_file for d in folders if (d / recorded.model_file).is_file()), None), folders


def _recorded_yunet_file(recorded: FaceCropSpec, model_dir: Path | None) -> Path:
    """The recorded YuNet's file: beside the model, in the cache, or (the pinned file only,
    into a writable cache) downloaded; see resolve_face_detection."""
    from gclf.runtime.errors import GclfError, WeightsUnavailableError
    from gclf.runtime.face_models import cache_dir, yunet_model_path, yunet_source

    path, folders = find_recorded_face_model(recorded, model_dir)
    if path is not None:
        return path
    missing = (
        f"the model was trained on crops by YuNet file {recorded.model_file} (sha256 {recorded.model_sha256}), "
        f"which is not in {' or '.join(map(str, folders))}"
    )
    put_it = "copy that file beside the model, or pass --face-model PATH"
    if recorded.model_sha256 != yunet_source().sha256:
        raise WeightsUnavailableError(f"{missing}, and it is not the YuNet gclf can download: {put_it}")
    if not _writable(cache_dir()):
        raise WeightsUnavailableError(f"{missing}, and {cache_dir()} cannot be written to download it: {put_it}")
    try:
        return yunet_model_path()  # the pinned file: downloaded once
    except GclfError as exc:  # no network (exit 7), or the cache could not be written after all (exit 11)
        raise WeightsUnavailableError(f"{missing}, and it could not be downloaded: {put_it} ({exc})") from None


def _writable(folder: Path) -> bool:
    """Whether `folder` exists and can be written, or could be created (its nearest existing
    ancestor is a writable folder)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def _warn_if_not_recorded(path: Path, recorded: FaceCropSpec, warn: Callable[[str], None]) -> None:
    from gclf.runtime.listing import sha256_file

    found = sha256_file(path) if path.is_file() else recorded.model_sha256
    if found != recorded.model_sha256:
        warn(
            f"the model was trained on crops by {recorded.kind} file {recorded.model_file} (sha256 {recorded.model_sha256[:12]}...) "
            f"and {path} is another file (sha256 {found[:12]}...); its crops may differ a little from training's"
        )
