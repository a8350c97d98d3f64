"""The HTTP side of `--serve`: tornado on its own asyncio event loop, in its own thread.

Why tornado: MJPEG keeps one response open per viewer for as long as they watch. A threaded
WSGI server (werkzeug, waitress, cheroot) holds a thread per open response, so a few slow or
idle viewers use up its pool or its memory; one asyncio event loop holds each viewer as a
coroutine waiting on its socket, so slow viewers cost only their buffers and never a thread.
Tornado is one package with no dependencies (Python, plus an optional C speed-up; its wheels
include aarch64 ones, so a Pi installs it without a compiler), maintained since 2009, and its HTTP/1.1 parser answers malformed requests
with 400 itself. aiohttp would do as well but brings seven more packages to a Pi.

Only this module imports tornado; gclf.runtime.serve holds everything else.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import json
import re
import socket
import threading
from datetime import timedelta
from importlib import resources
from typing import Callable

import tornado.gen
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

from gclf.runtime.errors import UsageError
from gclf.runtime.serve import ModelInfo, Snapshot, encode_jpeg, is_loopback_host, latest_json, token_matches

BOUNDARY = "gclf-frame"
PAGE = resources.files("gclf.runtime").joinpath("serve_page.html").read_text(encoding="utf-8")
# The page's one inline script is allowed by its hash: no other script can run in it.
_SCRIPT = re.search(r"<script>(.*?)</script>", PAGE, re.S)
assert _SCRIPT is not None, "serve_page.html has no inline script"
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.group(1).encode("utf-8")).digest()).decode("ascii")
PAGE_CSP = (
    f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class FrameHub:
    """The newest frame's JPEG for every viewer; lives on the server's event loop (one thread).

    A viewer asks for a frame newer than the one it last got. The first to ask for a frame
    starts its encoding in the encoding thread; the others wait for the same bytes. Encodes
    start at most `max_fps` times a second; in between, viewers get the newest JPEG made.
    """

    def __init__(self, latest_image: Callable[[], Snapshot | None], pool: concurrent.futures.Executor, max_fps: float) -> None:
        self._latest_image = latest_image
        self._pool = pool
        self._interval = 1.0 / max_fps
        self._changed = asyncio.Event()  # replaced at each change; waiters hold the old one
        self._jpeg: tuple[int, bytes] | None = None  # (snapshot seq, bytes)
        self._encoding: asyncio.Future[bytes] | None = None
        self._next_encode_at = 0.0
        self.closed = False

    def frame_arrived(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def shut(self) -> None:
        self.closed = True
        self.frame_arrived()

    async def jpeg_after(self, seq: int) -> tuple[int, bytes] | None:
        """A JPEG of a frame newer than `seq`, as (its seq, bytes); None once the server closes."""
        loop = asyncio.get_running_loop()
        while not self.closed:
            snap = self._latest_image()
            if snap is None or snap.seq <= seq:
                await self._changed.wait()
                continue
            if self._jpeg is not None and self._jpeg[0] == snap.seq:
                return self._jpeg
            if self._encoding is not None:
                await asyncio.wait({self._encoding})  # never cancels the shared encoding
                continue
            wait = self._next_encode_at - loop.time()
            if wait > 0:
                if self._jpeg is not None and self._jpeg[0] > seq:
                    return self._jpeg  # at most 1/max_fps old
                await asyncio.sleep(wait)
                continue
            self._next_encode_at = loop.time() + self._interval
            self._encoding = loop.run_in_executor(self._pool, encode_jpeg, snap.image)
            self._encoding.add_done_callback(lambda done, s=snap.seq: self._encoded(s, done))
        return None

    def _encoded(self, seq: int, done: asyncio.Future[bytes]) -> None:
        self._encoding = None
        if not done.cancelled() and done.exception() is None:
            self._jpeg = (seq, done.result())


class _Base(tornado.web.RequestHandler):
    """Every answer: GET only, the token checked first, nothing cached, no referrer sent on."""

    SUPPORTED_METHODS = ("GET",)  # anything else: 405

    def initialize(self, server: "WebServer") -> None:
        self.server = server

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")  # the token is in the page's URL
        self.set_header("X-Frame-Options", "DENY")

    def compute_etag(self) -> None:
        return None  # every answer is fresh: nothing to revalidate

    def prepare(self) -> None:
        if not self.server.allowed(self.request):
            raise tornado.web.HTTPError(403)

    def write_error(self, status_code: int, **kwargs) -> None:
        # A short plain answer, never a traceback or a frame.
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        hint = ": open the address gclf-infer printed, token included" if status_code == 403 else ""
        self.finish(f"{status_code} {self._reason}{hint}\n")

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, (tornado.web.HTTPError, tornado.iostream.StreamClosedError)):
            return  # an answer already given, or a viewer gone: not an error of the server
        super().log_exception(typ, value, tb)


class PageHandler(_Base):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", PAGE_CSP)
        self.finish(PAGE)


class LatestHandler(_Base):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(latest_json(self.server.latest(), self.server.model)))


class CountsHandler(_Base):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.server.counts()))


class StreamHandler(_Base):
    async def get(self) -> None:
        if not self.server.take_viewer():
            self.set_status(503, reason="Too Many Viewers")
            self.set_header("Retry-After", "5")
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"503 Too Many Viewers: at most {self.server.max_viewers} watch at once\n")
            return
        try:
            self.set_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            seq = 0
            while True:
                got = await self.server.hub.jpeg_after(seq)
                if got is None:
                    break
                seq, jpeg = got
                self.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode("ascii"))
                self.write(jpeg)
                self.write(b"\r\n")
                # The next frame is fetched only once this one is in the socket's buffer: a
                # slow viewer gets fewer frames, never a queue. One that takes nothing is let go.
                await tornado.gen.with_timeout(
                    timedelta(seconds=self.server.write_timeout_s), self.flush(), quiet_exceptions=(tornado.iostream.StreamClosedError,)
                )
        except (tornado.iostream.StreamClosedError, tornado.gen.TimeoutError):
            self.request.connection.close()  # gone, or stopped reading
        finally:
            self.server.release_viewer()


class NotFoundHandler(tornado.web.RequestHandler):
    """Every other path, whatever the method: 404 (no files, no listing)."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)

    def set_default_headers(self) -> None:
        self.clear_header("Server")

    def write_error(self, status_code: int, **kwargs) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")


