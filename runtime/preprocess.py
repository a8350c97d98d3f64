"""The preprocessing contract: how an image becomes the model's input tensor.

Training's evaluation path, export's calibration and the runtime all call this module, and
the ONNX file carries the `PreprocessSpec` as JSON, so a model file is all a device needs.

Steps, in order:
1. `gclf.runtime.decode.decode_image`: file bytes -> RGB uint8 HxWx3 (safe decoding: format
   sniffing, bomb checks, EXIF orientation, grey/16-bit/alpha; its own module).
2. `resize_to_input`: RGB -> RGB uint8 at the model's input size ("squash": the aspect
   ratio is not kept, as the study's 224x224 resize did).
3. `to_model_input`: uint8 batch -> float32 NCHW, scaled to [0, 1] and normalised with
   mean/std given in [0, 1] units.

`preprocess_batch` is steps 2 and 3 for a list of decoded images, the one batching path
(classifier, live loop, benchmarks, export's calibration); `preprocess` is one image.
Training augmentation works on the decoded RGB image, before step 2.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from gclf.runtime.decode import ALPHA_HANDLING, DEPTH_16_TO_8, GREY_TO_RGB
from gclf.runtime.errors import BadModelError

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
# Channel orders of the arrays a caller hands in: decoded files are RGB, OpenCV frames BGR.
COLOR_ORDERS = ("rgb", "bgr")



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
            value = json.loads(text)
        except RecursionError:
            raise BadModelError("preprocessing spec is nested too deeply to be a spec") from None
        except ValueError as exc:  # not JSON, or a number of more digits than Python converts
            raise BadModelError(f"preprocessing spec is not valid JSON: {str(exc)[:200]}") from None
        return cls.from_dict(value)


def _number_tuple(value: Any, name: str) -> tuple[float, ...]:
    # Only a list of numbers: a JSON string such as "123" would otherwise iterate into
    # (1.0, 2.0, 3.0), and true/false would pass as 1/0; a spec is never guessed.
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise BadModelError(f"preprocessing spec is invalid: {name} must be a list of three numbers, got {_shown(value)}")
    try:
        return tuple(float(v) for v in value)
    except OverflowError:  # a JSON integer too large for a float (1 followed by 400 zeros)
        raise BadModelError(f"preprocessing spec is invalid: {name} must be three finite numbers") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


def resize_to_input(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize a decoded RGB image to the model's input size (uint8 HxWx3)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected RGB uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    size_hw = (spec.input_height, spec.input_width)
    if rgb.shape[:2] == size_hw:
        return rgb
    # "squash": both sides go to the target size independently, aspect ratio not kept.
    return cv2.resize(rgb, (spec.input_width, spec.input_height), interpolation=INTERPOLATIONS[spec.interpolation])


def to_model_input(resized: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB at input size -> float32 (N, 3, H, W), normalised."""
    if resized.ndim == 3:
        resized = resized[None]
    n, h, w, _ = resized.shape
    if (h, w) != (spec.input_height, spec.input_width):
        raise ValueError(f"expected images of {spec.input_height}x{spec.input_width}, got {h}x{w}")
    # (x / 255 - mean) / std, folded into one multiply-add per element.
    scale = (1.0 / (255.0 * np.asarray(spec.std_01, dtype=np.float32))).reshape(1, 3, 1, 1)
    bias = (-np.asarray(spec.mean_01, dtype=np.float32) / np.asarray(spec.std_01, dtype=np.float32)).reshape(1, 3, 1, 1)
    out = np.empty((n, 3, h, w), dtype=np.float32)
    np.copyto(out, resized.transpose(0, 3, 1, 2), casting="unsafe")
    out *= scale
    out += bias
    return out


def preprocess(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """One decoded RGB image -> float32 (3, H, W) model input. THE contract, for one image."""
    return preprocess_batch([rgb], spec)[0]


def preprocess_batch(images: Sequence[np.ndarray], spec: PreprocessSpec, *, color: str = "rgb") -> np.ndarray:
    """Decoded images (uint8 (H, W, 3), any sizes) -> float32 (N, 3, H, W) model input.

    The one batching path: resize each image, stack, normalise. `color` says the channel
    order of `images` and is never guessed: "rgb" (decoded files) or "bgr" (OpenCV frames
    and crops of them). BGR images are resized first and swapped to RGB after: resizing
    treats each channel on its own, so the result is bit-identical to swapping first (tests
    check it), while the swap touches the small resized image instead of a whole frame.
    Images already at the input size are not resized again.
    """
    if color not in COLOR_ORDERS:
        raise ValueError(f"color must be one of {list(COLOR_ORDERS)}, got {color!r}")
    resized = np.empty((len(images), spec.input_height, spec.input_width, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        small = resize_to_input(np.ascontiguousarray(image), spec)  # a crop of a frame is a strided view
        resized[i] = small[..., ::-1] if color == "bgr" else small
    return to_model_input(resized, spec)
