"""gclf's own click parameter types: what --camera, --camera-size and --face-model accept."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import click

from gclf.runtime.faces.models import DETECTOR_NAMES


class Camera(NamedTuple):
    kind: str  # "usb": OpenCV VideoCapture; "picam": the Raspberry Pi camera via picamera2
    device: int | str  # the camera's index; "usb" also a /dev/video* path or a link to one


class CameraParam(click.ParamType):
    """`--camera`: INDEX or /dev/... (a USB/V4L2 camera: /dev/video*, or a link to one such as
    /dev/v4l/by-id/...), `picam` or `picam:N` (the N-th Pi camera)."""

    name = "camera"

    def convert(self, value, param, ctx) -> Camera:
        if isinstance(value, Camera):
            return value
        if str(value).startswith("/"):  # a device path, checked when opened: cameras come and go
            return Camera("usb", str(value))
        text = str(value).strip().lower()
        if text == "picam":
            return Camera("picam", 0)
        kind, number = ("picam", text[len("picam:"):]) if text.startswith("picam:") else ("usb", text)
        if not number.isdigit():
            self.fail(f"{value!r} is not a camera: give an index (0, 1, ...), a /dev/video* path, picam or picam:N", param, ctx)
        return Camera(kind, int(number))


class SizeParam(click.ParamType):
    """WIDTHxHEIGHT in pixels, e.g. 640x480."""

    name = "size"

    def convert(self, value, param, ctx) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        width, _, height = str(value).lower().partition("x")
        if not (width.isdigit() and height.isdigit() and 16 <= int(width) <= 8192 and 16 <= int(height) <= 8192):
            self.fail(f"{value!r} is not a frame size: give WIDTHxHEIGHT, e.g. 640x480 (16 to 8192 each)", param, ctx)
        return int(width), int(height)


class FaceModelParam(click.ParamType):
    """`--face-model haar|yunet|PATH`: a detector's name, or an existing YuNet ONNX file.

    The names win over a file of the same name in the current folder; write `./yunet` for that.
    """

    name = "haar|yunet|PATH"

    def convert(self, value, param, ctx):
        if isinstance(value, Path) or value in DETECTOR_NAMES:
            return value
        return click.Path(exists=True, dir_okay=False, path_type=Path).convert(value, param, ctx)
