"""Watch the live loop in a browser: `gclf-infer ... --serve HOST:PORT`.

`WebSink` is one more sink of the live loop (the same `write`/`close` protocol as the JSON
lines, window and video sinks). Its `write` only keeps a reference to the newest result and
annotated frame: O(1), no copy, no encoding, no lock, so the model never waits for a viewer.
A web server in its own thread (gclf.runtime.serve_http, tornado on one asyncio event loop)
serves:

    /         one page: the newest annotated frame, FPS, dropped frames, model and classes
    /stream   the annotated frames as MJPEG (multipart/x-mixed-replace), for browsers and VLC
    /latest   the newest frame's result as JSON (a --headless line's fields, plus the page's)
    /counts   tracks per label, in total, over the last minute and hour (gclf.runtime.tracks)

Pictures are drawn (by the loop, through `needs_image`) and JPEG-encoded (in the server's
one encoding thread) only while someone watches /stream, and at most `STREAM_MAX_FPS` times
a second: on a Pi they share the cores with the model. Each picture is encoded once,
whatever the number of viewers.

Private by default: without a host it binds 127.0.0.1; any other address needs a token
(given, or generated and printed with the URL) and every request without it gets 403.

This module imports no web library, so that `--serve` without the `serve` extra can say
so in one sentence; the tornado side is imported when a `WebSink` is made.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import re
import secrets
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from gclf.runtime.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from gclf.runtime.live import FrameResult

LOOPBACK = "127.0.0.1"
MAX_VIEWERS = 8  # concurrent /stream connections; more get 503 (each one costs a socket's buffers)
STREAM_MAX_FPS = 15.0  # JPEG encodes per second, all viewers together: a Pi's cores belong to the model
JPEG_QUALITY = 80
WRITE_TIMEOUT_S = 10.0  # a viewer that takes no data for this long is disconnected (frees its slot)
MIN_TOKEN_LENGTH = 12
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")  # URL-safe: goes into ?token= unescaped
INSTALL_HINT = 'pip install "gclf[serve]"'


# --- where to listen, and who may watch -------------------------------------------------------


@dataclass(frozen=True)
class ServeAddress:
    host: str  # an IP address or a host name; LOOPBACK when none was given
    port: int  # 0: any free port (the one chosen is WebSink.port)

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)


def parse_serve_address(text: str) -> ServeAddress:
    """`PORT`, `:PORT`, `HOST:PORT` or `[IPv6]:PORT`; no host means 127.0.0.1 (this machine only)."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"--serve {text}: write an IPv6 address in brackets, e.g. [::1]:8080")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--serve {text}: give PORT, :PORT or HOST:PORT with a port from 0 to 65535")
    return ServeAddress(host or LOOPBACK, int(port_text))


