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

    Raises `ImageDecodeError` naming the file for anything that is not a usable image:
    this is the one place where untrusted bytes meet the decoders, so nothing else escapes.
    """
    label = _label(source, name)
    data = source if isinstance(source, (bytes, bytearray, memoryview)) else read_image_bytes(source)
    if len(data) == 0:
        raise ImageDecodeError(f"{label}: empty file")
    data = bytes(data)
    kind = _sniff_format(data)
    if kind is None:
        raise ImageDecodeError(f"{label}: not a readable image (not {', '.join(DECODED_FORMATS)})")
    _refuse_huge(_header_size(kind, data), len(data), label)
    problem = _png_chunk_problem(data) if kind == "PNG" else None
    if problem:
        raise ImageDecodeError(f"{label}: not a readable image (corrupt or truncated PNG data: {problem})")
    try:
        # JPEG: IMREAD_COLOR applies the EXIF orientation and converts grey/CMYK to 3
        # channels; JPEG has no alpha or 16-bit to lose. Other formats: decode unchanged
        # and convert depth and channels explicitly below. IMREAD_UNCHANGED skips the EXIF
        # orientation (TIFF's decoder applies its own tag), so PNG and WebP get it below.
        flags = cv2.IMREAD_COLOR if kind == "JPEG" else cv2.IMREAD_UNCHANGED
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
        if img is None or img.size == 0:
            raise ImageDecodeError(f"{label}: not a readable image (corrupt or truncated {kind} data)")
        if kind in ("PNG", "WebP"):
            img = _apply_exif_orientation(img, _exif_orientation(kind, data))
        return _to_rgb8(img, label)
    except cv2.error as exc:
        reason = "image too large" if "MAX_IMAGE_PIXELS" in str(exc) else f"not a readable image ({_first_line(exc)})"
        raise ImageDecodeError(f"{label}: {reason}") from None
    except MemoryError:
        raise ImageDecodeError(f"{label}: not enough memory to decode this image") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1].strip() if text else type(exc).__name__


# --- cheap header parsing: refuse huge images before a decoder allocates them -----------

# The formats gclf decodes (IMAGE_EXTENSIONS' formats, plus GIF); anything else is refused
# by its signature, so only decoders whose headers are checked below ever see user bytes.
DECODED_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WebP", "PNM", "GIF")


def _sniff_format(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return "PNM"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _u16(data: bytes, at: int, order: str) -> int | None:
    return int.from_bytes(data[at:at + 2], order) if at + 2 <= len(data) else None


def _u32(data: bytes, at: int, order: str) -> int | None:
    return int.from_bytes(data[at:at + 4], order) if at + 4 <= len(data) else None


def _header_size(kind: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file header, or None where the header is unreadable (the
    decoder then fails on it, or OpenCV's own pixel limit applies)."""
    if kind == "PNG":
        return (_u32(data, 16, "big"), _u32(data, 20, "big")) if data[12:16] == b"IHDR" and len(data) >= 24 else None
    if kind == "JPEG":
        return _jpeg_size(data)
    if kind == "BMP":
        if _u32(data, 14, "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            width, height = _u16(data, 18, "little"), _u16(data, 20, "little")
        else:
            width, height = _u32(data, 18, "little"), _u32(data, 22, "little")
        if width is None or height is None:
            return None
        # Signed 32-bit: a negative height means rows are stored top-down.
        return abs(width - (1 << 32) if width >= 1 << 31 else width), abs(height - (1 << 32) if height >= 1 << 31 else height)
    if kind == "TIFF":
        return _tiff_size(data)
    if kind == "WebP":
        return _webp_size(data)
    if kind == "PNM":
        return _pnm_size(data)
    if kind == "GIF":
        width, height = _u16(data, 6, "little"), _u16(data, 8, "little")
        return (width, height) if height is not None else None
    return None


# JPEG start-of-frame markers (SOF0..SOF15 less DHT C4, JPG C8 and DAC CC) carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:  # junk between segments: libjpeg skips to the next 0xFF, so do we
            at = data.find(b"\xff", at)
            if at < 0:
                return None
            continue
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length field
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        if marker in _JPEG_SOF:
            height, width = _u16(data, at + 5, "big"), _u16(data, at + 7, "big")
            return (width, height) if width is not None else None
        at += 2 + _u16(data, at + 2, "big")
    return None


def _tiff_ifd0(data: bytes) -> tuple[str, dict[int, int]] | None:
    """(byte order, {tag: first value}) of a TIFF structure's first IFD (also EXIF's)."""
    order = {b"II": "little", b"MM": "big"}.get(data[:2])
    if order is None:
        return None
    offset = _u32(data, 4, order)
    count = _u16(data, offset, order) if offset is not None else None
    if count is None:
        return None
    tags: dict[int, int] = {}
    for i in range(count):
        entry = offset + 2 + 12 * i
        if entry + 12 > len(data):
            break
        tag, kind = _u16(data, entry, order), _u16(data, entry + 2, order)
        # SHORT (3) values sit in the first 2 bytes of the value field, LONG (4) fill it.
        if kind == 3:
            tags[tag] = _u16(data, entry + 8, order)
        elif kind == 4:
            tags[tag] = _u32(data, entry + 8, order)
    return order, tags


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    parsed = _tiff_ifd0(data)
    if parsed is None or 256 not in parsed[1] or 257 not in parsed[1]:
        return None
    tags = parsed[1]
    # ImageWidth, ImageLength; a tiled file's decoder allocates whole tiles, which may be larger.
    return max(tags[256], tags.get(322, 0)), max(tags[257], tags.get(323, 0))


def _riff_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(fourcc, start, size) of each chunk of a RIFF (WebP) file."""
    chunks, at = [], 12
    while at + 8 <= len(data):
        size = _u32(data, at + 4, "little")
        chunks.append((data[at:at + 4], at + 8, size))
        at += 8 + size + (size & 1)
    return chunks


def _webp_size(data: bytes) -> tuple[int, int] | None:
    for fourcc, at, _ in _riff_chunks(data):
        if len(data) < at + 10:
            return None
        if fourcc == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
            return int.from_bytes(data[at + 4:at + 7], "little") + 1, int.from_bytes(data[at + 7:at + 10], "little") + 1
        if fourcc == b"VP8L":  # lossless: 14-bit width-1 and height-1 after the 0x2f signature
            bits = int.from_bytes(data[at + 1:at + 5], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if fourcc == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
            return _u16(data, at + 6, "little") & 0x3FFF, _u16(data, at + 8, "little") & 0x3FFF
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    """Width and height: the first two ASCII numbers after "Pn", skipping # comments."""
    numbers: list[int] = []
    at, end = 2, min(len(data), 4096)
    while len(numbers) < 2 and at < end:
        char = data[at:at + 1]
        if char == b"#":
            newline = data.find(b"\n", at, end)
            at = end if newline < 0 else newline + 1
        elif char.isdigit():
            start = at
            while at < end and data[at:at + 1].isdigit():
                at += 1
            numbers.append(int(data[start:at]))
        elif char.isspace():
            at += 1
        else:
            return None
    return (numbers[0], numbers[1]) if len(numbers) == 2 else None


# A header may claim far more pixels than its file could hold: a corrupt file, or a
# "decompression bomb". Real photos have well under 10 pixels per file byte, and even a
# one-colour PNG under 10,000, so more than this (beyond a floor that no small image reaches)
# is refused rather than allocated.
MAX_PIXELS_PER_FILE_BYTE = 10_000
BOMB_CHECK_FLOOR_PIXELS = 16_000_000


def _png_chunk_problem(data: bytes) -> str | None:
    """Why a PNG's chunk lengths cannot be right, or None. OpenCV's PNG reader allocates a
    chunk's declared length before reading it: a few flipped bits could cost gigabytes."""
    at = 8
    while at + 8 <= len(data):
        size, kind = _u32(data, at, "big"), data[at + 4:at + 8].decode("latin-1")
        remaining = len(data) - at - 12  # after this chunk's length, type and CRC
        if size > remaining:
            return f"chunk {kind!r} claims {size} bytes, {max(remaining, 0)} follow"
        if kind == "IEND":
            return None
        at += 12 + size
    return None


def _refuse_huge(size: tuple[int, int] | None, n_bytes: int, label: str) -> None:
    if size is None:
        return
    pixels = size[0] * size[1]
    if pixels > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(
            f"{label}: image too large ({size[0]}x{size[1]} pixels; gclf reads images of up to "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels)"
        )
    if pixels > max(BOMB_CHECK_FLOOR_PIXELS, MAX_PIXELS_PER_FILE_BYTE * n_bytes):
        raise ImageDecodeError(
            f"{label}: not a readable image (its header claims {size[0]}x{size[1]} pixels, "
            f"far more than {n_bytes} bytes can hold: corrupt, or a decompression bomb)"
        )


