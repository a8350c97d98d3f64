"""The caps on untrusted images, and OpenCV's own decoder limits set from them.

gclf refuses an image of more than `max_image_pixels()` pixels, or a file of more than
`max_image_bytes()` bytes, by name. Two guards enforce the pixel cap:

- OpenCV's: every decoder OpenCV builds in checks the size its header reader found against
  `OPENCV_IO_MAX_IMAGE_PIXELS`, `_WIDTH` and `_HEIGHT` (`validateInputImageSize`) before it
  allocates the image. OpenCV reads them once, when its library loads, so `gclf.runtime`'s
  package init calls `limit_opencv_decoders()` before anything of gclf imports cv2: every
  command, the Python API and training's scan (and the worker processes it spawns, which
  inherit the environment) decode under them.
- gclf's own header parse (`gclf.runtime.decode`), a fast first refusal with the file's name
  that also stands alone where an application imported cv2 before gclf.runtime (the decoder
  then warns once).

This module imports nothing heavy: it runs on every `import gclf.runtime`.
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping

from gclf.runtime.errors import UsageError

# Sized for a small device (a Raspberry Pi with 1 to 4 GB): an image of more pixels, or a file
# of more bytes, is refused by name before a decoder allocates anything. The largest allowed
# 8-bit RGBA image needs about 200 MB decoded plus 150 MB as RGB. Raise them for a larger
# machine with $GCLF_MAX_IMAGE_PIXELS and $GCLF_MAX_IMAGE_BYTES (docs/security.md).
MAX_IMAGE_PIXELS = 50_000_000  # e.g. 8192x6104; phone photos are 12 to 50 megapixels
MAX_IMAGE_BYTES = 100_000_000
PIXELS_ENV = "GCLF_MAX_IMAGE_PIXELS"
BYTES_ENV = "GCLF_MAX_IMAGE_BYTES"

# OpenCV's names, and its defaults (modules/imgcodecs/src/loadsave.cpp).
OPENCV_PIXELS_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
OPENCV_WIDTH_ENV = "OPENCV_IO_MAX_IMAGE_WIDTH"
OPENCV_HEIGHT_ENV = "OPENCV_IO_MAX_IMAGE_HEIGHT"
OPENCV_DEFAULTS = {OPENCV_PIXELS_ENV: 1 << 30, OPENCV_WIDTH_ENV: 1 << 20, OPENCV_HEIGHT_ENV: 1 << 20}
_OPENCV_SUFFIXES = {"": 1, "KB": 1 << 10, "Kb": 1 << 10, "kb": 1 << 10, "MB": 1 << 20, "Mb": 1 << 20, "mb": 1 << 20}


def _limit(env: str, default: int) -> int:
    text = os.environ.get(env)
    if not text:
        return default
    if not text.strip().isdigit() or int(text) <= 0:
        raise UsageError(f"${env} must be a positive whole number, got {text!r}")
    return int(text)


def max_image_pixels() -> int:
    """The pixel cap: MAX_IMAGE_PIXELS, or $GCLF_MAX_IMAGE_PIXELS where set."""
    return _limit(PIXELS_ENV, MAX_IMAGE_PIXELS)


def max_image_bytes() -> int:
    """The file-size cap: MAX_IMAGE_BYTES, or $GCLF_MAX_IMAGE_BYTES where set."""
    return _limit(BYTES_ENV, MAX_IMAGE_BYTES)


def _opencv_value(text: str | None) -> int | None:
    """An OpenCV size setting as OpenCV parses it (digits, optionally KB or MB), None if unset
    or not a number OpenCV reads."""
    if not text:
        return None
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0 or text[digits:] not in _OPENCV_SUFFIXES:
        return None
    return int(text[:digits]) * _OPENCV_SUFFIXES[text[digits:]]


def opencv_limits(environ: MutableMapping[str, str] | None = None) -> dict[str, int]:
    """The values OpenCV's three limits get: gclf's pixel cap, unless the environment already
    holds a stricter value (kept). No side is capped beyond OpenCV's own default and the cap."""
    environ = os.environ if environ is None else environ
    try:
        cap = max_image_pixels()
    except UsageError:
        cap = MAX_IMAGE_PIXELS  # a bad $GCLF_MAX_IMAGE_PIXELS is reported by the first decode
    limits = {}
    for name, default in OPENCV_DEFAULTS.items():
        given = _opencv_value(environ.get(name))
        ours = cap if name == OPENCV_PIXELS_ENV else min(default, cap)
        limits[name] = ours if given is None else min(given, ours)
    return limits


_in_force: bool | None = None  # whether OpenCV loaded with limits no looser than the cap


def limit_opencv_decoders(environ: MutableMapping[str, str] | None = None) -> bool:
    """Put `opencv_limits()` into the environment, where OpenCV reads them when it loads; a
    value that is not a number OpenCV reads is left alone. Returns whether OpenCV enforces
    them: False where cv2 was imported first with looser (or no) limits."""
    global _in_force
    environ = os.environ if environ is None else environ
    wanted = opencv_limits(environ)
    if "cv2" in sys.modules:  # too late to change what OpenCV read when it loaded
        loaded = {name: _opencv_value(environ.get(name)) if environ.get(name) else OPENCV_DEFAULTS[name] for name in wanted}
        _in_force = all(loaded[name] is not None and loaded[name] <= value for name, value in wanted.items())
        return _in_force
    _in_force = True
    for name, value in wanted.items():
        if environ.get(name) and _opencv_value(environ[name]) is None:
            _in_force = False  # OpenCV will complain about it itself
            continue
        environ[name] = str(value)
    return _in_force


def opencv_limits_in_force() -> bool:
    """Whether OpenCV's decoders enforce gclf's pixel cap themselves (see `limit_opencv_decoders`)."""
    return bool(_in_force)
