"""Run a gclf ONNX model with onnxruntime: images in, labels and confidences out."""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np

from gclf.runtime.decode import decode_image
from gclf.runtime.errors import BadModelError, ImageDecodeError, UsageError
from gclf.runtime.metadata import ModelMetadata
from gclf.runtime.preprocess import COLOR_ORDERS, PreprocessSpec, preprocess_batch, resize_to_input

if TYPE_CHECKING:
    from gclf.runtime.faces import Box, FaceDetector

# What `predict` takes: an image file's path, or a decoded uint8 (H, W, 3) array.
Image = Union[str, os.PathLike, np.ndarray]

DECODE_WORKERS = 2  # threads decoding and resizing files ahead of inference (OpenCV releases the GIL)


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image."""

    label: str
    confidence: float  # softmax probability of `label`, in [0, 1]
    probabilities: Mapping[str, float]  # every class name -> its probability, in the model's class order


_NO_PROBABILITIES: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True)
class FaceResult:
    """One face (or a whole frame) and the model's answer for it."""

    box: Box  # x, y, width, height as detected (without the crop margin); the whole frame without detection
    label: str
    confidence: float  # softmax probability of `label`
    # Empty where a result is built from a label and confidence alone (three fields, as the
    # live loop's results had before probabilities were added).
    probabilities: Mapping[str, float] = field(default_factory=lambda: _NO_PROBABILITIES)

    @classmethod
    def of(cls, box: Box, prediction: Prediction) -> "FaceResult":
        return cls(tuple(int(v) for v in box), prediction.label, prediction.confidence, prediction.probabilities)


@dataclass(frozen=True)
class FileResult:
    path: Path
    prediction: Prediction | None
    error: str | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _dim(value: object) -> int | None:
    return value if isinstance(value, int) else None  # symbolic dims come back as str/None


class Classifier:
    """A loaded gclf model. Reads its preprocessing and class names from the file itself."""

    def __init__(self, model_path: str | os.PathLike, *, threads: int | None = None, spin: bool = True) -> None:
        """`spin=False` stops onnxruntime's threads from busy-waiting for work between runs:
        slower for back-to-back batches, but leaves the cores to other threads of the process
        (the live loop's capture and preparation threads)."""
        import onnxruntime as ort

        self.path = Path(model_path)
        if not self.path.is_file():
            raise BadModelError(f"{self.path}: no such model file")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several private exception types for bad files
            raise BadModelError(f"{self.path}: not a loadable ONNX model ({_short(exc)})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props, source=str(self.path))
        self._check_graph()
        self.input_name = self.session.get_inputs()[0].name
        self._default_detector: FaceDetector | None = None  # made on the first predict_faces

    @property
    def spec(self) -> PreprocessSpec:
        return self.metadata.spec

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    def _check_graph(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BadModelError(f"{self.path}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
        shape = inputs[0].shape
        expected = self.spec.input_shape_chw
        if len(shape) != 4 or any(_dim(s) not in (None, e) for s, e in zip(shape[1:], expected)):
            raise BadModelError(f"{self.path}: model input shape {shape} disagrees with its metadata (N, {expected})")
        out_shape = outputs[0].shape
        n_classes = len(self.class_names)
        if len(out_shape) != 2 or _dim(out_shape[1]) not in (None, n_classes):
            raise BadModelError(
                f"{self.path}: model output shape {out_shape} disagrees with its {n_classes} class names"
            )

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Model input (N, 3, H, W) float32 -> logits (N, C)."""
        return self.session.run(None, {self.input_name: batch})[0]

    def predict_input(self, batch: np.ndarray) -> list[Prediction]:
        """Model input (N, 3, H, W) float32, already preprocessed -> predictions."""
        return [self.prediction(p) for p in softmax(self.logits(batch))]

    def prediction(self, probabilities: np.ndarray) -> Prediction:
        """One row of softmax probabilities -> its `Prediction`."""
        top = int(np.argmax(probabilities))
        probs = MappingProxyType({c: float(p) for c, p in zip(self.class_names, probabilities)})
        return Prediction(self.class_names[top], float(probabilities[top]), probs)

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
        return self.predict_input(preprocess_batch(arrays, self.spec, color=color))

    def predict_faces(
        self, image: Image, *, color: str = "rgb", detector: FaceDetector | None = None, margin: float | None = None
    ) -> list[FaceResult]:
        """Find the faces in an image and classify each; largest face first.

        For a model trained on face crops (its metadata's input_kind is "faces"). Detection
        is the live loop's: `detector` defaults to OpenCV's bundled Haar cascade (pass a
        `YuNetFaceDetector` for a more robust one), `margin` to DEFAULT_FACE_MARGIN.
        """
        from gclf.runtime.faces import DEFAULT_FACE_MARGIN, HaarFaceDetector, faces_to_model_input

        if self.metadata.input_kind != "faces":
            raise UsageError(
                f"{self.path.name} was not trained on face crops (input_kind {self.metadata.input_kind or 'not recorded'}); "
                "classify whole images with predict()"
            )
        array, order = _load(image, color)
        bgr = array[..., ::-1] if order == "rgb" else array  # detectors take OpenCV's order
        if detector is None:
            if self._default_detector is None:
                self._default_detector = HaarFaceDetector()
            detector = self._default_detector
        boxes, batch = faces_to_model_input(np.ascontiguousarray(bgr), self.spec, detector, margin=DEFAULT_FACE_MARGIN if margin is None else margin)
        results = [FaceResult.of(box, pred) for box, pred in zip(boxes, self.predict_input(batch) if boxes else [])]
        return sorted(results, key=lambda r: -r.box[2] * r.box[3])

    def classify_files(self, paths: Iterable[Path], *, batch_size: int = 16) -> Iterator[FileResult]:
        """Classify files in batches; a file that cannot be decoded yields a result with `error`.

        Decoding and resizing run in a small thread pool (OpenCV releases the GIL), so they
        overlap with each other and with inference.
        """
        paths = list(paths)

        def load(path: Path) -> np.ndarray | str:
            try:
                return resize_to_input(decode_image(path), self.spec)
            except ImageDecodeError as exc:
                return str(exc)

        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
            loaded = bounded_map(pool, load, paths, ahead=2 * batch_size)
            batch_paths: list[Path] = []
            batch_imgs: list[np.ndarray] = []
            for path, item in zip(paths, loaded):
                if isinstance(item, str):
                    yield FileResult(path, None, item)
                    continue
                batch_paths.append(path)
                batch_imgs.append(item)
                if len(batch_imgs) == batch_size:
                    yield from self._run_batch(batch_paths, batch_imgs)
                    batch_paths, batch_imgs = [], []
            if batch_imgs:
                yield from self._run_batch(batch_paths, batch_imgs)

    def _run_batch(self, paths: list[Path], resized: list[np.ndarray]) -> Iterator[FileResult]:
        for path, pred in zip(paths, self.predict_input(preprocess_batch(resized, self.spec))):
            yield FileResult(path, pred)


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


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    return msg[:300]


__all__ = ["Classifier", "FaceResult", "FileResult", "Prediction", "softmax"]
