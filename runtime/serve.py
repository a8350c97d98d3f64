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

Private by default: without a host it binds 127.0.0.1. Every address, loopback included,
needs a token (from `--token-file`, `$GCLF_SERVE_TOKEN` or `--token`; else generated and
printed with the URL, as Jupyter does) and every request without it gets 403. A token the
user gave is never printed. The page trades the URL's token for an HttpOnly cookie.

This module imports no web library, so that `--serve` without the `serve` extra can say
so in one sentence; the tornado side is imported when a `WebSink` is made.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import re
import secrets
import socket
import stat
import time
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import click

from gclf.runtime.cli_support import warn
from gclf.runtime.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from gclf.runtime.live import FrameResult

LOOPBACK = "127.0.0.1"
MAX_VIEWERS = 8  # concurrent /stream connections; more get 503 (each one costs a socket's buffers)
STREAM_MAX_FPS = 15.0  # JPEG encodes per second, all viewers together: a Pi's cores belong to the model
JPEG_QUALITY = 80
# A frame's write must be done (in the socket's small send buffer) this long after it began,
# else the viewer is disconnected and frees its slot. The buffers between a viewer and us
# (our 32 KB send buffer, its receive buffer) hold a few seconds of frames at most, so a viewer
# that stops reading is let go within 10 s; any link that shows video sends a frame in 5 s.
WRITE_TIMEOUT_S = 5.0
MIN_TOKEN_LENGTH = 22  # secrets.token_urlsafe(16): 128 bits
MIN_TOKEN_DISTINCT = 10  # distinct characters: refuses "aaaa...", "abab...", "1234512345..."
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")  # URL-safe: goes into ?token= unescaped
# Words of the guides' and tools' placeholders ("YOUR-LONG-TOKEN", "changeme", "<token>"):
# a token copied from a page instead of made is public.
PLACEHOLDER_WORDS = ("your", "token", "change", "example", "placeholder", "secret", "password", "xxxx", "replace")
TOKEN_ENV = "GCLF_SERVE_TOKEN"
MAKE_TOKEN_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"
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


@dataclass(frozen=True)
class ServeToken:
    """The token every request must carry, and where it came from. `generated`: made for this
    run, so it may be printed; a token the user gave is never printed (it outlives the run)."""

    value: str
    source: str  # "generated", "--token", "--token-file PATH", "$GCLF_SERVE_TOKEN"

    @property
    def generated(self) -> bool:
        return self.source == "generated"

    def __repr__(self) -> str:  # never in a traceback or a log by accident
        return f"ServeToken(source={self.source!r})"


def resolve_token(token: str | None = None, token_file: Path | None = None, environ: dict[str, str] | None = None) -> ServeToken:
    """The token for --serve: `--token`, `--token-file` (one of them), else $GCLF_SERVE_TOKEN,
    else a new random one. A given token must pass `check_token` (UsageError, exit 2)."""
    if token is not None and token_file is not None:
        raise UsageError("give --token or --token-file, not both")
    env = os.environ if environ is None else environ
    if token_file is not None:
        given = ServeToken(read_token_file(token_file), f"--token-file {token_file}")
    elif token is not None:
        given = ServeToken(token, "--token")
    elif env.get(TOKEN_ENV):
        given = ServeToken(env[TOKEN_ENV], f"${TOKEN_ENV}")
    else:
        return ServeToken(secrets.token_urlsafe(24), "generated")
    check_token(given.value, given.source)
    return given


def check_token(token: str, source: str) -> None:
    """Refuse a token that is short, not URL-safe, a placeholder or low-variety, in one
    sentence (never quoting the token) with a one-line way to make a good one."""
    lowered = token.lower()
    if len(token) < MIN_TOKEN_LENGTH or not TOKEN_CHARS.fullmatch(token):
        problem = f"must be at least {MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 . _ ~ -"
    elif any(word in lowered for word in PLACEHOLDER_WORDS):
        problem = "looks like a placeholder, not a secret"
    elif len(set(token)) < MIN_TOKEN_DISTINCT:
        problem = f"has too little variety (fewer than {MIN_TOKEN_DISTINCT} different characters)"
    else:
        return
    raise UsageError(f"the token from {source} {problem}: make one with {MAKE_TOKEN_HINT}")


