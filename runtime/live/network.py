"""A network camera (RTSP, RTSPS, HTTP(S) MJPEG or any stream FFmpeg reads) as a frame source
that never ends on a drop.

`NetworkSource` is a `FrameSource` (gclf.runtime.live.sources): the live loop runs it in a
`LatestFrameGrabber` as it runs a USB camera. Unlike a local camera, whose loss ends the run
(exit 5, systemd restarts the process), a network camera goes away and comes back (a reboot,
Wi-Fi, a power cut after which the camera boots later than the device), so the source
reconnects by itself:

- a read that fails, or no frame for `frame_timeout_s` (5 s; FFmpeg's own read timeout,
  CAP_PROP_READ_TIMEOUT_MSEC, so no thread is ever left behind), closes the stream; it is
  reopened after 1 s, then 2, 4, ... at most 30 s apart (each open bounded by
  CAP_PROP_OPEN_TIMEOUT_MSEC), for ever, or until `reconnect_max` reopenings in a row failed
  (then a `SourceLostError`, exit 5);
- a camera that cannot be reached at start is a drop like any other: `read()` waits for it;
- a camera that refuses the user name, password or token before it ever delivered a frame is
  a configuration mistake: `CameraAuthError` (exit 2, which the unit does not restart). Once
  it has delivered frames, a refusal is an outage like the others (cameras answer oddly
  while they reboot), reported with its reason.

While the stream is down `read()` does not return (it is reconnecting), so the caller learns
of the outage through `state` (polled) or `on_change` (called in the reading thread at each
change: down, each failed attempt, up again): the live loop ends the tracks of people in
view, keeps systemd's watchdog fed while `responsive()` and shows "camera down since ...".
The feed around it must not time out on its own: `open_network_feed`.

Secrets: the URL's password and token never appear in `name`, messages, errors or repr
(gclf.runtime.redact). FFmpeg's and OpenCV's own log output is switched off for the process
once a network stream is opened (FFmpeg would print to stdout, between the JSON lines, and
some of its lines name the URL); `stream_probe.diagnose` says why an open failed instead.

Frames larger than the decode cap (gclf.runtime.decode.max_image_pixels) are refused like
image files, with a `BadDataError` (exit 3), before the first one reaches the loop.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

import cv2
import numpy as np

from gclf.runtime.decode import PIXELS_ENV, max_image_pixels
from gclf.runtime.errors import BadDataError, SourceLostError, SourceUnavailableError, UsageError
from gclf.runtime.redact import NETWORK_SCHEMES, is_network_url, redact, url_secrets
from gclf.runtime.live.stream_probe import AUTH, SILENT, diagnose
from gclf.runtime.live.sources import LatestFrameGrabber

TRANSPORTS = ("tcp", "udp")
FRAME_TIMEOUT_S = 5.0  # no frame for this long: the stream stalled, reopen it
OPEN_TIMEOUT_S = 10.0  # connecting, the RTSP handshake and FFmpeg's probe of the first frames
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
PROBE_TIMEOUT_S = 5.0  # each network wait of the diagnosis after a failed open

# FFmpeg and OpenCV read these when a capture opens. OpenCV passes OPENCV_FFMPEG_CAPTURE_OPTIONS
# to avformat_open_input ("key;value|key;value"); with none it asks for RTSP over TCP itself.
# OPENCV_FFMPEG_LOGLEVEL=-8 is AV_LOG_QUIET: with any other value OpenCV installs a log
# callback that prints FFmpeg's lines to stdout, and without it FFmpeg prints errors (some
# with the camera's address) to stderr.
_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_FFMPEG_LOGLEVEL_ENV = "OPENCV_FFMPEG_LOGLEVEL"
_FFMPEG_QUIET = "-8"
# One open at a time in this process: the options travel through the environment.
_OPEN_LOCK = threading.Lock()


class CameraAuthError(SourceUnavailableError):
    """A network camera that refuses the user name, password or token (exit 2: a configuration
    mistake; the unit does not restart on it)."""


@dataclass(frozen=True, kw_only=True)
class StreamOptions:
    """How a network stream is read and reconnected; the defaults suit a camera on a LAN.
    Tests shorten the timeouts."""

    transport: str = "tcp"  # RTSP over "tcp" (one connection, passes NAT and firewalls) or "udp"
    frame_timeout_s: float = FRAME_TIMEOUT_S
    open_timeout_s: float = OPEN_TIMEOUT_S
    backoff_first_s: float = BACKOFF_FIRST_S
    backoff_max_s: float = BACKOFF_MAX_S
    probe_timeout_s: float = PROBE_TIMEOUT_S
    # Reopenings in a row that may fail before the source gives up (SourceLostError, exit 5);
    # None: never give up. At start, the first attempt is not a reopening.
    reconnect_max: int | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise UsageError(f"the RTSP transport must be tcp or udp, not {self.transport!r}")
        for name in ("frame_timeout_s", "open_timeout_s", "backoff_first_s", "backoff_max_s", "probe_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UsageError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.reconnect_max is not None and self.reconnect_max < 0:
            raise UsageError(f"the number of reconnections must be 0 or more, not {self.reconnect_max}")

    def backoff_s(self, failures: int) -> float:
        """The wait before reopening after `failures` failed attempts in a row (>= 1): 1, 2, 4 ... capped."""
        return min(self.backoff_max_s, self.backoff_first_s * 2 ** min(failures - 1, 62))

    def max_silence_s(self) -> float:
        """The longest `read()` can go without any sign of progress while it works: one open,
        its diagnosis, one read and the longest wait. Longer means it is stuck (see `responsive`)."""
        return self.open_timeout_s + 3 * self.probe_timeout_s + self.frame_timeout_s + self.backoff_max_s


@dataclass(frozen=True)
class StreamState:
    """A snapshot of a network source, for the page, the summary, `--check` and systemd's status."""

    up: bool = False  # frames are flowing
    down_since: float | None = None  # wall-clock time (epoch s) the current outage began; None while up
    outages: int = 0  # outages so far, the current one included (a camera unreachable at start is one)
    stalls: int = 0  # of which the stream went silent (no frame for frame_timeout_s, or a peer that said nothing)
    outage_s: float = 0.0  # total length of the outages that ended
    failed_attempts: int = 0  # failed (re)openings in the current outage
    last_error: str | None = None  # the latest reason it is down, one redacted sentence
    frames: int = 0  # frames delivered in all
    connected_at: float | None = None  # wall-clock time frames last began to flow
    gave_up: bool = False  # reconnect_max reached: the source ended

    def total_outage_s(self, now: float | None = None) -> float:
        """Outage time so far, the current outage counted up to `now` (epoch s)."""
        current = 0.0
        if self.down_since is not None:
            current = max(0.0, (time.time() if now is None else now) - self.down_since)
        return self.outage_s + current

    def line(self, now: float | None = None) -> str:
        """One line for a status: "camera up, 2 outages (41 s in all)" or "camera down since
        12:03:07 (3 failed attempts): <reason>"."""
        count = f"{self.outages} outage{'s' if self.outages != 1 else ''} ({self.total_outage_s(now):.0f} s in all)"
        if self.up:
            return f"camera up, {count}"
        if self.down_since is None:
            return "camera connecting"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.down_since))
        line = f"camera down since {since}, {count}"
        return line + (f": {self.last_error}" if self.last_error else "")

    def to_json(self) -> dict:
        return {
            "up": self.up,
            "down_since": self.down_since,
            "outages": self.outages,
            "stalls": self.stalls,
            "outage_s": round(self.total_outage_s(), 3),
            "failed_attempts": self.failed_attempts,
            "last_error": self.last_error,
            "frames": self.frames,
        }


