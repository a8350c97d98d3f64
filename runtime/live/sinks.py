"""Where the live loop's results go: JSON lines, a window, a video file, track events.

Each sink takes one processed frame at a time (`write`, which may ask the loop to stop) and
is closed once at the end, whatever happened. A new output (a web page, say) is one more
class with the same two methods and `needs_image`. A sink that also wants people's events
(one per finished track) has `write_event` too (`EventSink`); the loop hands each event to
every such sink, in order, before the sinks are closed. A sink that must keep time while no
frame comes (a network camera down: summaries, systemd's watchdog) has `write_waiting`
(`WaitingSink`), which the loop calls while it waits.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, TextIO, runtime_checkable

import cv2
import numpy as np

from gclf.runtime.errors import OutputWriteError, UsageError

if TYPE_CHECKING:
    from gclf.runtime.live.frames import FrameResult
    from gclf.runtime.live.network import StreamState
    from gclf.runtime.live.people import PeopleCounts, TrackEvent


class Sink(Protocol):
    needs_image: bool  # whether write() needs the annotated frame (drawing costs time)

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        """Take one processed frame; False asks the loop to stop (the user quit)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class EventSink(Protocol):
    """A sink that also takes one event per person, when their track ends."""

    def write_event(self, event: TrackEvent) -> None: ...


@runtime_checkable
class WaitingSink(Protocol):
    """A sink that also hears from the loop while it waits for a frame (about every tenth of a
    second; a network camera may be down for hours): it keeps its own time."""

    def write_waiting(self) -> None: ...


def named(record: dict[str, Any], name: str | None) -> dict[str, Any]:
    """`record` with the camera's name as "camera" after its "event" key (where a reader of
    several cameras' lines looks first, and where the MQTT events have it); unchanged without
    a name."""
    if name is None:
        return record
    head = {"event": record["event"]} if "event" in record else {}
    return {**head, "camera": name, **record}


class EventLinesSink:
    """`--events`: one JSON line per person (track), written when the track ends; with
    `name`, the camera's name in each."""

    needs_image = False

    def __init__(self, stream: TextIO, *, name: str | None = None) -> None:
        self._stream = stream
        self._name = name

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        return True

    def write_event(self, event: TrackEvent) -> None:
        write_json_line(self._stream, named(event.to_json(), self._name))

    def close(self) -> None:
        pass


class JsonLinesSink:
    """One JSON object per processed frame, flushed at once (for a pipe on a device without a screen)."""

    needs_image = False

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        write_json_line(self._stream, result.to_json())  # the same compact lines as events and summaries
        return True

    def close(self) -> None:
        pass


def write_json_line(stream: TextIO, record: dict[str, Any]) -> None:
    """One compact JSON object on one line, flushed at once (a reader tailing the file sees it)."""
    stream.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")  # NaN is not JSON: an error, never a line
    stream.flush()


# --jsonl's cap when none is given: with the one old file kept, at most twice this on disk.
DEFAULT_JSONL_MAX_BYTES = 10_000_000


