"""The preprocessing contract: how a file on disk becomes the model's input tensor.

This module is the only place that decodes images and turns them into model input.
Training's evaluation path, export's calibration and the runtime all call it, and the ONNX
file carries the `PreprocessSpec` as JSON, so a model file is all a device needs.

Steps, in order:
1. `decode_image`: bytes -> RGB uint8 HxWx3. OpenCV decodes. JPEGs are decoded with their
   EXIF orientation applied (as a photo viewer shows them); grey, 16-bit and alpha images
   are converted explicitly, so nothing depends on OpenCV's implicit defaults.
2. `resize_to_input`: RGB -> RGB uint8 at the model's input size ("squash": the aspect
   ratio is not kept, as the study's 224x224 resize did).
3. `to_model_input`: uint8 batch -> float32 NCHW, scaled to [0, 1] and normalised with
   mean/std given in [0, 1] units.

Training augmentation works on the decoded RGB image, before step 2.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from gclf.runtime.errors import BadModelError, ImageDecodeError

# ImageNet statistics in [0, 1] pixel units (torchvision's GoogLeNet weights expect these).
IMAGENET_MEAN_01 = (0.485, 0.456, 0.406)
IMAGENET_STD_01 = (0.229, 0.224, 0.225)

INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
}
RESIZE_MODES = ("squash",)
INPUT_FORMATS = ("float32_nchw",)
SPEC_VERSION = 1

# A decoded image larger than this is refused rather than allocated (about 1 GB as RGB).
MAX_IMAGE_PIXELS = 20000 * 20000
# 16-bit and alpha handling, named so the metadata says what happened.
DEPTH_16_TO_8 = "scale_65535_to_255"
ALPHA_HANDLING = "composite_on_white"
GREY_TO_RGB = "replicate"


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything needed to turn a decoded image into the model's input, as data.

    Units are in the names: `mean_01`/`std_01` are per-channel (R, G, B) statistics of
    pixel values scaled to [0, 1].
    """

    input_height: int = 224
    input_width: int = 224
    resize_mode: str = "squash"
    interpolation: str = "linear"
    channel_order: str = "RGB"
    grey_to_rgb: str = GREY_TO_RGB
    alpha: str = ALPHA_HANDLING
    depth_16bit: str = DEPTH_16_TO_8
    mean_01: tuple[float, float, float] = IMAGENET_MEAN_01
    std_01: tuple[float, float, float] = IMAGENET_STD_01
    input_format: str = "float32_nchw"
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        problems = _spec_problems(self)
        if problems:
            raise ValueError("invalid preprocessing spec: " + "; ".join(problems))

    @property
    def input_shape_chw(self) -> tuple[int, int, int]:
        return (3, self.input_height, self.input_width)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean_01"] = list(self.mean_01)
        d["std_01"] = list(self.std_01)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        """Build a spec from metadata, refusing missing or unknown fields (never guessing)."""
        if not isinstance(d, dict):
            raise BadModelError("preprocessing spec is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - d.keys())
        unknown = sorted(d.keys() - names)
        if missing or unknown:
            raise BadModelError(
                f"preprocessing spec has missing fields {missing} or unknown fields {unknown}"
            )
        values = dict(d)
        for key in ("mean_01", "std_01"):
            values[key] = _number_tuple(d[key], key)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise BadModelError(f"preprocessing spec is invalid: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "PreprocessSpec":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise BadModelError(f"preprocessing spec is not valid JSON: {exc}") from None


def _number_tuple(value: Any, name: str) -> tuple[float, ...]:
    # Only a list of numbers: a JSON string such as "123" would otherwise iterate into
    # (1.0, 2.0, 3.0), and true/false would pass as 1/0; a spec is never guessed.
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise BadModelError(f"preprocessing spec is invalid: {name} must be a list of three numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _spec_problems(spec: PreprocessSpec) -> list[str]:
    problems = []
    for name in ("input_height", "input_width"):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or not 8 <= value <= 4096:
            problems.append(f"{name} must be an integer in 8..4096, got {value!r}")
    choices = {
        "resize_mode": RESIZE_MODES,
        "interpolation": tuple(INTERPOLATIONS),
        "channel_order": ("RGB",),
        "grey_to_rgb": (GREY_TO_RGB,),
        "alpha": (ALPHA_HANDLING,),
        "depth_16bit": (DEPTH_16_TO_8,),
        "input_format": INPUT_FORMATS,
    }
    for name, allowed in choices.items():
        if getattr(spec, name) not in allowed:
            problems.append(f"{name} must be one of {list(allowed)}, got {getattr(spec, name)!r}")
    for name in ("mean_01", "std_01"):
        value = getattr(spec, name)
        # NaN would pass every comparison below and turn the whole input into NaN.
        if len(value) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
            problems.append(f"{name} must be three finite numbers")
    if len(spec.std_01) == 3 and any(v <= 0 for v in spec.std_01):
        problems.append("std_01 values must be > 0")
    if spec.version != SPEC_VERSION:
        problems.append(f"version {spec.version!r} is not supported (this gclf reads {SPEC_VERSION})")
    return problems


def _label(source: str | os.PathLike | bytes, name: str | None) -> str:
    if name is not None:
        return name
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """Read a file for decoding; an unreadable file is an `ImageDecodeError` naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def decode_image(source: str | os.PathLike | bytes, *, name: str | None = None) -> np.ndarray:
    """Decode an image file (path or bytes) to RGB uint8, shape (H, W, 3).

    Raises `ImageDecodeError` naming the file for anything that is not a usable image.
    """
    label = _label(source, name)
    data = source if isinstance(source, (bytes, bytearray, memoryview)) else read_image_bytes(source)
    if len(data) == 0:
        raise ImageDecodeError(f"{label}: empty file")
    buf = np.frombuffer(data, dtype=np.uint8)
    is_jpeg = bytes(data[:3]) == b"\xff\xd8\xff"
    try:
        # JPEG: IMREAD_COLOR applies the EXIF orientation and converts grey/CMYK to 3
        # channels; JPEG has no alpha or 16-bit to lose. Other formats: decode unchanged
        # and convert depth and channels explicitly below.
        flags = cv2.IMREAD_COLOR if is_jpeg else cv2.IMREAD_UNCHANGED
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise ImageDecodeError(f"{label}: not a readable image ({_first_line(exc)})") from None
    if img is None or img.size == 0:
        raise ImageDecodeError(f"{label}: not a readable image (unknown format or corrupt data)")
    return _to_rgb8(img, label)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1].strip() if text else type(exc).__name__


def _to_rgb8(img: np.ndarray, label: str) -> np.ndarray:
    if img.shape[0] * img.shape[1] > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(f"{label}: image too large ({img.shape[1]}x{img.shape[0]} pixels)")
    if img.dtype == np.uint16:
        img = cv2.convertScaleAbs(img, alpha=255.0 / 65535.0)  # rounds to nearest
    elif img.dtype != np.uint8:
        raise ImageDecodeError(f"{label}: unsupported pixel type {img.dtype} (use 8- or 16-bit images)")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img.reshape(img.shape[0], img.shape[1]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        # Transparent pixels often hold junk colour: composite onto white, as viewers show them.
        alpha = img[:, :, 3:4].astype(np.float32) * (1.0 / 255.0)
        bgr = img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return cv2.cvtColor(np.rint(bgr).astype(np.uint8), cv2.COLOR_BGR2RGB)
    raise ImageDecodeError(f"{label}: unsupported number of channels ({channels})")


def resize_to_input(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize a decoded RGB image to the model's input size (uint8 HxWx3)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected RGB uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    size_hw = (spec.input_height, spec.input_width)
    if rgb.shape[:2] == size_hw:
        return rgb
    # "squash": both sides go to the target size independently, aspect ratio not kept.
    return cv2.resize(rgb, (spec.input_width, spec.input_height), interpolation=INTERPOLATIONS[spec.interpolation])


def to_model_input(resized: np.ndarray, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB at input size -> float32 (N, 3, H, W), normalised.

    `out` may be a preallocated float32 array of the result's shape, reused across batches.
    """
    if resized.ndim == 3:
        resized = resized[None]
    n, h, w, _ = resized.shape
    if (h, w) != (spec.input_height, spec.input_width):
        raise ValueError(f"expected images of {spec.input_height}x{spec.input_width}, got {h}x{w}")
    # (x / 255 - mean) / std, folded into one multiply-add per element.
    scale = (1.0 / (255.0 * np.asarray(spec.std_01, dtype=np.float32))).reshape(1, 3, 1, 1)
    bias = (-np.asarray(spec.mean_01, dtype=np.float32) / np.asarray(spec.std_01, dtype=np.float32)).reshape(1, 3, 1, 1)
    if out is None:
        out = np.empty((n, 3, h, w), dtype=np.float32)
    np.copyto(out, resized.transpose(0, 3, 1, 2), casting="unsafe")
    out *= scale
    out += bias
    return out


def preprocess(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """One decoded RGB image -> float32 (3, H, W) model input. THE contract, for one image."""
    return to_model_input(resize_to_input(rgb, spec), spec)[0]


def preprocess_batch(images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Decoded RGB images -> float32 (N, 3, H, W) model input."""
    if len(images) == 0:
        return np.empty((0, *spec.input_shape_chw), dtype=np.float32)
    resized = np.stack([resize_to_input(img, spec) for img in images])
    return to_model_input(resized, spec)


def load_and_preprocess(path: str | os.PathLike, spec: PreprocessSpec) -> np.ndarray:
    """Convenience: file -> model input for one image."""
    return preprocess(decode_image(path), spec)
