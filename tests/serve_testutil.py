"""Helpers for the --serve tests: a stand-in live loop, plain HTTP and MJPEG reading, and
gclf-infer run with --serve in a child process. Loopback only, every wait bounded."""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

import numpy as np

from gclf.runtime.live.annotate import annotate
from gclf.runtime.classifier import FaceResult
from gclf.runtime.live.frames import FrameResult

TIMEOUT_S = 10.0  # any one network wait in these tests
W, H = 160, 120
COLOURS = {"red": (20, 20, 230), "blue": (230, 20, 20)}  # BGR; the label names the colour


def frame_colour(index: int) -> str:
    return "red" if (index // 5) % 2 == 0 else "blue"  # changes every 5 frames


class FakeLoop(threading.Thread):
    """Does to a sink what run_live does, at about `fps`: a solid frame whose colour is its
    label, annotated only when a sink asks for pictures, then write()."""

    def __init__(self, sink, fps: float = 50.0, *, noise: bool = False) -> None:
        super().__init__(daemon=True)
        self.sink = sink
        # Noise instead of a solid colour: 640x480 frames whose JPEGs are large (fills sockets fast).
        self.noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8) if noise else None
        self.period = 1.0 / fps
        self.written = 0
        self.with_image = 0  # frames handed over with a picture
        self.stop_event = threading.Event()
        self.paused = threading.Event()  # set: no frames (a camera that stalls), until cleared

    def run(self) -> None:
        index = 0
        while not self.stop_event.is_set():
            if self.paused.is_set():
                time.sleep(self.period)
                continue
            label = frame_colour(index)
            if self.noise is not None:
                bgr = self.noise.copy()  # a new array each frame, as a source gives
            else:
                bgr = np.empty((H, W, 3), dtype=np.uint8)
                bgr[:] = COLOURS[label]
            result = FrameResult(index, time.time(), (FaceResult((0, 0, W, H), label, 0.9),), 1 / self.period)
            image = annotate(bgr, result) if self.sink.needs_image else None
            self.sink.write(result, image)
            self.written += 1
            self.with_image += image is not None
            index += 1
            time.sleep(self.period)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(TIMEOUT_S)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _with_token(headers: dict[str, str] | None, token: str | None) -> dict[str, str]:
    return {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}


def get(
    port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None, token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request; `token` goes in an Authorization: Bearer header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request(method, path, headers=_with_token(headers, token))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw_request(port: int, data: bytes) -> bytes:
    """Send bytes as they are (no HTTP client in the way) and read the answer until closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@dataclass
class Part:
    headers: dict[str, str]
    body: bytes


@dataclass
class MjpegReader:
    """One open /stream response, read part by part as RFC 2046 multipart framing says."""

    conn: http.client.HTTPConnection
    resp: http.client.HTTPResponse
    boundary: str
    parts: list[Part] = field(default_factory=list)

    @classmethod
    def open(cls, port: int, path: str = "/stream", *, token: str | None = None, headers: dict[str, str] | None = None) -> "MjpegReader":
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        conn.request("GET", path, headers=_with_token(headers, token))
        resp = conn.getresponse()
        assert resp.status == 200, (resp.status, resp.read())
        ctype = resp.getheader("Content-Type", "")
        m = re.fullmatch(r"multipart/x-mixed-replace;\s*boundary=(\S+)", ctype)
        assert m, f"not an MJPEG stream: Content-Type {ctype!r}"
        return cls(conn, resp, m.group(1))

    def next_part(self) -> Part:
        line = self.resp.readline()
        assert line == f"--{self.boundary}\r\n".encode(), f"expected the boundary line, got {line[:80]!r}"
        headers = {}
        while (line := self.resp.readline()) != b"\r\n":
            assert line.endswith(b"\r\n") and b":" in line, f"bad part header {line[:80]!r}"
            name, _, value = line.decode("ascii").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.resp.read(int(headers["content-length"]))
        assert self.resp.read(2) == b"\r\n", "part body not followed by CRLF"
        part = Part(headers, body)
        self.parts.append(part)
        return part

    def close(self) -> None:
        self.conn.close()

    def abort(self) -> None:
        """Vanish mid-stream: a reset, not a polite close."""
        sock = self.conn.sock
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.conn.close()


def mean_bgr(jpeg: bytes) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable JPEG"
    return image[image.shape[0] // 2 :, :].reshape(-1, 3).mean(axis=0)  # the lower half: below the drawn text


def colour_of(jpeg: bytes) -> str:
    b, _, r = mean_bgr(jpeg)
    return "red" if r > b else "blue"


# --- gclf-infer --serve in a child process ------------------------------------------------------


@dataclass
class ServedRun:
    proc: subprocess.Popen
    url: str
    stderr_lines: list[str]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: the run's own Ctrl-C path
            try:
                self.proc.wait(TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT_S)
        return self.proc.returncode


def start_served_run(
    args: list[str],
    stdout: IO[bytes] | int = subprocess.DEVNULL,
    timeout: float = 60.0,
    *,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> ServedRun:
    """`gclf-infer ARGS` (which must include --serve); returns once it prints its URL.
    `env`: added to this process's environment; `preexec_fn`: run in the child (rlimits)."""
    import os

    cmd = [sys.executable, "-m", "gclf.runtime.cli", *args]
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, preexec_fn=preexec_fn)
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:  # keeps reading, so the child never blocks on a full pipe
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            m = re.search(r"watch at (http://\S+)", line)
            if m and not found:
                found.append(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(timeout) or not found:
        proc.kill()
        proc.wait(TIMEOUT_S)
        raise AssertionError("gclf-infer --serve printed no URL:\n" + "".join(lines))
    return ServedRun(proc, found[0], lines)


def port_of(url: str) -> int:
    m = re.match(r"http://[^/]+:(\d+)/", url)
    assert m, url
    return int(m.group(1))


def write_colour_video(path: Path, n_frames: int, *, fps: float, size: tuple[int, int] = (320, 240), every: int = 10) -> Path:
    """Solid red and blue frames (BGR), the colour changing every `every` frames (MJPG .avi)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(n_frames):
        frame = np.empty((size[1], size[0], 3), dtype=np.uint8)
        frame[:] = COLOURS["red" if (i // every) % 2 == 0 else "blue"]
        writer.write(frame)
    writer.release()
    return path


# --- attacks -------------------------------------------------------------------------------------


class _Flood(threading.Thread):
    """What the floods share: non-blocking connects to 127.0.0.1:`port`, watched by one selector
    in one thread (`_flood`, each flood's own loop), all closed when it stops.

    `held`: open now as this side sees them (the kernel completes connects the server has not
    accepted yet); `failed`: connects refused or failing at once."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.held = 0
        self.failed = 0
        self.stop_event = threading.Event()

    def _connect(self, source: str | None = None) -> socket.socket | None:
        """A socket connecting (from loopback address `source`, if given), or None if it failed."""
        sock = socket.socket()
        sock.setblocking(False)
        try:
            if source is not None:
                sock.bind((source, 0))
            sock.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except OSError:
            self.failed += 1
            sock.close()
            return None
        return sock

    def run(self) -> None:
        import selectors

        sel = selectors.DefaultSelector()
        try:
            self._flood(sel)
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()
            sel.close()

    def _flood(self, sel) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stop_event.set()
        self.join(TIMEOUT_S)


class IdleFlood(_Flood):
    """`n` connections to 127.0.0.1:`port` that send nothing, each opened again as soon as the
    server closes it (an attacker holding as many as it can).

    `reopened`: connections the server closed and we reopened; `held` and `failed`: `_Flood`'s."""

    def __init__(self, port: int, n: int) -> None:
        super().__init__(port)
        self.n = n
        self.reopened = 0

    def _open(self, sel) -> None:
        import selectors

        sock = self._connect()
        if sock is not None:
            sel.register(sock, selectors.EVENT_READ)

    def _flood(self, sel) -> None:
        for _ in range(self.n):
            self._open(sel)
        while not self.stop_event.is_set():
            for key, _ in sel.select(timeout=0.05):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # closed by the server (or refused): open another
                    sel.unregister(sock)
                    sock.close()
                    self.reopened += 1
                    self._open(sel)
            self.held = len(sel.get_map())


FLOOD_SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 8))  # six loopback addresses; Linux routes all of 127/8 to lo


