"""Run a gclf ONNX model: images in, labels and confidences out (onnxruntime by default, or
another engine of gclf.runtime.engine)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Iterator, Mapping, Sequence, Union

import numpy as np

from gclf.runtime.calibration import Calibration, softmax
from gclf.runtime.decode import decode_image
from gclf.runtime.engine import DEFAULT_ENGINE, DEFAULT_PRECISION, describe, open_engine
from gclf.runtime.errors import BadModelError, ImageDecodeError, UsageError
from gclf.runtime.faces.choice import resolve_face_detection, resolve_face_margin
from gclf.runtime.faces.crops import NO_FACE_ACTIONS, faces_to_model_input
from gclf.runtime.faces.detectors import Box, FaceDetector, make_detector
from gclf.runtime.log import warn
from gclf.runtime.files import open_regular_file
from gclf.runtime.labels import UNSURE
from gclf.runtime.metadata import ModelMetadata
from gclf.runtime.parity import read_references, verify_engine
from gclf.runtime.preprocess import COLOR_ORDERS, PreprocessSpec, preprocess_batch
from gclf.runtime.threshold import Threshold, resolve_threshold

# What `predict` takes: an image file's path, or a decoded uint8 (H, W, 3) array.
Image = Union[str, os.PathLike, np.ndarray]

DECODE_WORKERS = 2  # threads decoding and resizing files ahead of inference (OpenCV releases the GIL)



class _Answer:
    """What a Prediction and a FaceResult share: `best` defaults to `label`, and `unsure`."""

    label: str
    best: str

    def __post_init__(self) -> None:
        if not self.best:
            object.__setattr__(self, "best", self.label)

    @property
    def unsure(self) -> bool:
        return self.label == UNSURE


@dataclass(frozen=True)
class Prediction(_Answer):
    """The model's answer for one image.

    `label` is the most probable class, or `UNSURE` ("unsure") when that class's probability
    is below the classifier's `min_confidence`; `best` is always the most probable class."""

    label: str
    confidence: float  # probability of `best`, in [0, 1] (calibrated where the model records a calibration)
    probabilities: Mapping[str, float]  # every class name -> its probability, in the model's class order
    best: str = ""  # the most probable class; "" when built: then `label`


_NO_PROBABILITIES: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True)
class FaceResult(_Answer):
    """One face (or a whole frame) and the model's answer for it."""

    box: Box  # x, y, width, height as detected (without the crop margin); the whole frame without detection
    label: str  # the most probable class, or UNSURE (see Prediction)
    confidence: float  # probability of `best` (calibrated where the model records a calibration)
    # Empty where a result is built from a label and confidence alone (three fields, as the
    # live loop's results had before probabilities were added).
    probabilities: Mapping[str, float] = field(default_factory=lambda: _NO_PROBABILITIES)
    best: str = ""  # the most probable class; "" when built: then `label`

    @classmethod
    def of(cls, box: Box, prediction: Prediction) -> "FaceResult":
        return cls(tuple(int(v) for v in box), prediction.label, prediction.confidence, prediction.probabilities, prediction.best)


@dataclass(frozen=True)
class FileResult:
    """One file's outcome.

    Without face detection: the whole image's `prediction`, or the `error` that kept the file
    from being read. With it: `faces`, largest first; for a photo in which none was found
    `faces` is empty and `prediction` is the whole image's when that fallback was asked for
    (no_face="whole"), else None (see `fallback`).
    """

    path: Path
    prediction: Prediction | None
    error: str | None = None  # why the file could not be read
    faces: tuple[FaceResult, ...] | None = None  # None: no face detection was asked for
    detector_dropped: int = 0  # entries of the face detector's answer dropped as unusable (faces.find_faces)

    @property
    def fallback(self) -> str | None:
        """For a photo read but without a face: "whole_image" (classified as a whole) or
        "none" (not classified); None otherwise."""
        if self.faces is None or self.faces or self.error is not None:
            return None
        return "whole_image" if self.prediction is not None else "none"


