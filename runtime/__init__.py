"""gclf runtime: torch-free image classification with an ONNX model that describes itself.

    from gclf.runtime import Classifier

    clf = Classifier("runs/gender/model.onnx")   # loads once
    clf.predict("photo.jpg").label               # also an RGB array, or a BGR frame with color="bgr"

An answer whose top confidence is below the model's recorded threshold (or
`Classifier(..., min_confidence=P)`; 0 turns it off) has the label `UNSURE` ("unsure"), its
most probable class in `best`: as `gclf-infer --min-confidence P`.

Only numpy, OpenCV and onnxruntime are needed here, so this package installs and runs on
a Raspberry Pi. Training and export import from this package, never the other way round
(pyproject.toml's layers contract): the preprocessing contract lives here once
(`gclf.runtime.preprocess`).

The names mirror the command: `Classifier.predict_files` is what `gclf-infer` does on files,
yielding a `FileResult` per file; `predict_faces` and `predict_files(faces=True)` take a
`HaarFaceDetector` or `YuNetFaceDetector` (or any `FaceDetector`), `default_face_model()`
names the default one.

The names below are imported on first use, not here: `gclf-infer --help` must start fast,
and numpy/OpenCV/onnxruntime alone take a few hundred milliseconds to import on a small CPU.

Importing this package sets OpenCV's own image-size limits from gclf's pixel cap
(`gclf.runtime.limits`), before any of gclf imports OpenCV: import it before cv2.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gclf.runtime.limits import limit_opencv_decoders

limit_opencv_decoders()  # OpenCV reads its limits once, when it loads: this must come first

# The public API: name -> the module that defines it.
_API = {
    "Classifier": "gclf.runtime.classifier",
    "Prediction": "gclf.runtime.classifier",
    "FaceResult": "gclf.runtime.classifier",
    "FileResult": "gclf.runtime.classifier",
    "UNSURE": "gclf.runtime.labels",
    "FaceDetector": "gclf.runtime.faces",
    "HaarFaceDetector": "gclf.runtime.faces",
    "YuNetFaceDetector": "gclf.runtime.faces",
    "default_face_model": "gclf.runtime.faces",
    "PreprocessSpec": "gclf.runtime.preprocess",
    "GclfError": "gclf.runtime.errors",
    "BadModelError": "gclf.runtime.errors",
    "ImageDecodeError": "gclf.runtime.errors",
    "track_events": "gclf.runtime.live.loop",
    "TrackEvent": "gclf.runtime.live.people",
}

__all__ = list(_API)

if TYPE_CHECKING:
    from gclf.runtime.classifier import Classifier, FaceResult, FileResult, Prediction
    from gclf.runtime.errors import BadModelError, GclfError, ImageDecodeError
    from gclf.runtime.labels import UNSURE
    from gclf.runtime.faces import FaceDetector, HaarFaceDetector, YuNetFaceDetector, default_face_model
    from gclf.runtime.live.loop import track_events
    from gclf.runtime.preprocess import PreprocessSpec
    from gclf.runtime.live.people import TrackEvent


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