def is_loopback_host(host: str) -> bool:
    """Whether only this machine can reach `host`: a loopback IP literal or `localhost`.

    Any other name counts as reachable from outside (it may resolve to anything).
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(address: ServeAddress, token: str | None) -> str | None:
    """The token requests must carry: `token` when given, else a generated one off loopback,
    else None (on loopback only this machine's own programs can connect)."""
    if token is not None:
        if len(token) < MIN_TOKEN_LENGTH or not TOKEN_CHARS.fullmatch(token):
            raise UsageError(
                f"--token must be at least {MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 . _ ~ - "
                "(leave it out and a strong one is generated)"
            )
        return token
    if address.loopback:
        return None
    return secrets.token_urlsafe(16)


def token_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison (the time taken tells nothing about how much of a guess was right)."""
    if expected is None:
        return True
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def reachable_hosts(address: ServeAddress) -> list[str]:
    """Host names or addresses to put in the printed URL: the bound host, or for a wildcard
    bind (0.0.0.0, ::) this machine's name and its address on the local network."""
    try:
        wildcard = ipaddress.ip_address(address.host).is_unspecified
    except ValueError:
        wildcard = False
    if not wildcard:
        return [address.host]
    hosts = []
    with contextlib.suppress(OSError):
        # Connecting a UDP socket sends nothing; it only asks the kernel which local address
        # would be used to reach the network (the one another machine can reach us on).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            hosts.append(probe.getsockname()[0])
    with contextlib.suppress(OSError):
        hosts.append(socket.gethostname() + ".local")  # mDNS name, as a Pi announces itself
    return hosts or [address.host]


def page_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


# --- what the loop hands over -----------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """What the page shows about the model."""

    name: str  # the file's name
    variant: str  # "fp32" or "int8"
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    """The newest processed frame as the loop left it. The arrays are never written again
    (each frame from a source is a new array), so server threads read them without a lock."""

    seq: int  # frames written to the sink so far, this one included (1, 2, ...)
    result: "FrameResult"
    image: "np.ndarray | None"  # annotated BGR; None while nobody watched, or between pictures
    dropped: int  # the feed's dropped-frame count when this frame was written


class WebSink:
    """A live-loop sink that serves the newest frame over HTTP (see the module's docstring).

    Made before the source is opened: binding the port (and finding the web library) fails
    here with a clear error. `close()` stops the server and closes every connection.
    """

    def __init__(
        self,
        address: ServeAddress,
        *,
        token: str | None,
        model: ModelInfo,
        dropped: Callable[[], int] = lambda: 0,
        max_viewers: int = MAX_VIEWERS,
        max_fps: float = STREAM_MAX_FPS,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        try:
            import tornado  # noqa: F401  (only to tell a missing extra apart from a bug)
        except ImportError:
            raise MissingDependencyError(f"--serve needs the web server extra: {INSTALL_HINT}") from None
        from gclf.runtime.serve_http import WebServer

        self.address = address
        self.token = token
        self.model = model
        self.dropped = dropped  # settable: the CLI makes the feed after the sinks
        self.counts: Callable[[], dict[str, Any]] = dict  # settable: /counts's body (TrackCounts.snapshot)
        self._latest: Snapshot | None = None  # the newest frame
        self._latest_image: Snapshot | None = None  # the newest frame that came with its picture
        self._seq = 0
        self._image_interval = 1.0 / max_fps
        self._next_image_at = 0.0  # time.monotonic() from which the next picture is wanted
        self._server = WebServer(
            address.host,
            address.port,
            token=token,
            loopback_only=address.loopback,
            latest=lambda: self._latest,
            latest_image=lambda: self._latest_image,
            model=model,
            counts=lambda: self.counts(),
            max_viewers=max_viewers,
            max_fps=max_fps,
            write_timeout_s=write_timeout_s,
        )

    @property
    def port(self) -> int:
        return self._server.port

    def urls(self) -> list[str]:
        """The page's address(es), with the token: what the user opens."""
        return [page_url(host, self.port, self.token) for host in reachable_hosts(self.address)]

    @property
    def needs_image(self) -> bool:
        """Annotated frames are wanted only while someone watches /stream, and no more often
        than they can be encoded: drawing takes the loop's own time (about 1 ms a frame)."""
        return self._server.viewers > 0 and time.monotonic() >= self._next_image_at

    @property
    def viewers(self) -> int:
        return self._server.viewers

    def write(self, result: "FrameResult", annotated: "np.ndarray | None") -> bool:
        # O(1) on the loop's thread: one reference replaced (atomic in Python), and the
        # server's event loop woken only when a viewer waits for the frame.
        self._seq += 1
        snapshot = Snapshot(self._seq, result, annotated, self.dropped())
        self._latest = snapshot
        if annotated is not None:
            self._latest_image = snapshot
            self._next_image_at = time.monotonic() + self._image_interval
            self._server.frame_arrived()  # only pictures wake the viewers
        return True

    def close(self) -> None:
        self._server.close()


def latest_json(snapshot: Snapshot | None, model: ModelInfo) -> dict[str, Any]:
    """/latest's body: a --headless line's fields for the newest frame, plus what the page
    shows (dropped frames, frames processed, the model). Before the first frame the frame's
    fields are null."""
    if snapshot is None:
        body: dict[str, Any] = {"timestamp": None, "frame": None, "faces": [], "fps": None, "dropped": 0, "processed": 0}
    else:
        body = snapshot.result.to_json()
        body.update(dropped=snapshot.dropped, processed=snapshot.seq)
    body["model"] = {"name": model.name, "variant": model.variant, "classes": list(model.classes)}
    return body


def encode_jpeg(image: "np.ndarray", quality: int = JPEG_QUALITY) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} frame as JPEG")
    return buf.tobytes()
