"""Run a gclf ONNX model with onnxruntime: images in, labels and confidences out."""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from gclf.runtime.errors import BadModelError, GclfError, ImageDecodeError
from gclf.runtime.metadata import ModelMetadata
from gclf.runtime.preprocess import decode_image, resize_to_input, to_model_input


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float  # softmax probability of `label`, in [0, 1]
    probabilities: tuple[float, ...]  # one per class, in the model's class order


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

    @property
    def spec(self):
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

    def predict_batch(self, batch: np.ndarray) -> list[Prediction]:
        probs = softmax(self.logits(batch))
        return [self._prediction(p) for p in probs]

    def predict_images(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Decoded RGB images (any size) -> predictions."""
        if not images:
            return []
        resized = np.stack([resize_to_input(img, self.spec) for img in images])
        return self.predict_batch(to_model_input(resized, self.spec))

    def _prediction(self, probs: np.ndarray) -> Prediction:
        top = int(np.argmax(probs))
        return Prediction(self.class_names[top], float(probs[top]), tuple(float(p) for p in probs))

    def classify_files(self, paths: Iterable[Path], *, batch_size: int = 16, workers: int = 2) -> Iterator[FileResult]:
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

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
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

    def _run_batch(self, paths: list[Path], imgs: list[np.ndarray]) -> Iterator[FileResult]:
        preds = self.predict_batch(to_model_input(np.stack(imgs), self.spec))
        for path, pred in zip(paths, preds):
            yield FileResult(path, pred)


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


__all__ = ["Classifier", "FileResult", "Prediction", "softmax", "GclfError"]
