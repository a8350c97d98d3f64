"""The Raspberry Pi Camera Module (ribbon connector), read with picamera2.

On current Raspberry Pi OS such a camera is driven by libcamera and usually cannot be read
with `cv2.VideoCapture`; picamera2 is the Raspberry Pi's own Python library for it. It is
not on PyPI in a usable form (it needs the system's libcamera bindings), so it is never a
dependency of gclf: Raspberry Pi OS ships it as `python3-picamera2`, and a venv made with
`--system-site-packages` sees it.

`PicameraSource` is a `FrameSource` like `CaptureSource`: the live loop reads it through the
same capture thread (`LatestFrameGrabber`: newest frame wins, drops counted) and closes it
the same way.

Every capture has a timeout: picamera2's `capture_array()` waits for ever when libcamera
stops completing frames (a loose ribbon cable, a driver hiccup), so gclf dispatches it with
`wait=False` and waits for the job with `Picamera2.wait(job, timeout)` (picamera2 0.3.17 and
later; an older one waits without a timeout, and the feed's own watchdog ends the run).
"""

from __future__ import annotations

import atexit
import concurrent.futures
from pathlib import Path
from typing import Any

import numpy as np

from gclf.runtime.errors import MissingDependencyError
from gclf.runtime.live import sources
from gclf.runtime.live.sources import SourceLostError, SourceStalledError, SourceUnavailableError, stalled

DEFAULT_SIZE = (640, 480)  # width, height: enough for face detection, cheap to process on a Pi

INSTALL_HINT = (
    "--camera picam reads the Raspberry Pi camera with picamera2, which cannot be imported here: "
    "on Raspberry Pi OS run `sudo apt install python3-picamera2` and make gclf's venv with "
    "`python3 -m venv --system-site-packages` so that it sees that package"
)


class NumpyMismatchError(MissingDependencyError):
    """picamera2 is installed but cannot be imported beside this environment's numpy."""


def numpy_mismatch_hint(exc: BaseException) -> str:
    """The sentence for picamera2 failing to import beside the wrong numpy (its simplejpeg is
    built against Debian's numpy 1.x; a venv that pip gave numpy 2 puts that in front of it)."""
    return (
        f"picamera2 cannot be imported: Raspberry Pi OS builds it against the system's numpy 1.x, and this "
        f"environment imports numpy {np.__version__} from {Path(np.__file__).parent.parent} in front of it ({exc}); "
        "in gclf's venv run `pip install \"opencv-python-headless<4.12\"` then `pip uninstall -y numpy` "
        "so that the system's numpy is used"
    )


def import_picamera2() -> Any:
    """The `Picamera2` class; a `MissingDependencyError` naming the install step if absent,
    or the numpy fix if it is there but built against another numpy."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:  # also libcamera missing underneath a pip-installed picamera2
        raise MissingDependencyError(f"{INSTALL_HINT} ({exc})") from None
    except ValueError as exc:  # "numpy.dtype size changed, may indicate binary incompatibility"
        if "numpy" not in str(exc):
            raise
        raise NumpyMismatchError(numpy_mismatch_hint(exc)) from None
    return Picamera2


class PicameraSource:
    """Frames from Pi camera `index`, `size` pixels (width, height), in OpenCV's BGR order.

    picamera2's "RGB888" format is, despite its name, laid out [B, G, R] in memory (the
    picamera2 manual, appendix "Pixel and image formats"), which is OpenCV's BGR order: the
    frames need no conversion. Opening starts the camera and reads a first frame, so a camera
    that opens but delivers nothing fails here, before the loop starts.
    """

    fps: float | None = None  # the camera's pace is measured by the loop, as for a USB camera

    def __init__(self, camera: Any, *, index: int, size: tuple[int, int], timeout_s: float) -> None:
        self._camera = camera
        self.size = size
        self.name = f"Pi camera {index} ({size[0]}x{size[1]})"
        self.timeout_s = timeout_s  # a capture that takes longer is a stalled camera
        self._pending: np.ndarray | None = None
        self._closed = False

    @classmethod
    def open(cls, index: int = 0, size: tuple[int, int] | None = None, *, timeout_s: float | None = None) -> "PicameraSource":
        """Camera `index` started at `size`; a capture that takes more than `timeout_s` (None:
        sources.FRAME_TIMEOUT_S) is a stalled camera."""
        timeout_s = sources.FRAME_TIMEOUT_S if timeout_s is None else timeout_s
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
        source = cls(camera, index=index, size=size, timeout_s=timeout_s)
        try:
            # queue=False: a capture waits for the next frame instead of handing out one the
            # camera queued earlier, so a frame is never older than the loop's own lag.
            config = camera.create_video_configuration(main={"size": size, "format": "RGB888"}, queue=False)
            camera.configure(config)
            camera.start()
            source._pending = source._capture()
        except SourceStalledError:  # started, then no frame came: a stall, exit 5 like one mid-run
            source.close()
            raise stalled(f"Pi camera {index}", timeout_s, "within") from None
        except Exception as exc:
            source.close()
            raise SourceUnavailableError(f"Pi camera {index} opened but delivers no frames ({exc})") from None
        return source

    def _wait(self, job: Any) -> Any:
        """The job's array, or a `SourceLostError` once `timeout_s` has passed without one."""
        try:
            return self._camera.wait(job, timeout=self.timeout_s)
        except TypeError:  # picamera2 before 0.3.17: no timeout here (the feed's watchdog has one)
            return self._camera.wait(job)
        except (TimeoutError, concurrent.futures.TimeoutError):
            # libcamera may stay wedged: picamera2's own exit hook would then wait on it for
            # ever. The process's exit releases the camera anyway.
            atexit.unregister(self._camera.close)
            raise stalled(self.name, self.timeout_s) from None

    def _capture(self) -> np.ndarray:
        image = np.asarray(self._wait(self._camera.capture_array("main", wait=False)))
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
