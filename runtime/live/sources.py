"""Where live frames come from: a camera or a video file, read in a thread of its own.

Two layers, kept apart so each can be tested alone:
- a *source* (`CaptureSource`, `PacedSource`) reads one BGR image after another, in the
  caller's thread, and says why it stopped (end of file, camera lost);
- a *feed* runs a source in a background thread and hands frames to the classifier loop:
  `LatestFrameGrabber` keeps only the newest frame (a camera: latency never grows, frames
  that arrive while the model is busy are dropped and counted), `OrderedFrameReader` keeps
  every frame in order (a video file: deterministic, what the tests use).

Frames stay in OpenCV's BGR order here; the loop converts what it classifies to RGB.

A camera that stops delivering frames must end the run, never hang it (a device runs with
nobody watching; systemd restarts a process that exits, not one that waits): opening a
source, first frame included, has a deadline (`OPEN_TIMEOUT_S`), and a feed whose source
delivers nothing for `FEED_TIMEOUT_S` ends with a `SourceLostError` (exit 5), even when the
read is stuck inside a driver and its thread can never be stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, TypeVar

import cv2
import numpy as np

from gclf.runtime.decode import check_frame_size
from gclf.runtime.errors import BadDataError, GclfError, SourceLostError, SourceUnavailableError, UsageError

T = TypeVar("T")

# A live source that delivers no frame for this long has stalled (a loose ribbon cable, a USB
# camera or a driver that stopped answering). Generous: cameras deliver 5-30 frames a second,
# and a USB camera in the dark still at least one or two.
FRAME_TIMEOUT_S = 5.0
# Opening a source and reading its first frame: a camera needs a moment to start (exposure).
OPEN_TIMEOUT_S = FRAME_TIMEOUT_S + 3.0
# The feed's own watchdog: a little longer than a source's own read timeout (the Pi camera has
# one), so that the source's more precise sentence wins where it has one.
FEED_TIMEOUT_S = FRAME_TIMEOUT_S + 1.0


class SourceStalledError(SourceLostError):
    """A source that delivers nothing at all any more (as opposed to one that reports errors)."""


def stalled(name: str, seconds: float, when: str = "for") -> SourceStalledError:
    """The one sentence for a source that delivers nothing: `when` "for" (mid-run) or "within"
    (opening, with "of opening" added)."""
    span = f"within {seconds:g} s of opening" if when == "within" else f"for {seconds:g} s"
    return SourceStalledError(f"{name} delivered no frame {span}: it stalled (loose cable, or a driver that stopped answering?)")


def within_deadline(fn: Callable[[], T], seconds: float, on_timeout: Callable[[], GclfError]) -> T:
    """`fn()` run in a thread of its own, waited for at most `seconds`; its result or its error.

    For calls into camera drivers that can block for ever (opening a camera, its first read):
    such a call cannot be interrupted, so on timeout its (daemon) thread is left behind and
    `on_timeout()` is raised here; the process ends soon after, which releases the device. A
    result that comes after all (a source opened too late) is closed by that thread.
    """
    outcome: list = []
    lock = threading.Lock()
    abandoned = threading.Event()

    def run() -> None:
        try:
            result = (True, fn())
        except BaseException as exc:  # handed to the caller's thread
            result = (False, exc)
        with lock:
            if not abandoned.is_set():
                outcome.append(result)
                return
        if result[0] and hasattr(result[1], "close"):
            result[1].close()

    thread = threading.Thread(target=run, name="gclf-open", daemon=True)
    thread.start()
    thread.join(seconds)
    with lock:
        if not outcome:
            abandoned.set()
            raise on_timeout()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


@dataclass(frozen=True)
class Frame:
    index: int  # position in the source, from 0; gaps between processed frames are drops
    timestamp: float  # wall-clock time of capture, seconds since the epoch
    bgr: np.ndarray  # (H, W, 3) uint8, OpenCV channel order


class FrameSource(Protocol):
    """Reads images one after another. Not thread-safe: one thread reads, then closes."""

    name: str  # for messages: "camera 0", "video clip.avi"
    fps: float | None  # frames per second the source states, None if it does not say

    def read(self) -> np.ndarray | None:
        """The next BGR image; None at a normal end (end of file). Raises `SourceLostError`."""
        ...

    def close(self) -> None: ...


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    # OpenCV logs a warning per backend it tries ("can't open camera by index"); the user
    # gets one clear sentence from us instead.
    logging = getattr(cv2.utils, "logging", None)
    if logging is None:  # not in every build: opencv-python-headless 4.11 (bookworm's, docs/raspberry-pi.md) lacks it
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)


class CaptureSource:
    """A camera index or a video file, read with `cv2.VideoCapture`.

    Opening reads the first frame at once, so that a camera that opens but delivers nothing
    (busy, no permission) fails here, before the loop starts, with one sentence.
    """

    # A camera read can fail once in a while (USB hiccup); this many failures in a row,
    # CAMERA_RETRY_S apart, mean it is gone.
    CAMERA_FAILURES_LOST = 5
    CAMERA_RETRY_S = 0.05

    def __init__(self, capture: cv2.VideoCapture, *, name: str, is_camera: bool) -> None:
        self._capture = capture
        self.name = name
        self.is_camera = is_camera
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = fps if math.isfinite(fps) and fps > 0 else None
        self._pending: np.ndarray | None = None

    @classmethod
    def camera(cls, device: int | str, size: tuple[int, int] | None = None) -> "CaptureSource":
        """Camera `device`: an index, or a /dev/video* path or a symlink to one (e.g.
        /dev/v4l/by-id/usb-...-video-index0, which keeps naming the same USB camera when
        another one takes /dev/video0). `size` (width, height) asks the driver for that frame
        size, which it may round to one it supports: the name says what it delivers."""
        index = device if isinstance(device, int) else video_device_index(device)
        with _quiet_opencv():
            capture = cv2.VideoCapture(index)
        if not capture.isOpened():
            capture.release()
            raise SourceUnavailableError(
                f"cannot open camera {device}: no such camera, or it is in use or not permitted "
                "(on Linux, cameras are /dev/video*; try another camera index)"
            )
        # Ask the driver for a short queue (not every backend honours it); the grabber
        # thread drains whatever queue there is anyway.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if size is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        source = cls(capture, name=f"camera {device}", is_camera=True)
        try:
            source._pending = source.read()
        except SourceLostError:
            source.close()
            raise SourceUnavailableError(f"camera {device} opened but delivers no frames (in use by another program?)") from None
        if size is not None:
            height, width = source._pending.shape[:2]
            source.name = f"camera {device} ({width}x{height})"
        return source

    @classmethod
    def video(cls, path: Path) -> "CaptureSource":
        with _quiet_opencv():
            capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            capture.release()
            raise BadDataError(f"{path}: not a video OpenCV can read")
        source = cls(capture, name=f"video {path}", is_camera=False)
        source._pending = source.read()
        if source._pending is None:
            source.close()
            raise BadDataError(f"{path}: no frame could be read from this video")
        return source

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
            return image
        failures = 0
        while True:
            ok, image = self._capture.read()
            if ok and image is not None and image.size:
                return _as_bgr(image)
            if not self.is_camera:
                return None  # a file that ends is a normal end
            failures += 1
            if failures >= self.CAMERA_FAILURES_LOST:
                raise SourceLostError(f"{self.name} stopped delivering frames (unplugged?)")
            time.sleep(self.CAMERA_RETRY_S)

    def close(self) -> None:
        self._capture.release()


def video_device_index(path: str) -> int:
    """N of the /dev/videoN that `path` is or links to; one sentence if it is neither."""
    if not os.path.exists(path):
        raise SourceUnavailableError(f"no camera at {path} (unplugged? `ls -l /dev/v4l/by-id/` lists the USB cameras)")
    real = os.path.realpath(path)
    match = re.fullmatch(r"/dev/video(\d+)", real)
    if match is None:
        raise SourceUnavailableError(f"{path} is not a camera: give a /dev/video* device or a link to one ({path} is {real})")
    return int(match[1])


def open_video(path: Path, *, timeout_s: float | None = None) -> CaptureSource:
    """`CaptureSource.video` with a deadline (None: OPEN_TIMEOUT_S): a file that blocks (a pipe
    nobody writes, a network share that stopped answering) is a `SourceLostError`, not a hang."""
    timeout_s = OPEN_TIMEOUT_S if timeout_s is None else timeout_s
    return within_deadline(lambda: CaptureSource.video(path), timeout_s, lambda: stalled(f"video {path}", timeout_s, "within"))


def _as_bgr(image: np.ndarray) -> np.ndarray:
    # Some backends hand out grey or BGRA frames; the loop expects 3-channel BGR.
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class PacedSource:
    """A video file played at its own frame rate, as a camera would deliver it (`--realtime`)."""

    def __init__(self, source: FrameSource, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not source.fps:
            raise UsageError(f"{source.name} does not state its frame rate, so it cannot be played at its own pace")
        self._source = source
        self._clock = clock
        self.name = source.name
        self.fps = source.fps
        self._start: float | None = None
        self._count = 0

    def read(self) -> np.ndarray | None:
        now = self._clock()
        if self._start is None:
            self._start = now
        # Frame n is due n/fps after the first; if decoding is slower than that, the frame
        # comes late (a slow camera), never early.
        delay = self._start + self._count / self.fps - now
        if delay > 0:
            time.sleep(delay)
        self._count += 1
        return self._source.read()

    def close(self) -> None:
        self._source.close()


class FrameFeed(Protocol):
    """What the classifier loop reads: frames from a source running in its own thread."""

    def next_frame(self) -> Frame | None:
        """The next frame to classify; blocks until there is one. None: the source ended."""
        ...

    @property
    def dropped(self) -> int: ...  # frames captured and never handed out

    @property
    def end_reason(self) -> str | None: ...  # why the source ended; None while it runs

    @property
    def failure(self) -> GclfError | None: ...  # set when it ended by losing the source

    def close(self) -> None: ...


class _ThreadedFeed:
    """The reading thread both feeds share; subclasses decide what to keep (`_deliver`).

    `timeout_s`: a consumer that waits this long for a frame finds the source stalled: the
    feed ends with a `SourceLostError`, whatever the reading thread is stuck in (None:
    FEED_TIMEOUT_S; math.inf: wait for ever).
    """

    JOIN_TIMEOUT_S = 5.0
    # After the source itself reported a stall, releasing it may hang in the same driver: the
    # run waits this long for a clean release, then ends (its exit releases the device).
    STALLED_JOIN_TIMEOUT_S = 1.0

    def __init__(self, source: FrameSource, *, clock: Callable[[], float] = time.time, timeout_s: float | None = None) -> None:
        self._source = source
        self._clock = clock
        self._timeout_s = FEED_TIMEOUT_S if timeout_s is None else timeout_s
        self._stop = threading.Event()
        self._end_reason: str | None = None
        self._failure: GclfError | None = None
        self._stalled = False  # the consumer found the source stalled: its thread is stuck
        # Daemon: a camera read stuck in its driver must not keep the process alive at exit.
        self._thread = threading.Thread(target=self._run, name=f"gclf-capture {source.name}", daemon=True)

    def start(self) -> "_ThreadedFeed":
        self._thread.start()
        return self

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    @property
    def failure(self) -> GclfError | None:
        return self._failure

    def _deadline(self) -> float | None:
        return None if math.isinf(self._timeout_s) else time.monotonic() + self._timeout_s

    def _stall(self) -> None:
        """The consumer waited `timeout_s` for nothing: end the feed as a lost source."""
        if self._failure is None:
            self._failure = stalled(self._source.name, self._timeout_s)
            self._end_reason = str(self._failure)
        self._stalled = True
        self._stop.set()

    def _run(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                image = self._source.read()
                if image is None:
                    self._end_reason = f"end of {self._source.name}"
                    break
                # A frame over the decode cap is refused like a file (a stream can claim any size).
                check_frame_size(image.shape, source=self._source.name)
                if not self._deliver(Frame(index, self._clock(), image)):
                    break
                index += 1
            else:
                self._end_reason = self._end_reason or "stopped"
        except GclfError as exc:
            self._failure = exc
            self._end_reason = str(exc)
        except Exception as exc:  # a backend error: end the feed with it rather than hang the loop
            self._failure = SourceLostError(f"{self._source.name}: reading failed ({exc})")
            self._end_reason = str(self._failure)
        finally:
            # The consumer learns of the end first: releasing a camera that failed can itself
            # take a while (or hang in its driver). Released here, in the thread that reads, so
            # a read and a release never overlap.
            self._finish()
            self._source.close()

    def close(self) -> None:
        """Stop reading and release the source; safe to call more than once. A stalled
        source's thread is stuck in its driver: it is not waited for."""
        self._stop.set()
        self._unblock()
        if self._thread.is_alive() and self._thread is not threading.current_thread() and not self._stalled:
            stalled_source = isinstance(self._failure, SourceStalledError)
            self._thread.join(self.STALLED_JOIN_TIMEOUT_S if stalled_source else self.JOIN_TIMEOUT_S)

    def _deliver(self, frame: Frame) -> bool:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _unblock(self) -> None:
        raise NotImplementedError