class WebServer:
    """Binds at once (in the caller's thread, so a busy port is an error before the camera
    opens), then serves from a daemon thread with its own event loop until `close()`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: str | None,
        loopback_only: bool,
        latest: Callable[[], Snapshot | None],
        latest_image: Callable[[], Snapshot | None],
        model: ModelInfo,
        counts: Callable[[], dict] = dict,
        max_viewers: int,
        max_fps: float,
        write_timeout_s: float,
    ) -> None:
        self.token = token
        self.loopback_only = loopback_only
        self.latest = latest
        self.latest_image = latest_image
        self.model = model
        self.counts = counts
        self.max_viewers = max_viewers
        self._max_fps = max_fps
        self.write_timeout_s = write_timeout_s
        self.viewers = 0  # changed on the event loop only; read from anywhere
        try:
            self._sockets = tornado.netutil.bind_sockets(port, address=host, family=socket.AF_UNSPEC)
        except (OSError, UnicodeError) as exc:
            raise UsageError(f"--serve {host}:{port}: cannot listen there ({exc.strerror or exc})") from None
        self.port: int = self._sockets[0].getsockname()[1]
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gclf-jpeg")
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gclf-serve", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    # --- on the server's thread -----------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.hub = FrameHub(self.latest_image, self._pool, self._max_fps)
            app = tornado.web.Application(
                [
                    (r"/", PageHandler, {"server": self}),
                    (r"/latest", LatestHandler, {"server": self}),
                    (r"/counts", CountsHandler, {"server": self}),
                    (r"/stream", StreamHandler, {"server": self}),
                ],
                default_handler_class=NotFoundHandler,
                log_function=lambda handler: None,  # no access log on the user's terminal
                compress_response=False,
            )
            self._http = tornado.httpserver.HTTPServer(
                app,
                max_header_size=16 * 1024,
                max_body_size=16 * 1024,  # GET only: a body is never wanted, so never buffered large
                idle_connection_timeout=10,  # also the time allowed for a request's headers
                body_timeout=10,
            )
            self._http.add_sockets(self._sockets)
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _shutdown(self) -> None:
        self.hub.shut()  # open streams end their responses
        self._http.stop()  # no new connections
        try:
            await asyncio.wait_for(self._http.close_all_connections(), timeout=2.0)
        except asyncio.TimeoutError:
            pass

    def allowed(self, request) -> bool:
        if self.token is not None:
            given = request.query_arguments.get("token", [b""])[-1].decode("utf-8", "surrogateescape") or _bearer(request)
            return token_matches(given, self.token)
        if self.loopback_only:
            # No token on loopback: then the Host header must name this machine too, so a web
            # page elsewhere cannot point a name of its own at 127.0.0.1 (DNS rebinding).
            return is_loopback_host(request.host_name.strip("[]"))
        return False  # not reached: off loopback there is always a token

    def take_viewer(self) -> bool:
        if self.viewers >= self.max_viewers:
            return False
        self.viewers += 1
        return True

    def release_viewer(self) -> None:
        self.viewers -= 1

    # --- from the live loop's thread --------------------------------------------------------

    def frame_arrived(self) -> None:
        if self.viewers and not self.hub.closed:
            self._loop.call_soon_threadsafe(self.hub.frame_arrived)

    def close(self) -> None:
        if self._loop.is_closed() or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(timeout=5.0)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError):
            pass
        # Stopped from outside: a loop stopped from within its own task never reports the task done.
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for sock in self._sockets:
            sock.close()


def _bearer(request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