class RotatingLineFile:
    """A file of text lines that never grows past `max_bytes` (`gclf-infer --jsonl`).

    Lines are appended (a restarted service goes on with the same file). When the next line
    would take the file over `max_bytes`, it is renamed PATH.1 (replacing the older one) and
    a fresh PATH is started: what is on disk stays under 2 x `max_bytes`, shipped and tested
    here rather than left to a logrotate snippet. A line is never split between the two.
    Used as the stream of the JSON-lines outputs (`write` one whole line, then `flush`).
    """

    def __init__(self, path: Path, max_bytes: int = DEFAULT_JSONL_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise UsageError(f"the size cap of {path} must be at least 1 byte, not {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._file = self._open()
        self._size = self._file.tell()

    def _open(self) -> TextIO:
        try:
            return open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise OutputWriteError(f"{self.path}: cannot append to it ({exc.strerror or exc})") from None

    def write(self, text: str) -> int:
        size = len(text.encode("utf-8"))
        if self._size and self._size + size > self.max_bytes:
            self._file.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._file, self._size = self._open(), 0
        self._file.write(text)
        self._size += size
        return len(text)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class SummarySink:
    """Every `every_s` seconds of capture time, one JSON line: frames, frame rate and the
    track counts (`gclf-infer --summary-every`), for a device nobody watches.

    With `name`, the camera's name in each line ("camera"). With `camera` (a network camera's
    state), the lines go on while it is down (by the wall clock, as `write_waiting` is
    called), and each says whether it is up, since when it is down, its outages so far and
    their total length (`camera_json`)."""

    needs_image = False

    def __init__(
        self, stream: TextIO, counts: PeopleCounts | None, every_s: float, *,
        name: str | None = None, camera: Callable[[], StreamState] | None = None, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self._stream = stream
        self._counts = counts
        self._every_s = every_s
        self._name = name
        self._camera = camera
        self._clock = clock
        self._due: float | None = None  # capture time of the next summary
        self._frames = 0  # since the last summary
        self._fps = 0.0  # the loop's rate at the latest frame

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        self._frames += 1
        self._fps = result.fps
        if self._due is None:
            self._due = result.timestamp + self._every_s
        elif result.timestamp >= self._due:
            self._write_line(result.timestamp)
        return True

    def write_waiting(self) -> None:
        """No frame for a while: a line when one is due, for a network camera (down, or slow)."""
        if self._camera is None:
            return
        now = self._clock()
        if self._due is None:
            self._due = now + self._every_s
        elif now >= self._due:
            self._write_line(now)

    def _write_line(self, now: float) -> None:
        assert self._due is not None
        fps = self._fps if self._frames else 0.0
        record: dict[str, Any] = named({"event": "summary", "timestamp": round(now, 3), "frames": self._frames, "fps": round(fps, 1)}, self._name)
        if self._counts is not None:
            counts = self._counts.snapshot(now)
            record["tracks"] = {k: counts[k] for k in ("last_minute", "last_hour", "total")}
        if self._camera is not None:
            record.update(camera_json(self._camera(), now))
        write_json_line(self._stream, record)
        self._frames = 0
        while self._due <= now:  # a stall of several periods: one line, not a burst
            self._due += self._every_s

    def close(self) -> None:
        pass


def camera_json(state: StreamState, now: float | None = None) -> dict[str, Any]:
    """A network camera's state in a summary line: up (as the MQTT counts' `camera_up`), since
    when it is down, its outages so far (the current one included) and their length in
    seconds (the current one up to `now`)."""
    return {
        "camera_up": state.up,
        "down_since": round(state.down_since, 3) if state.down_since is not None else None,
        "outages": state.outages,
        "outage_s": round(state.total_outage_s(now), 1),
    }


QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27: Esc


class WindowSink:
    """An OpenCV window showing the annotated frames; q or Esc (or closing it) quits."""

    needs_image = True

    def __init__(self, title: str = "gclf") -> None:
        self.title = title
        self._seen_visible = False
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # Checked first: some GUI backends abort the whole process without a display.
            raise UsageError("cannot open a window: no display ($DISPLAY is not set)")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise UsageError("cannot open a window: this OpenCV has no GUI support (opencv-python-headless)") from None

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        cv2.imshow(self.title, annotated)
        key = cv2.waitKey(1)  # also lets the GUI draw; 1 ms
        if key != -1 and (key & 0xFF) in QUIT_KEYS:
            return False
        # Closed with the mouse: the window stops being visible. Only trusted once it has been
        # seen visible, since a GUI backend without this property answers -1 from the start.
        visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        self._seen_visible = self._seen_visible or visible
        return visible or not self._seen_visible

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)  # lets the GUI actually remove it


VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


class VideoFileSink:
    """Writes the annotated frames to a video file, moved into place when it is complete.

    `fps` is the file's frame rate: the source's when every frame is kept. When frames are
    dropped (a camera), pass None: the rate is measured over the first frames, so the video
    plays at the speed things happened.
    """

    needs_image = True
    MEASURE_FRAMES = 15

    def __init__(self, path: Path, *, fps: float | None) -> None:
        self.path = Path(path)
        codec = check_video_path(self.path)
        # Written beside the target under a hidden name (with the real extension, which
        # picks the container), renamed at close: never a half-written file at `path`.
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._fourcc = cv2.VideoWriter_fourcc(*codec)
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._pending: list[tuple[float, np.ndarray]] = []
        self.frames_written = 0

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        assert annotated is not None
        if self._writer is None:
            self._pending.append((result.timestamp, annotated.copy()))
            if self.fps is None and len(self._pending) < self.MEASURE_FRAMES:
                return True
            self._open()
            return True
        self._put(annotated)
        return True

    def _open(self) -> None:
        fps = self.fps or _measured_fps([t for t, _ in self._pending])
        h, w = self._pending[0][1].shape[:2]
        self._writer = cv2.VideoWriter(str(self._tmp), self._fourcc, fps, (w, h))
        if not self._writer.isOpened():
            self._writer = None
            raise UsageError(f"{self.path}: OpenCV cannot write this video format here")
        for _, image in self._pending:
            self._put(image)
        self._pending = []

    def _put(self, image: np.ndarray) -> None:
        assert self._writer is not None
        self._writer.write(image)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is None and self._pending:
            self._open()  # fewer frames than the measurement wanted: use what there is
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.replace(self._tmp, self.path)


def check_video_path(path: Path) -> str:
    """The codec for a video file at `path`, its folder made; a `UsageError` for a name OpenCV
    cannot write. Callable before the source is opened, so a wrong name fails first."""
    codec = VIDEO_CODECS.get(path.suffix.lower())
    if codec is None:
        raise UsageError(f"{path}: use a .mp4 or .avi file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"{path.parent}: cannot make the folder ({exc.strerror or exc})") from None
    return codec


def _measured_fps(timestamps: Sequence[float]) -> float:
    span = timestamps[-1] - timestamps[0] if len(timestamps) > 1 else 0.0
    return min(120.0, max(1.0, (len(timestamps) - 1) / span)) if span > 0 else 10.0