# --- EXIF orientation for PNG and WebP (OpenCV applies it to JPEG and TIFF itself) -------


def _exif_orientation(kind: str, data: bytes) -> int:
    """The EXIF Orientation tag (1..8) of a PNG eXIf or WebP EXIF chunk; 1 when absent."""
    exif = _png_chunk(data, b"eXIf") if kind == "PNG" else next((data[at:at + size] for fourcc, at, size in _riff_chunks(data) if fourcc == b"EXIF"), None)
    if not exif:
        return 1
    parsed = _tiff_ifd0(exif.removeprefix(b"Exif\x00\x00"))
    value = parsed[1].get(0x0112, 1) if parsed else 1
    return value if 1 <= value <= 8 else 1


def _png_chunk(data: bytes, wanted: bytes) -> bytes | None:
    at = 8
    while at + 8 <= len(data):
        size, kind = _u32(data, at, "big"), data[at + 4:at + 8]
        if kind == wanted:
            return data[at + 8:at + 8 + size]
        if kind == b"IEND":
            return None
        at += 12 + size
    return None


def _apply_exif_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image the way a photo viewer shows it (EXIF orientations 1..8)."""
    if orientation == 1:
        return img
    turned = {
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # rotated 180 degrees
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: a.swapaxes(0, 1)[:, ::-1],  # rotated 90 degrees clockwise
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # transversed
        8: lambda a: a.swapaxes(0, 1)[::-1],  # rotated 90 degrees counter-clockwise
    }[orientation](img)
    return np.ascontiguousarray(turned)  # OpenCV needs contiguous rows


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