def _dim(value: object) -> int | None:
    return value if isinstance(value, int) else None  # symbolic dims come back as str/None


class Classifier:
    """A loaded gclf model. Reads its preprocessing and class names from the file itself."""

    def __init__(self, model_path: str | os.PathLike, *, threads: int | None = None, spin: bool = True,
                 engine: str = DEFAULT_ENGINE, precision: str = DEFAULT_PRECISION, min_confidence: float | None = None,
                 calibrated: bool = True) -> None:
        """`engine`: "onnxruntime" (the default) or "openvino" (gclf.runtime.engine);
        `precision`: "fp32" (default) or "bf16" (OpenVINO, fp32 files) for what an fp32 file
        is computed in (an int8 file runs as it is). The first time an engine meets this model
        on this machine its answers are checked against the reference outputs the model
        records (gclf.runtime.parity; EngineRefusedError if they drift); `self.parity` says how.

        `min_confidence` (0 to 1): answers whose top confidence is below it get the label
        `UNSURE` ("unsure"; `best` keeps the top class); 0 turns this off; None (the default):
        the threshold the model records (`gclf.decision`), else none. `self.threshold` says
        which applies and where it came from (gclf-infer --min-confidence is the same).

        `spin=False` stops onnxruntime's threads from busy-waiting for work between runs:
        slower for back-to-back batches, but leaves the cores to other threads of the process
        (the live loop's capture and preparation threads).

        `calibrated=False` answers with the plain softmax of the logits even where the model
        records a calibration (gclf-eval fits a new one on those); by default every answer
        applies it (`self.calibration`, None where there is none or `calibrated` is False)."""
        self.path = Path(model_path)
        if not self.path.exists():
            raise BadModelError(f"{self.path}: no such model file")
        # A FIFO or device is refused at once, never waited on; the bytes read here are the
        # ones the engine loads and the parity check hashes.
        with open_regular_file(self.path, error=BadModelError) as fh:
            try:
                data = fh.read()
            except OSError as exc:
                raise BadModelError(f"{self.path}: cannot read file ({exc.strerror or exc})") from None
        self.engine = open_engine(self.path, data, engine=engine, precision=precision, threads=threads, spin=spin)
        self.metadata = ModelMetadata.from_props(self.engine.metadata_props(), source=str(self.path))
        self.threshold: Threshold = resolve_threshold(min_confidence, self.metadata)
        self.calibration: Calibration | None = self.metadata.calibration if calibrated else None
        self._check_graph()
        self._default_detector: FaceDetector | None = None  # made on the first predict_faces
        self.parity = verify_engine(
            self.engine.run, engine=describe(self.engine), model=data, spec=self.spec,
            references=read_references(self.metadata.reference_outputs, len(self.class_names), str(self.path)),
            reference_engine=None if engine == DEFAULT_ENGINE else lambda: open_engine(self.path, data, threads=threads).run,
            source=str(self.path),
        )

    @property
    def session(self):
        """The onnxruntime session (None with another engine)."""
        return getattr(self.engine, "session", None)

    @property
    def spec(self) -> PreprocessSpec:
        return self.metadata.spec

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    @property
    def min_confidence(self) -> float:
        """The threshold in use (0: every answer is given); see `threshold`."""
        return self.threshold.min_confidence

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label an answer can have: the class names, and `UNSURE` while a threshold applies."""
        return self.class_names + ((UNSURE,) if self.threshold.active else ())

    def _check_graph(self) -> None:
        inputs, outputs = self.engine.input_shapes(), self.engine.output_shapes()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BadModelError(f"{self.path}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
        shape = inputs[0]
        expected = self.spec.input_shape_chw
        if len(shape) != 4 or any(_dim(s) not in (None, e) for s, e in zip(shape[1:], expected)):
            raise BadModelError(f"{self.path}: model input shape {shape} disagrees with its metadata (N, {expected})")
        out_shape = outputs[0]
        n_classes = len(self.class_names)
        if len(out_shape) != 2 or _dim(out_shape[1]) not in (None, n_classes):
            raise BadModelError(
                f"{self.path}: model output shape {out_shape} disagrees with its {n_classes} class names"
            )

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Model input (N, 3, H, W) float32 -> logits (N, C).

        A model that loads can still fail when run (a node that allocates more memory than
        there is, shapes that only clash at run time): the engine's error becomes one
        sentence naming the model (BadModelError, exit 6), not a traceback."""
        return self.engine.run(batch)

    def predict_input(self, batch: np.ndarray) -> list[Prediction]:
        """Model input (N, 3, H, W) float32, already preprocessed -> predictions.

        Outputs that are not finite numbers (NaN, infinity: damaged weights, or a model
        exported from a diverged training) are a `BadModelError` naming the model, so no
        NaN ever reaches a result, a table or a JSON line."""
        with self._memory_for(len(batch)):
            logits = self.logits(batch)
            _check_finite(logits, self.path, "the model's output")
            return [self.prediction(p) for p in self.probabilities(logits)]

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(N, C) logits -> (N, C) probabilities as this classifier answers: the model's
        recorded calibration applied (whatever the engine), else the plain softmax."""
        if self.calibration is None:
            return softmax(logits)
        probs = self.calibration.apply(logits)
        _check_finite(probs, self.path, f"the recorded calibration ({self.calibration.describe()})")
        return probs

    @contextlib.contextmanager
    def _memory_for(self, n_inputs: int) -> Iterator[None]:
        """Turn running out of memory for this model's inputs into one sentence naming the
        model (BadModelError, exit 6): a model whose input is far larger than GoogLeNet's
        224x224 needs memory in proportion (4096x4096 is 201 MB an image as float32)."""
        try:
            yield
        except MemoryError:
            per_input = 4 * 3 * self.spec.input_height * self.spec.input_width
            raise BadModelError(
                f"{self.path}: not enough memory to run this model, whose {self.spec.input_width}x{self.spec.input_height} "
                f"input takes {per_input / 1e6:.0f} MB an image (in batches of up to {max(n_inputs, 1)}); use a smaller batch "
                "or a model with a smaller input"
            ) from None

    def prediction(self, probabilities: np.ndarray) -> Prediction:
        """One row of probabilities (`probabilities`'s) -> its `Prediction` (`UNSURE` below the threshold)."""
        top = int(np.argmax(probabilities))
        probs = MappingProxyType({c: float(p) for c, p in zip(self.class_names, probabilities)})
        best, confidence = self.class_names[top], float(probabilities[top])
        return Prediction(self.threshold.label(best, confidence), confidence, probs, best)

    def predict(self, image: Image, *, color: str = "rgb") -> Prediction:
        """Classify one image: a file path, or a uint8 (H, W, 3) array whose channel order
        `color` states ("rgb", or "bgr" for OpenCV frames; never guessed)."""
        return self.predict_batch([image], color=color)[0]

    def predict_batch(self, images: Sequence[Image], *, color: str = "rgb") -> list[Prediction]:
        """Classify several images in one inference call; `color` is the order of the arrays
        among them (files are decoded to RGB whatever it says)."""
        if not images:
            return []
        # Decoded files join the arrays' channel order (a view, no copy): one batch for all.
        arrays = [array if order == color else array[..., ::-1] for array, order in (_load(i, color) for i in images)]
        with self._memory_for(len(arrays)):
            batch = preprocess_batch(arrays, self.spec, color=color)
        return self.predict_input(batch)

    def predict_faces(
        self, image: Image, *, color: str = "rgb", detector: FaceDetector | None = None, margin: float | None = None
    ) -> list[FaceResult]:
        """Find the faces in an image and classify each; largest face first.

        For a model trained on face crops (its metadata's input_kind is "faces"). Detection
        is the live loop's: `detector` and `margin` default to those the model records it was
        trained with (gclf-train --face-crop), else to gclf.runtime.faces.default_face_model's
        (YuNet where its file is cached, else OpenCV's bundled Haar cascade) and
        DEFAULT_FACE_MARGIN. An image
        without a face gives an empty list; `predict_files(paths, faces=True)` does the same
        for files, with a whole-image fallback.
        """
        if self.metadata.input_kind != "faces":
            raise UsageError(
                f"{self.path.name} was not trained on face crops (input_kind {self.metadata.input_kind or 'not recorded'}); "
                "classify whole images with predict()"
            )
        array, order = _load(image, color)
        bgr = np.ascontiguousarray(array[..., ::-1] if order == "rgb" else array)  # detectors take OpenCV's order
        detector, margin = detector or self._model_detector(), self._face_margin(margin)
        with self._memory_for(1):
            prepared = self._prepare_faces(bgr, detector, margin, no_face="skip")
        faces, _ = self._run_prepared([prepared])[0]
        return list(faces)

    def predict_files(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        batch_size: int = 16,
        faces: bool = False,
        detector: FaceDetector | None = None,
        margin: float | None = None,
        no_face: str = "whole",
    ) -> Iterator[FileResult]:
        """Classify files in batches, in order; a file that cannot be decoded yields a result
        with `error`.

        `faces=True` finds the faces in each photo as `predict_faces` does (`detector`,
        `margin`: the same defaults) and classifies every face; a photo without a face is
        classified as a whole (`no_face="whole"`) or left unclassified ("skip"). All faces of
        a batch of photos (about `batch_size` model inputs) go through one inference call.

        Decoding, detection and preprocessing run in a small thread pool (OpenCV releases the GIL),
        so they overlap with each other and with inference; at most a few batches are held.
        """
        if no_face not in NO_FACE_ACTIONS:
            raise ValueError(f"no_face must be one of {list(NO_FACE_ACTIONS)}, got {no_face!r}")
        paths = [Path(p) for p in paths]
        if faces:
            # One detector object serves both threads: OpenCV's detectors keep state per call
            # (YuNet its input size), so detection takes turns while decoding overlaps it.
            shared = _Serialised(detector or self._model_detector())
            face_margin = self._face_margin(margin)

            def prepare(rgb: np.ndarray) -> _Prepared:
                return self._prepare_faces(np.ascontiguousarray(rgb[..., ::-1]), shared, face_margin, no_face=no_face)

        else:

            def prepare(rgb: np.ndarray) -> _Prepared:
                return _Prepared((), preprocess_batch([rgb], self.spec), whole=True)

        def load(path: Path) -> _Prepared | str:
            try:
                return prepare(decode_image(path))
            except ImageDecodeError as exc:
                return str(exc)

        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool, self._memory_for(batch_size):
            pending: list[tuple[Path, _Prepared]] = []
            n_rows = 0
            for path, item in zip(paths, bounded_map(pool, load, paths, ahead=2 * batch_size)):
                if isinstance(item, str):
                    yield FileResult(path, None, item)
                    continue
                pending.append((path, item))
                n_rows += len(item.rows)
                if n_rows >= batch_size or len(pending) >= batch_size:  # photos left unclassified hold no rows
                    yield from self._file_results(pending, faces)
                    pending, n_rows = [], 0
            if pending:
                yield from self._file_results(pending, faces)

    def _model_detector(self) -> FaceDetector:
        """The detector the model records it was trained with (gclf-train --face-crop), else
        today's default (gclf.runtime.faces.choice.resolve_face_detection); made once per Classifier
        (loading a detector takes a while), so a warning about its file is given once."""
        if self._default_detector is None:
            face_model, _ = resolve_face_detection(None, None, self.metadata.face_crop, model_dir=self.path.parent, warn=warn)
            self._default_detector = make_detector(face_model)
        return self._default_detector

    def _face_margin(self, margin: float | None) -> float:
        """`margin` when given, else the model's training margin, else DEFAULT_FACE_MARGIN."""
        return resolve_face_margin(margin, self.metadata.face_crop)

    def _prepare_faces(self, bgr: np.ndarray, detector: FaceDetector, margin: float, *, no_face: str) -> _Prepared:
        """Detect and crop the faces of a BGR image (the live loop's `faces_to_model_input`);
        with none found and no_face="whole", the whole image instead."""
        found, batch = faces_to_model_input(bgr, self.spec, detector, margin=margin)
        if found.boxes or no_face == "skip":
            return _Prepared(tuple(found.boxes), batch, whole=False, dropped=found.dropped)
        return _Prepared((), preprocess_batch([bgr], self.spec, color="bgr"), whole=True, dropped=found.dropped)

    def _run_prepared(self, items: Sequence[_Prepared]) -> list[tuple[tuple[FaceResult, ...], Prediction | None]]:
        """Classify prepared images in one inference call: per image, its faces (largest
        first) and the whole image's prediction where it was classified whole."""
        rows = [item.rows for item in items if len(item.rows)]
        if not rows:
            return [((), None) for _ in items]
        preds = iter(self.predict_input(rows[0] if len(rows) == 1 else np.concatenate(rows)))
        out = []
        for item in items:
            got = [next(preds) for _ in range(len(item.rows))]
            if item.whole:
                out.append(((), got[0]))
            else:
                found = sorted((FaceResult.of(b, p) for b, p in zip(item.boxes, got)), key=_largest_first)
                out.append((tuple(found), None))
        return out

    def _file_results(self, pending: list[tuple[Path, _Prepared]], faces: bool) -> Iterator[FileResult]:
        for (path, item), (found, whole) in zip(pending, self._run_prepared([item for _, item in pending])):
            yield FileResult(path, whole, faces=found if faces else None, detector_dropped=item.dropped)


@dataclass(frozen=True)
class _Prepared:
    """One image made ready for the model: its faces' model input, or the whole image's."""

    boxes: tuple[Box, ...]  # the faces found, as detected; empty when `whole`
    rows: np.ndarray  # float32 model input: one row per face, or one for the whole image
    whole: bool  # `rows` is the whole image, classified as a whole
    dropped: int = 0  # entries of the detector's answer dropped as unusable


class _Serialised:
    """A face detector that detects for one thread at a time."""

    def __init__(self, detector: FaceDetector) -> None:
        self._detector = detector
        self.name = detector.name
        self._lock = threading.Lock()

    def detect(self, bgr: np.ndarray) -> Sequence[Sequence[float]]:
        with self._lock:
            return self._detector.detect(bgr)


def _check_finite(values: np.ndarray, path: Path, what: str) -> None:
    """NaN or infinity (damaged weights, a diverged training, a calibration that overflows)
    is a `BadModelError` naming the model, never a number in a result."""
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        raise BadModelError(
            f"{path}: {what} is not a number (NaN or infinity) for {int((~finite).sum())} of "
            f"{len(finite)} inputs; the file is damaged or was exported from a diverged training"
        )


def _largest_first(face: FaceResult) -> int:
    return -face.box[2] * face.box[3]  # sorted() is stable: equal sizes stay left to right


def _load(image: Image, color: str) -> tuple[np.ndarray, str]:
    """(uint8 (H, W, 3) array, its channel order) for a path or an array."""
    if isinstance(image, (str, os.PathLike)):
        return decode_image(image), "rgb"  # decoding gives RGB whatever `color` says
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected an image file path or a numpy array, got {type(image).__name__}")
    if color not in COLOR_ORDERS:
        raise ValueError(f"color must be one of {list(COLOR_ORDERS)}, got {color!r}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image array, got {image.dtype} {image.shape}")
    return image, color


def bounded_map(pool: ThreadPoolExecutor, fn, items: Sequence, *, ahead: int) -> Iterator:
    """Like `pool.map`, in order, but with at most `ahead` results pending (bounded memory)."""
    pending: deque = deque()
    it = iter(items)
    for item in it:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            break
    while pending:
        yield pending.popleft().result()
        nxt = next(it, _END)
        if nxt is not _END:
            pending.append(pool.submit(fn, nxt))


_END = object()


__all__ = ["NO_FACE_ACTIONS", "UNSURE", "Classifier", "FaceResult", "FileResult", "Prediction", "softmax"]
