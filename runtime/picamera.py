"""The Raspberry Pi Camera Module (ribbon connector), read with picamera2.

On current Raspberry Pi OS such a camera is driven by libcamera and usually cannot be read
with `cv2.VideoCapture`; picamera2 is the Raspberry Pi's own Python library for it. It is
not on PyPI in a usable form (it needs the system's libcamera bindings), so it is never a
dependency of gclf: Raspberry Pi OS ships it as `python3-picamera2`, and a venv made with
`--system-site-packages` sees it.

`PicameraSource` is a `FrameSource` like `CaptureSource`: the live loop reads it through the
same capture thread (`LatestFrameGrabber`: newest frame wins, drops counted) and closes it
the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gclf.runtime.errors import MissingDependencyError
from gclf.runtime.video_sources import SourceLostError, SourceUnavailableError

DEFAULT_SIZE = (640, 480)  # width, height: enough for face detection, cheap to process on a Pi

INSTALL_HINT = (
    "--camera picam reads the Raspberry Pi camera with picamera2, which cannot be imported here: "
    "on Raspberry Pi OS run `sudo apt install python3-picamera2` and make gclf's venv with "
    "`python3 -m venv --system-site-packages` so that it sees that package"
)


def import_picamera2() -> Any:
    """The `Picamera2` class; a `MissingDependencyError` naming the install step if absent."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:  # also libcamera missing underneath a pip-installed picamera2
        raise MissingDependencyError(f"{INSTALL_HINT} ({exc})") from None
    return Picamera2


class PicameraSource:
    """Frames from Pi camera `index`, `size` pixels (width, height), in OpenCV's BGR order.

    picamera2's "RGB888" format is, despite its name, laid out [B, G, R] in memory (the
    picamera2 manual, appendix "Pixel and image formats"), which is OpenCV's BGR order: the
    frames need no conversion. Opening starts the camera and reads a first frame, so a camera
    that opens but delivers nothing fails here, before the loop starts.
    """

    fps: float | None = None  # the camera's pace is measured by the loop, as for a USB camera

    def __init__(self, camera: Any, *, index: int, size: tuple[int, int]) -> None:
        self._camera = camera
        self.size = size
        self.name = f"Pi camera {index} ({size[0]}x{size[1]})"
        self._pending: np.ndarray | None = None
        self._closed = False

    @classmethod
    def open(cls, index: int = 0, size: tuple[int, int] | None = None) -> "PicameraSource":
        Picamera2 = import_picamera2()
        size = tuple(size or DEFAULT_SIZE)
        try:
            cameras = Picamera2.global_camera_info()
        except Exception as exc:  # libcamera itself failing: no camera can be opened
            raise SourceUnavailableError(f"cannot list Pi cameras: {exc}") from None
        if index >= len(cameras):
            found = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(cameras)) or "none"
            raise SourceUnavailableError(
                f"no Pi camera {index} (cameras found: {found}); check the ribbon cable and that "
                "`rpicam-hello --list-cameras` lists it"
            )
        try:
            camera = Picamera2(index)
        except Exception as exc:
            raise SourceUnavailableError(f"cannot open Pi camera {index}: {exc} (in use by another program?)") from None
        source = cls(camera, index=index, size=size)
        try:
            # queue=False: a capture waits for the next frame instead of handing out one the
            # camera queued earlier, so a frame is never older than the loop's own lag.
            config = camera.create_video_configuration(main={"size": size, "format": "RGB888"}, queue=False)
            camera.configure(config)
            camera.start()
            source._pending = source._capture()
        except Exception as exc:
            source.close()
            raise SourceUnavailableError(f"Pi camera {index} opened but delivers no frames ({exc})") from None
        return source

    def _capture(self) -> np.ndarray:
        image = np.asarray(self._camera.capture_array("main"))
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise SourceLostError(f"{self.name} delivered a {image.dtype} array of shape {image.shape}, not an 8-bit colour image")
        return np.ascontiguousarray(image[:, :, :3])  # XBGR8888 would carry a 4th (alpha) byte

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
            return image
        try:
            return self._capture()
        except SourceLostError:
            raise
        except Exception as exc:  # libcamera errors are plain exceptions
            raise SourceLostError(f"{self.name} stopped delivering frames ({exc})") from None

    def close(self) -> None:
        """Stop and release the camera; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for step in (self._camera.stop, self._camera.close):
            try:
                step()
            except Exception:  # closing a camera that failed half-way: release what can be
                pass
