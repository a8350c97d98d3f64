"""The HTTP side of `--serve`: tornado on its own asyncio event loop, in its own thread.

Why tornado: MJPEG keeps one response open per viewer for as long as they watch. A threaded
WSGI server (werkzeug, waitress, cheroot) holds a thread per open response, so a few slow or
idle viewers use up its pool or its memory; one asyncio event loop holds each viewer as a
coroutine waiting on its socket, so slow viewers cost only their buffers and never a thread.
Tornado is one package with no dependencies (Python, plus an optional C speed-up; its wheels
include aarch64 ones, so a Pi installs it without a compiler), maintained since 2009, and its HTTP/1.1 parser answers malformed requests
with 400 itself. aiohttp would do as well but brings seven more packages to a Pi.

Only this module imports tornado; the rest of gclf.runtime.serve holds everything else.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import errno
import hashlib
import json
import re
import socket
import threading
import time
from collections import OrderedDict
from datetime import timedelta
from importlib import resources
from typing import Callable

import tornado.gen
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

try:
    import resource  # POSIX: open-file limits
except ImportError:  # Windows: no such limit to follow
    resource = None

from gclf.runtime.errors import UsageError
from gclf.runtime.serve.access import cookie_name, is_loopback_host, token_matches
from gclf.runtime.serve.content import ModelInfo, Snapshot, encode_jpeg, latest_json
from gclf.runtime.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

BOUNDARY = "gclf-frame"
# Time a connection gets to send a request's headers (from its opening, or from the end of its
# previous request): a connection that sends nothing, or a byte a second, is closed after it.
HEADER_TIMEOUT_S = 3.0
MAX_CONNECTIONS = 256  # open connections, all addresses together (also bounded by the open-file limit)
STREAM_SNDBUF = 32 * 1024  # a viewer's send buffer: small, so a stalled viewer fills it at once
ACCEPT_BATCH = 16  # connections accepted per turn of the event loop: requests on open ones go on meanwhile
# Waiting connections the kernel queues before we accept them: more than a flood from one
# address can hold open, so that another client's connection is queued, not dropped.
LISTEN_BACKLOG = 1024
SPEAK_GRACE_S = 1.0  # a connection that has sent bytes is not closed for room before this
ACCEPT_PAUSE_S = 1.0  # out of file descriptors: stop accepting this long instead of retrying at once
REPORT_EVERY_S = 60.0  # the same trouble is reported at most this often
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
PAGE = resources.files("gclf.runtime.serve").joinpath("page.html").read_text(encoding="utf-8")
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
    """Every answer: GET only, the token checked first, nothing cached, no referrer sent on.

    Data (frames, results) is refused to requests a browser marks cross-site, so a page
    elsewhere cannot embed them even where the browser would send the cookie.
    """

    SUPPORTED_METHODS = ("GET",)  # anything else: 405
    cross_site_ok = False  # the page itself may be opened from a link anywhere

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
        if not self.cross_site_ok and self.request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
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
    cross_site_ok = True

    def get(self) -> None:
        if self.get_query_argument("token", None) is not None:
            # Traded for a cookie that scripts cannot read and no other site's request carries;
            # the page then takes the token out of the address bar (history.replaceState).
            self.set_cookie(cookie_name(self.server.port), self.server.token, httponly=True, samesite="Strict", path="/")
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


class MetricsHandler(_Base):
    """/metrics in Prometheus's text format, with the token (a scraper sends it as
    `Authorization: Bearer`); with --metrics-public, on loopback only, without it."""

    def prepare(self) -> None:
        if self.server.metrics is None:
            raise tornado.web.HTTPError(404)
        if self.server.metrics_public:
            # Loopback only (WebSink refuses it elsewhere); the Host header still has to name
            # this machine, so a web page elsewhere cannot read it through DNS rebinding.
            if not is_loopback_host(self.request.host_name.strip("[]")):
                raise tornado.web.HTTPError(403)
            if self.request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
                raise tornado.web.HTTPError(403)
            return
        super().prepare()

    def get(self) -> None:
        assert self.server.metrics is not None
        self.set_header("Content-Type", METRICS_CONTENT_TYPE)
        self.finish(self.server.metrics())


class HealthHandler(_Base):
    """/healthz, without the token (for a load balancer, a container runtime, a monitor):
    200 while frames flow, 503 when the camera is down or stalled, and nothing else."""

    cross_site_ok = True

    def prepare(self) -> None:
        pass  # no token: the answer says nothing but up or down

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if self.server.healthy():
            self.finish("ok\n")
        else:
            self.set_status(503)
            self.finish("unavailable\n")


class StreamHandler(_Base):
    async def get(self) -> None:
        if not self.server.take_viewer():
            self.set_status(503, reason="Too Many Viewers")
            self.set_header("Retry-After", "5")
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"503 Too Many Viewers: at most {self.server.max_viewers} watch at once\n")
            return
        try:
            sock = self.request.connection.stream.socket
            if sock is not None:
                # Small, so that a viewer who stops reading fills it (and the write deadline
                # below starts counting) within a frame or two, not after megabytes.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
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
                # slow viewer gets fewer frames, never a queue. One that takes nothing is let
                # go: the deadline counts from this frame's write, whatever the buffers hold.
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


class _Conn:
    """One open connection: whose, since when, and whether a request on it carried the token."""

    __slots__ = ("host", "opened", "authenticated")

    def __init__(self, host: str, opened: float) -> None:
        self.host = host
        self.opened = opened
        self.authenticated = False


class _Stream(tornado.iostream.IOStream):
    """An IOStream that remembers whether its peer ever sent a byte."""

    spoke = False

    def read_from_fd(self, buf) -> int | None:
        n = super().read_from_fd(buf)
        if n:
            self.spoke = True
        return n

    def silent(self) -> bool:
        """Nothing received, nor waiting in the socket to be read."""
        if self.spoke or self.socket is None:
            return False
        try:
            return not self.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False  # reset: closed soon anyway


def connection_limits(max_connections: int | None = None, max_per_address: int | None = None) -> tuple[int, int]:
    """(total, per address) caps on open connections, below the open-file limit.

    The soft open-file limit is first raised to the hard one (it only bounds this process).
    Half of it is left to the rest of the process (model, camera, threads, JPEG encoder);
    one address may hold a quarter of the total, so a flood from one machine leaves room for
    the others. Given values are used as they are (tests)."""
    limit = 2 * MAX_CONNECTIONS  # no open-file limit to follow (Windows)
    if resource is not None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                soft = hard
            except (ValueError, OSError):
                pass  # some systems cap the soft limit below an infinite hard one; keep the soft one
        limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
    total = max_connections if max_connections is not None else max(8, min(MAX_CONNECTIONS, limit // 2))
    per_address = max_per_address if max_per_address is not None else max(4, total // 4)
    return total, per_address


class WebServer:
    """Binds at once (in the caller's thread, so a busy port is an error before the camera
    opens), then serves from a daemon thread with its own event loop until `close()`.

    Connections are accepted here, not by tornado, so that they can be counted: at most
    `max_connections` in all and `max_per_address` from one address. When either is
    reached, the oldest connection that has not shown the token is closed to make room
    (one that has keeps its place, and a new one is refused instead). Running out of file
    descriptors pauses accepting for a second, reported at most once a minute."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: str,
        loopback_only: bool,
        latest: Callable[[], Snapshot | None],
        latest_image: Callable[[], Snapshot | None],
        model: ModelInfo,
        counts: Callable[[], dict] = dict,
        metrics: Callable[[], bytes] | None = None,
        metrics_public: bool = False,
        healthy: Callable[[], bool] = lambda: False,
        max_viewers: int,
        max_fps: float,
        write_timeout_s: float,
        report: Callable[[str], None],
        max_connections: int | None = None,
        max_per_address: int | None = None,
        header_timeout_s: float = HEADER_TIMEOUT_S,
    ) -> None:
        self.token = token
        self.loopback_only = loopback_only
        self.latest = latest
        self.latest_image = latest_image
        self.model = model
        self.counts = counts
        self.metrics = metrics  # /metrics's body; None: 404
        self.metrics_public = metrics_public
        self.healthy = healthy  # /healthz: whether frames flow
        self.max_viewers = max_viewers
        self._max_fps = max_fps
        self.write_timeout_s = write_timeout_s
        self._report = report
        self.max_connections, self.max_per_address = connection_limits(max_connections, max_per_address)
        self._header_timeout_s = header_timeout_s
        self._conns: OrderedDict[tornado.iostream.IOStream, _Conn] = OrderedDict()  # oldest first; on the event loop only
        self._paused = False
        self._reported_at: dict[str, float] = {}
        self.viewers = 0  # changed on the event loop only; read from anywhere
        try:
            self._sockets = tornado.netutil.bind_sockets(port, address=host, family=socket.AF_UNSPEC, backlog=LISTEN_BACKLOG)
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
                    (r"/metrics", MetricsHandler, {"server": self}),
                    (r"/healthz", HealthHandler, {"server": self}),
                ],
                default_handler_class=NotFoundHandler,
                log_function=lambda handler: None,  # no access log on the user's terminal
                compress_response=False,
            )
            self._http = tornado.httpserver.HTTPServer(
                app,
                max_header_size=16 * 1024,
                max_body_size=16 * 1024,  # GET only: a body is never wanted, so never buffered large
                idle_connection_timeout=self._header_timeout_s,  # also the time allowed for a request's headers
                body_timeout=self._header_timeout_s,
            )
            self._listen()
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _listen(self) -> None:
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    self._pause_accepting(exc)
                    return
                self._report_once("accept", f"--serve: cannot accept a connection ({exc.strerror or exc})")
                return
            self._admit(conn, address)

    def _admit(self, conn: socket.socket, address) -> None:
        for stream in [s for s in self._conns if s.closed()]:
            del self._conns[stream]
        host = address[0] if isinstance(address, tuple) else str(address)
        if len(self._conns) >= self.max_connections:
            room = self._make_room(None)
        elif sum(c.host == host for c in self._conns.values()) >= self.max_per_address:
            room = self._make_room(host)
        else:
            room = True
        if not room:
            conn.close()  # every connection here has shown the token: the newcomer waits
            return
        conn.setblocking(False)
        stream = _Stream(conn, max_buffer_size=64 * 1024)
        self._conns[stream] = _Conn(host, time.monotonic())
        self._http.handle_stream(stream, address)

    def _make_room(self, host: str | None) -> bool:
        """Close the oldest connection (from `host`, if given) that has not shown the token and
        has either sent nothing or had `SPEAK_GRACE_S` to show it. A client that sent its
        request at once keeps its place while the request is read, however fast others come."""
        now = time.monotonic()
        for stream, conn in self._conns.items():
            if conn.authenticated or (host is not None and conn.host != host):
                continue
            if now - conn.opened >= SPEAK_GRACE_S or stream.silent():
                del self._conns[stream]
                stream.close()
                return True
        return False

    def _pause_accepting(self, exc: OSError) -> None:
        # The listening socket stays readable while a connection waits: retrying at once would
        # spin (and log) as fast as the loop turns. Wait for descriptors to come back instead.
        if self._paused:
            return
        self._paused = True
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())
        self._report_once(
            "fds",
            f"--serve: out of file descriptors ({exc.strerror}); not accepting connections for a while "
            f"({len(self._conns)} open; raise LimitNOFILE, or fewer clients)",
        )
        self._loop.call_later(ACCEPT_PAUSE_S, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self._paused and not self.hub.closed:
            self._paused = False
            self._listen()

    def _report_once(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._reported_at.get(kind, -REPORT_EVERY_S) >= REPORT_EVERY_S:
            self._reported_at[kind] = now
            self._report(message)

    @property
    def open_connections(self) -> int:
        """Connections counted against the caps (closed ones leave the count at the next accept)."""
        return len(self._conns)

    async def _shutdown(self) -> None:
        self.hub.shut()  # open streams end their responses
        if not self._paused:
            for sock in self._sockets:
                self._loop.remove_reader(sock.fileno())  # no new connections
        self._paused = True
        try:
            await asyncio.wait_for(self._http.close_all_connections(), timeout=2.0)
        except asyncio.TimeoutError:
            pass
        for stream in list(self._conns):
            stream.close()

    def allowed(self, request) -> bool:
        """Whether `request` carries the token (query, Authorization: Bearer, or the page's
        cookie), and on loopback names this machine in its Host header. Every handler's one
        check; a connection that passed it is no longer the first to be closed for room."""
        given = _given_token(request, cookie_name(self.port))
        ok = given is not None and token_matches(given, self.token)
        if ok and self.loopback_only:
            # Loopback: the Host header must name this machine too, so a web page elsewhere
            # cannot point a name of its own at 127.0.0.1 (DNS rebinding).
            ok = is_loopback_host(request.host_name.strip("[]"))
        if ok:
            conn = self._conns.get(getattr(request.connection, "stream", None))
            if conn is not None:
                conn.authenticated = True
        return ok

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


def _given_token(request, cookie: str) -> str | None:
    """The token a request carries: one ?token= (two or more are refused: which would count?),
    else an Authorization: Bearer header, else the page's cookie; None when none."""
    values = request.query_arguments.get("token", [])
    if len(values) > 1:
        return None
    if values:
        return values[0].decode("utf-8", "surrogateescape")
    bearer = _bearer(request)
    if bearer is not None:
        return bearer
    morsel = request.cookies.get(cookie) if "Cookie" in request.headers else None
    return morsel.value if morsel is not None else None


def _bearer(request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