class SpeakingFlood(_Flood):
    """Connections to 127.0.0.1:`port` opened at about `rate` a second, round robin from
    `sources` (each a loopback address of its own), each sending one byte and then nothing,
    held until the server closes them: a flood that per-address caps alone cannot stop and
    whose connections are never silent.

    `opened`: connections started; `closed_by_server`: those the server closed (or reset);
    `held` and `failed`: `_Flood`'s."""

    def __init__(self, port: int, rate: float, sources: tuple[str, ...] = FLOOD_SOURCES, *, max_held: int = 4000) -> None:
        super().__init__(port)
        self.rate, self.sources, self.max_held = rate, sources, max_held
        self.opened = 0
        self.closed_by_server = 0

    def _open(self, sel, source: str) -> None:
        import selectors

        sock = self._connect(source)
        if sock is not None:
            self.opened += 1
            sel.register(sock, selectors.EVENT_WRITE, data="connecting")

    def _flood(self, sel) -> None:
        import selectors

        start = time.monotonic()
        while not self.stop_event.is_set():
            due = int((time.monotonic() - start) * self.rate) - self.opened - self.failed
            for i in range(max(0, min(due, 50))):
                if len(sel.get_map()) < self.max_held:  # this side's own descriptors are finite too
                    self._open(sel, self.sources[(self.opened + self.failed) % len(self.sources)])
            for key, _ in sel.select(timeout=0.005):
                sock = key.fileobj
                if key.data == "connecting":
                    try:
                        sock.send(b"G")  # one byte: the connection has spoken, and says no more
                        sel.modify(sock, selectors.EVENT_READ, data="holding")
                        continue
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                else:
                    try:
                        if sock.recv(4096):
                            continue
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                sel.unregister(sock)  # closed by the server, or never connected
                sock.close()
                self.closed_by_server += 1
            self.held = len(sel.get_map())


def timed_get(port: int, path: str, *, token: str | None = None) -> tuple[int, float]:
    """(status, seconds to the answer) of one request; status 0 when none came in TIMEOUT_S."""
    start = time.monotonic()
    try:
        status = get(port, path, token=token)[0]
    except (OSError, http.client.HTTPException):
        status = 0
    return status, time.monotonic() - start


def limit_open_files(n: int) -> Callable[[], None]:
    """A preexec_fn that sets the child's open-file limit (soft and hard) to `n`."""

    def set_limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return set_limit
