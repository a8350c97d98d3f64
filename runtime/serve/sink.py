"""Watch the live loop in a browser: `gclf-infer ... --serve HOST:PORT`.

`WebSink` is one more sink of the live loop (the same `write`/`close` protocol as the JSON
lines, window and video sinks). Its `write` only keeps a reference to the newest result and
annotated frame: O(1), no copy, no encoding, no lock, so the model never waits for a viewer.
A web server in its own thread (gclf.runtime.serve.server, tornado on one asyncio event loop)
serves:

    /         one page: the newest annotated frame, FPS, dropped frames, model and classes
    /stream   the annotated frames as MJPEG (multipart/x-mixed-replace), for browsers and VLC
    /latest   the newest frame's result as JSON (a --headless line's fields, plus the page's)
    /counts   tracks per label, in total, over the last minute and hour (gclf.runtime.live.people)
    /metrics  the live metrics in Prometheus's text format (gclf.runtime.serve.metrics), when
              given; with the token, or on loopback without it (`metrics_public`)
    /healthz  200 while frames flow, 503 when none came for STALLED_AFTER_S; no token, no details

Pictures are drawn (by the loop, through `needs_image`) and JPEG-encoded (in the server's
one encoding thread) only while someone watches /stream, and at most `STREAM_MAX_FPS` times
a second: on a Pi they share the cores with the model. Each picture is encoded once,
whatever the number of viewers.

Private by default: without a host it binds 127.0.0.1. Every address, loopback included,
needs a token (from `--token-file`, `$GCLF_SERVE_TOKEN` or `--token`; else generated and
printed with the URL, as Jupyter does) and every request without it gets 403. A token the
user gave is never printed. The page trades the URL's token for an HttpOnly cookie holding
a value made for this server's process (never the token).

This module imports no web library, so that `--serve` without the `serve` extra can say
so in one sentence; the tornado side (gclf.runtime.serve.server) is imported when a
`WebSink` is made. The address and token rules are gclf.runtime.serve.access, what is
served gclf.runtime.serve.content.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gclf.runtime.errors import MissingDependencyError, UsageError
from gclf.runtime.log import warn
from gclf.runtime.serve.access import ServeAddress, ServeToken, page_url, parse_serve_address, reachable_hosts, resolve_token
from gclf.runtime.serve.content import INSTALL_HINT, MAX_VIEWERS, STALLED_AFTER_S, STREAM_MAX_FPS, WRITE_TIMEOUT_S, ModelInfo, Snapshot, status_json

if TYPE_CHECKING:
    import numpy as np

    from gclf.runtime.classifier import Classifier
    from gclf.runtime.live.frames import FrameResult
    from gclf.runtime.live.network import StreamState
    from gclf.runtime.serve.metrics import LiveMetrics


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
        counts: Callable[[], dict[str, Any]] = dict,
        name: str | None = None,
        camera: Callable[[], StreamState] | None = None,
        metrics: LiveMetrics | None = None,
        metrics_public: bool = False,
        stalled_after_s: float = STALLED_AFTER_S,
        max_viewers: int = MAX_VIEWERS,
        max_fps: float = STREAM_MAX_FPS,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        report: Callable[[str], None] | None = None,
        **limits: Any,
    ) -> None:
        """`token`: a `ServeToken` (resolve_token), or a plain string, taken as given (not
        printed). `report`: where the server's own trouble goes (default: a line on stderr).
        `counts`: /counts's body (PeopleCounts.snapshot). `name`: the camera's name, on the
        page. `camera`: a network camera's state, so that the page says when it is down.
        `metrics`: served at /metrics (None: 404); `metrics_public`: without the token, allowed
        on a loopback address only. `stalled_after_s`: /healthz says 503 once no frame came for
        this long. `limits`: server.WebServer's max_connections, max_per_address,
        header_timeout_s, report_every_s."""
        if metrics_public and not address.loopback:
            raise UsageError(
                f"--metrics-public serves /metrics without the token, so only on this machine: serve on 127.0.0.1 "
                f"(not {address.host}), or give the scraper the token (Authorization: Bearer)"
            )
        # Asked first, so a missing extra is one sentence, not an ImportError from inside the server.
        if importlib.util.find_spec("tornado") is None:
            raise MissingDependencyError(f"--serve needs the web server extra: {INSTALL_HINT}")
        from gclf.runtime.serve.server import WebServer  # here: tornado loads only when --serve is used

        self.address = address
        self._metrics = metrics
        self._stalled_after_s = stalled_after_s
        self._last_frame_at: float | None = None  # time.monotonic() of the newest frame
        self.token = token if isinstance(token, ServeToken) else ServeToken(token, "the caller")
        self.model = model
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
            counts=counts,
            status=lambda: status_json(name, camera() if camera is not None else None),
            metrics=self.metrics_body if metrics is not None else None,
            metrics_public=metrics_public,
            healthy=self.healthy,
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

    def healthy(self) -> bool:
        """Whether frames flow: one came within the last `stalled_after_s` (/healthz)."""
        last = self._last_frame_at
        return last is not None and time.monotonic() - last <= self._stalled_after_s

    def metrics_body(self) -> bytes:
        """/metrics's body: the metrics, with what this side knows brought up to date first
        (whether frames flow, the viewers). Called on the server's thread."""
        assert self._metrics is not None
        self._metrics.camera_state(self.healthy())
        self._metrics.viewers(self.viewers)
        return self._metrics.render()

    def write(self, result: "FrameResult", annotated: "np.ndarray | None") -> bool:
        # O(1) on the loop's thread: one reference replaced (atomic in Python), and the
        # server's event loop woken only when a viewer waits for the frame.
        self._last_frame_at = time.monotonic()
        self._seq += 1
        snapshot = Snapshot(self._seq, result, annotated, result.dropped)
        self._latest = snapshot
        if annotated is not None:
            self._latest_image = snapshot
            self._next_image_at = time.monotonic() + self._image_interval
            self._server.frame_arrived()  # only pictures wake the viewers
        return True

    def close(self) -> None:
        self._server.close()


def make_web_sink(serve: str, token: str | None, token_file: Path | None, model: Path, clf: Classifier, **kwargs: Any) -> WebSink:
    """The --serve sink, bound and serving (no frame yet), for gclf-infer's options."""
    address = parse_serve_address(serve)
    info = ModelInfo(model.name, clf.metadata.variant, tuple(clf.class_names), clf.min_confidence)
    return WebSink(address, token=resolve_token(token, token_file), model=info, report=warn, **kwargs)