class NetworkSource:
    """Frames from a network camera URL, reconnecting as the module docstring says.

    One thread reads (`read()`); `state`, `responsive()` and `close()` may be called from any
    thread. `close()` wakes a reconnection wait at once; a read or open in progress finishes
    within its timeout, and the reading thread then releases the stream.
    """

    def __init__(
        self,
        url: str,
        *,
        options: StreamOptions | None = None,
        on_change: Callable[[StreamState], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not is_network_url(url):
            raise UsageError(f"a network camera needs an {', '.join(s + '://' for s in NETWORK_SCHEMES)} URL")
        self._url = url
        self._secrets = url_secrets(url)
        self.name = f"camera {redact(url, self._secrets)}"
        self.fps: float | None = None
        self.options = options or StreamOptions()
        self._on_change = on_change
        self._clock = clock
        self._capture: cv2.VideoCapture | None = None
        self._closing = threading.Event()  # set by close(): wakes waits, makes read() end
        self._lock = threading.Lock()  # guards _state, _reading and the capture's release
        self._reading = False
        self._state = StreamState()
        self._ever_up = False  # delivered a frame at least once: refusals are outages from then on
        self._waits = 0  # backoff waits in the current outage: the next waits backoff_s(_waits + 1)
        self._last_activity = time.monotonic()

    def __repr__(self) -> str:
        return f"NetworkSource({self.name!r})"

    # --- what other threads see --------------------------------------------------------

    @property
    def state(self) -> StreamState:
        with self._lock:
            return self._state

    def responsive(self) -> bool:
        """False when the reading thread has shown no sign of progress (a frame, an attempt, a
        wait) for longer than any of its bounded steps takes: it is stuck, and whatever feeds
        systemd's watchdog should stop, so that the process is restarted."""
        return time.monotonic() - self._last_activity <= self.options.max_silence_s()

    def redact(self, text: str) -> str:
        """`text` with this camera's secrets replaced by ***."""
        return redact(text, self._secrets)

    # --- the FrameSource protocol ------------------------------------------------------

    def read(self) -> np.ndarray | None:
        """The next BGR frame, reconnecting for as long as it takes; None once `close()` was
        called. Raises `CameraAuthError` (refused before ever delivering), `BadDataError`
        (frames over the pixel cap) or `SourceLostError` (reconnect_max reached)."""
        with self._lock:
            self._reading = True
        try:
            while not self._closing.is_set():
                if self._capture is None:
                    self._connect()
                    continue
                started = time.monotonic()
                ok, image = self._capture.read()
                self._last_activity = time.monotonic()
                if ok and image is not None and image.size:
                    self._check_size(image.shape[1], image.shape[0])
                    self._delivered()
                    return _as_bgr(image)
                waited = time.monotonic() - started
                stalled = waited >= self.options.frame_timeout_s * 0.9
                reason = (
                    f"{self.name} delivered no frame for {self.options.frame_timeout_s:g} s: it stalled"
                    if stalled
                    else f"{self.name} stopped delivering frames (the stream ended or the connection closed)"
                )
                # An open that never delivered a frame is a failed attempt, like one that did not open.
                opened_only = not self.state.up
                self._release()
                self._went_down(reason, stalled=stalled, attempt_failed=opened_only)
                self._wait_before_reopening()
            return None
        finally:
            with self._lock:
                self._reading = False
                closing = self._closing.is_set()
            if closing:
                self._release()

    def close(self) -> None:
        """Stop: wakes a reconnection wait; the stream is released now, or by the reading
        thread when its current read or open returns. Safe from any thread, more than once."""
        self._closing.set()
        with self._lock:
            reading = self._reading
        if not reading:
            self._release()

    # --- connecting ----------------------------------------------------------------------

    def _connect(self) -> None:
        """One attempt to open the stream; on failure, the outage is recorded and the backoff
        waited (or the source gives up). Returns with `_capture` set or not."""
        capture = _open_capture(self._url, self.options)
        self._last_activity = time.monotonic()
        if capture is not None:
            width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            fps = capture.get(cv2.CAP_PROP_FPS)
            try:
                self._check_size(width, height)
            except BadDataError:
                capture.release()
                raise
            self.fps = fps if math.isfinite(fps) and 0 < fps <= 240 else None
            with self._lock:
                if self._closing.is_set():
                    capture.release()
                    return
                self._capture = capture
            return  # "up" once the first frame arrives
        diagnosis = diagnose(self._url, min(self.options.probe_timeout_s, self.options.open_timeout_s))
        self._last_activity = time.monotonic()
        reason = self.redact(f"cannot open {self.name}: {diagnosis.reason}")
        if diagnosis.kind == AUTH and not self._ever_up:
            raise CameraAuthError(reason)
        self._went_down(reason, stalled=diagnosis.kind == SILENT, attempt_failed=True)
        self._wait_before_reopening()

    def _wait_before_reopening(self) -> None:
        state = self.state
        limit = self.options.reconnect_max
        # At start the first attempt is not a reopening: one more attempt in all.
        allowed = None if limit is None else limit + (0 if self._ever_up else 1)
        if allowed is not None and state.failed_attempts >= allowed:
            self._update(gave_up=True)
            raise SourceLostError(
                f"{self.name} could not be reopened ({state.failed_attempts} attempts failed in a row, "
                f"the reconnection limit): {_strip_name(state.last_error or 'no reason known', self.name)}"
            )
        self._waits += 1
        deadline = time.monotonic() + self.options.backoff_s(self._waits)
        # Waited in short steps, so that `responsive()` sees a live thread however long the wait.
        while not self._closing.is_set():
            self._last_activity = time.monotonic()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._closing.wait(min(remaining, 1.0))

    # --- state changes -------------------------------------------------------------------

    def _went_down(self, reason: str, *, stalled: bool, attempt_failed: bool = False) -> None:
        now = self._clock()
        with self._lock:
            state = self._state
            new_outage = state.down_since is None
            self._state = replace(
                state,
                up=False,
                down_since=now if new_outage else state.down_since,
                outages=state.outages + (1 if new_outage else 0),
                stalls=state.stalls + (1 if stalled else 0),
                failed_attempts=state.failed_attempts + (1 if attempt_failed else 0),
                last_error=self.redact(reason),
                connected_at=None,
            )
            snapshot = self._state
        self._notify(snapshot)

    def _delivered(self) -> None:
        with self._lock:
            state = self._state
            if state.up:
                self._state = replace(state, frames=state.frames + 1)
                return
            now = self._clock()
            ended = max(0.0, now - state.down_since) if state.down_since is not None else 0.0
            self._state = replace(
                state, up=True, down_since=None, outage_s=state.outage_s + ended, failed_attempts=0,
                frames=state.frames + 1, connected_at=now,
            )  # fmt: skip
            self._ever_up = True
            self._waits = 0
            snapshot = self._state
        self._notify(snapshot)

    def _update(self, **changes) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)
            snapshot = self._state
        self._notify(snapshot)

    def _notify(self, snapshot: StreamState) -> None:
        if self._on_change is not None:
            self._on_change(snapshot)

    # --- helpers -------------------------------------------------------------------------

    def _check_size(self, width: int, height: int) -> None:
        cap = max_image_pixels()
        if width * height > cap:
            raise BadDataError(
                f"{self.name}: frames too large ({width}x{height} pixels; gclf reads images of up to {cap} pixels, "
                f"${PIXELS_ENV} raises it, or set the camera's stream to a smaller size)"
            )

    def _release(self) -> None:
        with self._lock:
            capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


def _strip_name(reason: str, name: str) -> str:
    """A reason without its leading "cannot open <name>: ", to follow another sentence's colon."""
    prefix = f"cannot open {name}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def capture_options(transport: str, inherited: str | None) -> str:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS for an open: the user's own options, if any, then the RTSP
    transport (last, so that it wins: FFmpeg keeps the last value of a key)."""
    kept = [pair for pair in (inherited or "").split("|") if pair and not pair.startswith("rtsp_transport;")]
    return "|".join([*kept, f"rtsp_transport;{transport}"])


def silence_ffmpeg() -> None:
    """Switch FFmpeg's and OpenCV's own log output off for this process (see the module
    docstring). Applied at every open (OpenCV re-reads the variable each time)."""
    os.environ[_FFMPEG_LOGLEVEL_ENV] = _FFMPEG_QUIET
    os.environ.pop("OPENCV_FFMPEG_DEBUG", None)
    os.environ["OPENCV_LOG_LEVEL"] = "SILENT"
    logging = getattr(cv2.utils, "logging", None)
    if logging is not None:  # not in every build (opencv-python-headless 4.11 lacks it)
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)


def _open_capture(url: str, options: StreamOptions) -> cv2.VideoCapture | None:
    """A capture with FFmpeg's open and read timeouts, or None if it did not open."""
    with _OPEN_LOCK:
        silence_ffmpeg()
        previous = os.environ.get(_OPTIONS_ENV)
        os.environ[_OPTIONS_ENV] = capture_options(options.transport, previous)
        try:
            capture = cv2.VideoCapture(
                url,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(options.open_timeout_s * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(options.frame_timeout_s * 1000),
                ],
            )  # fmt: skip
        except cv2.error:
            return None
        finally:
            # Other captures of this process (video files) see what they saw before.
            if previous is None:
                os.environ.pop(_OPTIONS_ENV, None)
            else:
                os.environ[_OPTIONS_ENV] = previous
    if not capture.isOpened():
        capture.release()
        return None
    return capture


class _NetworkFeed(LatestFrameGrabber):
    """The newest-frame-wins feed over a `NetworkSource`, whose `close()` closes the source
    first (it may be called from any thread): a reconnection wait of up to 30 s ends at once,
    so a run asked to stop while its camera is down ends within a second."""

    def close(self) -> None:
        self._source.close()
        super().close()


def open_network_feed(source: NetworkSource) -> LatestFrameGrabber:
    """A started newest-frame-wins feed over `source`, without the feed's own stall timeout:
    the source detects stalls itself and reconnects, and a wait for it is not a lost camera."""
    return _NetworkFeed(source, timeout_s=math.inf).start()


@dataclass(frozen=True)
class StreamCheck:
    width: int
    height: int
    fps: float | None

    def line(self, name: str) -> str:
        rate = f" at {self.fps:g} fps" if self.fps else ""
        return f"{name}: {self.width}x{self.height}{rate}"


def check_stream(url: str, options: StreamOptions | None = None) -> StreamCheck:
    """For `--check`: open `url` once and read one frame, each within its timeout; the frame's
    size and the stated rate, or a `SourceUnavailableError` (CameraAuthError for refused
    credentials) with the diagnosed reason, redacted. No retries, no reconnection."""
    options = options or StreamOptions()
    source = NetworkSource(url, options=replace(options, reconnect_max=0, backoff_first_s=0.001, backoff_max_s=0.001))
    try:
        image = source.read()
    except SourceLostError as exc:
        raise SourceUnavailableError(source.redact(str(exc))) from None
    finally:
        source.close()
    if image is None:
        raise SourceUnavailableError(f"{source.name} delivered no frame")
    return StreamCheck(image.shape[1], image.shape[0], source.fps)