class LatestFrameGrabber(_ThreadedFeed):
    """Keeps only the newest frame: the classifier never works on a stale one.

    A one-frame slot instead of a queue: when the reader brings a frame before the consumer
    took the previous one, the previous one is dropped (and counted), so the time from
    capture to result stays one inference long however slow the model is.
    """

    def __init__(self, source: FrameSource, *, clock: Callable[[], float] = time.time, timeout_s: float | None = None) -> None:
        super().__init__(source, clock=clock, timeout_s=timeout_s)
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._finished = False
        self._dropped = 0

    @property
    def dropped(self) -> int:
        return self._dropped

    def _deliver(self, frame: Frame) -> bool:
        with self._cond:
            if self._slot is not None:
                self._dropped += 1
            self._slot = frame
            self._cond.notify_all()
        return True

    def _finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def _unblock(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def next_frame(self) -> Frame | None:
        deadline = self._deadline()
        with self._cond:
            while self._slot is None and not self._finished and not self._stop.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._stall()
                    return None
                self._cond.wait(remaining)
            frame, self._slot = self._slot, None
            return frame


_END = object()


class OrderedFrameReader(_ThreadedFeed):
    """Every frame, in order: decoding runs ahead by a few frames, nothing is dropped."""

    def __init__(
        self, source: FrameSource, *, ahead: int = 4, clock: Callable[[], float] = time.time, timeout_s: float | None = None
    ) -> None:
        super().__init__(source, clock=clock, timeout_s=timeout_s)
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._done = False

    @property
    def dropped(self) -> int:
        return 0

    def _deliver(self, frame: Frame) -> bool:
        return self._put(frame)

    def _put(self, item: object) -> bool:
        # A bounded put that still notices close(): the consumer may have stopped taking.
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _finish(self) -> None:
        self._put(_END)

    def _unblock(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()

    def next_frame(self) -> Frame | None:
        if self._done:
            return None
        deadline = self._deadline()
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if self._stop.is_set() or (not self._thread.is_alive() and self._queue.empty()):
                    self._done = True
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    self._stall()
                    self._done = True
                    return None
        if item is _END:
            self._done = True
            return None
        return item


def open_feed(source: FrameSource, *, keep_every_frame: bool, timeout_s: float | None = None) -> FrameFeed:
    """A started feed over `source`: every frame in order, or only the newest (a camera).
    A source that delivers nothing for `timeout_s` ends it as lost (None: FEED_TIMEOUT_S)."""
    feed = OrderedFrameReader(source, timeout_s=timeout_s) if keep_every_frame else LatestFrameGrabber(source, timeout_s=timeout_s)
    return feed.start()