def read_token_file(path: Path) -> str:
    """The token in `path`, one trailing newline stripped. A file other users can read is
    refused: the token would be theirs too (0600 or 0640, as systemd's credentials are)."""
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            data = fh.read(4097)
    except OSError as exc:
        raise UsageError(f"--token-file {path}: cannot read it ({exc.strerror or exc})") from None
    if mode & stat.S_IROTH:
        raise UsageError(f"--token-file {path} is readable by every user of this machine: chmod 600 {path}")
    text = data.decode("utf-8", "replace")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return text


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


def cookie_name(port: int) -> str:
    """The cookie that holds the token after the first visit; one per port, since cookies
    are shared by every port of a host."""
    return f"gclf_token_{port}"


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
        token: ServeToken | str,
        model: ModelInfo,
        dropped: Callable[[], int] = lambda: 0,
        max_viewers: int = MAX_VIEWERS,
        max_fps: float = STREAM_MAX_FPS,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        report: Callable[[str], None] | None = None,
        **limits: Any,
    ) -> None:
        """`token`: a `ServeToken` (resolve_token), or a plain string, taken as given (not
        printed). `report`: where the server's own trouble goes (default: a line on stderr).
        `limits`: serve_http.WebServer's max_connections, max_per_address, header_timeout_s."""
        try:
            import tornado  # noqa: F401  (only to tell a missing extra apart from a bug)
        except ImportError:
            raise MissingDependencyError(f"--serve needs the web server extra: {INSTALL_HINT}") from None
        from gclf.runtime.serve_http import WebServer

        self.address = address
        self.token = token if isinstance(token, ServeToken) else ServeToken(token, "the caller")
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
            token=self.token.value,
            loopback_only=address.loopback,
            latest=lambda: self._latest,
            latest_image=lambda: self._latest_image,
            model=model,
            counts=lambda: self.counts(),
            max_viewers=max_viewers,
            max_fps=max_fps,
            write_timeout_s=write_timeout_s,
            report=report or warn,
            **limits,
        )

    @property
    def port(self) -> int:
        return self._server.port

    def urls(self) -> list[str]:
        """The page's address(es): with the token when it was generated for this run (the
        one way to learn it), without it when the user gave it (never printed)."""
        shown = self.token.value if self.token.generated else None
        return [page_url(host, self.port, shown) for host in reachable_hosts(self.address)]

    @property
    def open_connections(self) -> int:
        return self._server.open_connections

    @property
    def connection_limits(self) -> tuple[int, int]:
        """(total, per address): see serve_http.connection_limits."""
        return self._server.max_connections, self._server.max_per_address

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


def make_web_sink(serve: str, token: str | None, token_file: Path | None, model: Path, clf):
    """The --serve sink, bound and serving (no frame yet), for gclf-infer's options."""
    address = parse_serve_address(serve)
    info = ModelInfo(model.name, clf.metadata.variant, tuple(clf.class_names))
    return WebSink(address, token=resolve_token(token, token_file), model=info, report=warn)


def announce_web_sink(web) -> None:
    """Where to watch, on stderr, once the live source is open."""
    # A token the user gave is never printed (it outlives the run, and stderr is the journal).
    given = "" if web.token.generated else f" (add ?token= with the token from {web.token.source})"
    for url in web.urls():
        click.echo(f"live: watch at {url}{given}", err=True)
    if web.address.loopback:
        click.echo("live: only this machine can connect, with the token (from another one: ssh -L, or --serve 0.0.0.0:PORT)", err=True)
    else:
        click.echo("live: anyone on the network with this link (token included) can watch; Ctrl-C stops", err=True)


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
