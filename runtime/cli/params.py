"""gclf's own click parameter types: what --camera, --camera-size and --face-model accept, and --name's default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import click

from gclf.runtime.faces.models import DETECTOR_NAMES
from gclf.runtime.mqtt.topics import default_camera_name as host_camera_name  # light: no MQTT library behind it
from gclf.runtime.redact import is_network_url, redact

NETWORK = "network"  # Camera.kind of an rtsp://, rtsps://, http:// or https:// camera
NAME_ENV = "GCLF_CAMERA_NAME"  # the template unit sets it to its instance name


class Camera(NamedTuple):
    kind: str  # "usb": OpenCV VideoCapture; "picam": the Raspberry Pi camera via picamera2; NETWORK: a URL
    device: int | str  # the camera's index; "usb" also a /dev/video* path or a link to one; NETWORK the URL

    @property
    def is_network(self) -> bool:
        return self.kind == NETWORK

    def __repr__(self) -> str:
        # A URL's password or token never shows, however the value is printed.
        return f"Camera({self.kind!r}, {redact(repr(self.device))})"

    __str__ = __repr__


class CameraParam(click.ParamType):
    """`--camera`: INDEX or /dev/... (a USB/V4L2 camera: /dev/video*, or a link to one such as
    /dev/v4l/by-id/...), `picam` or `picam:N` (the N-th Pi camera), or a network camera's URL
    (rtsp://, rtsps://, http://, https://). click quotes a refused value in its message, so
    every message here shows the value redacted."""

    name = "camera"

    def convert(self, value, param, ctx) -> Camera:
        if isinstance(value, Camera):
            return value
        if is_network_url(str(value).strip()):
            return Camera(NETWORK, str(value).strip())
        if str(value).startswith("/"):  # a device path, checked when opened: cameras come and go
            return Camera("usb", str(value))
        text = str(value).strip().lower()
        if text == "picam":
            return Camera("picam", 0)
        kind, number = ("picam", text[len("picam:"):]) if text.startswith("picam:") else ("usb", text)
        if not number.isdigit():
            self.fail(
                f"{redact(repr(str(value)))} is not a camera: give an index (0, 1, ...), a /dev/video* path, picam or picam:N, "
                "or a network camera's rtsp://, rtsps://, http:// or https:// URL",
                param, ctx,
            )  # fmt: skip
        return Camera(kind, int(number))


def default_camera_name() -> str:
    """--name's default: $GCLF_CAMERA_NAME (the template unit sets it to its instance name),
    else this machine's host name made a valid camera name. Looked up here, not as the option's
    envvar, so that a --config file's `name` wins over the variable (click puts an envvar
    before the file's defaults)."""
    return os.environ.get(NAME_ENV, "").strip() or host_camera_name()


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
