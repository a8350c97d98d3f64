"""Faces: finding them in a frame, cropping them as training did, and the detector files.

- `detectors`: Haar and YuNet behind one `detect(bgr) -> answer` interface; `make_detector`;
  `find_faces`, the check every detector's answer goes through before it is used.
- `crops`: boxes widened by a margin and turned into model input; `FaceCropper` for training.
- `spec`: `FaceCropSpec`, the record of training's crop that a model carries.
- `models`: YuNet's file, its cache and its checks (the trust rule for every detector file).
- `choice`: which detector and margin a run uses (`resolve_face_detection`).

May import the flat core below it (errors, log, files, atomic, paths, preprocess), never the
classifier, the live loop, the browser view or the command line; the classifier and the
model's metadata import this package. Nothing here loads OpenCV until a face is looked for,
so the command line can read the constants below for `--help`.

The names below are the package's public API (as `gclf.runtime.faces` has always offered).
"""

from gclf.runtime.faces.crops import (
    DEFAULT_FACE_MARGIN,
    NO_FACE_ACTIONS,
    FaceCropper,
    boxes_to_model_input,
    expand_box,
    face_crop_spec,
    face_crops,
    faces_to_model_input,
    largest_face,
)
from gclf.runtime.faces.detectors import (
    DETECT_MAX_SIDE,
    HAAR_CASCADE,
    Box,
    FaceDetector,
    Found,
    HaarFaceDetector,
    YuNetFaceDetector,
    check_answer,
    default_face_model,
    detector_file,
    detector_of,
    downscaled,
    find_faces,
    haar_cascade_path,
    make_detector,
)
from gclf.runtime.faces.spec import FACE_CROP_KINDS, FaceCropSpec

__all__ = [
    "DEFAULT_FACE_MARGIN", "NO_FACE_ACTIONS", "FaceCropper", "boxes_to_model_input", "expand_box", "face_crop_spec",
    "face_crops", "faces_to_model_input", "largest_face", "DETECT_MAX_SIDE", "HAAR_CASCADE", "Box", "FaceDetector",
    "Found", "HaarFaceDetector", "YuNetFaceDetector", "check_answer", "default_face_model", "find_faces", "detector_file", "detector_of", "downscaled",
    "haar_cascade_path", "make_detector", "FACE_CROP_KINDS", "FaceCropSpec",
]
