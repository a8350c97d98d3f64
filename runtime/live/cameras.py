"""Opening a camera by kind: a USB or V4L2 camera through OpenCV, the Raspberry Pi camera
through picamera2. Above both source modules, so that neither imports the other."""

from __future__ import annotations

from gclf.runtime.live.picamera import PicameraSource
from gclf.runtime.live import sources
from gclf.runtime.live.sources import CaptureSource, FrameSource, stalled, within_deadline


def open_camera(kind: str, device: int | str, size: tuple[int, int] | None = None, *, timeout_s: float | None = None) -> FrameSource:
    """A camera source: `kind` "usb" (OpenCV VideoCapture; `device` an index or a /dev/video*
    path) or "picam" (the Raspberry Pi camera through picamera2; `device` its number); `size`
    is (width, height), None for the camera's default. A camera that has not delivered its
    first frame after `timeout_s` (None: sources.OPEN_TIMEOUT_S) is a `SourceLostError` (exit 5), not a hang."""
    timeout_s = sources.OPEN_TIMEOUT_S if timeout_s is None else timeout_s  # looked up now: tests shorten it
    if kind == "picam":
        return within_deadline(lambda: PicameraSource.open(device, size), timeout_s, lambda: stalled(f"Pi camera {device}", timeout_s, "within"))
    return within_deadline(lambda: CaptureSource.camera(device, size), timeout_s, lambda: stalled(f"camera {device}", timeout_s, "within"))
