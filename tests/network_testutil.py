"""Real network cameras for the tests, on loopback: GStreamer's RTSP server
(tools/rtsp_server.py, run by the system's python3), a small HTTP MJPEG server, and a server
that accepts connections and then says nothing. Each can be stopped, killed, paused and
started again on the same port; every wait is bounded."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import pytest

from gclf_testutil import REPO

RTSP_SERVER = REPO / "tools" / "rtsp_server.py"
SYSTEM_PYTHON = os.environ.get("GCLF_SYSTEM_PYTHON", "/usr/bin/python3")
READY_TIMEOUT_S = 30.0  # the server's start: GStreamer loads its plugins (seconds on a busy machine)
_unavailable: list[str] = []  # the reason, once known


def rtsp_server_unavailable() -> str | None:
    """Why tools/rtsp_server.py cannot run here (None: it can); checked once per session."""
    if not _unavailable:
        if not Path(SYSTEM_PYTHON).is_file():
            _unavailable.append(f"no system python3 at {SYSTEM_PYTHON} to run tools/rtsp_server.py")
        else:
            done = subprocess.run([SYSTEM_PYTHON, str(RTSP_SERVER), "--check"], capture_output=True, text=True, timeout=60)
            _unavailable.append("" if done.returncode == 0 else (done.stderr.strip() or "tools/rtsp_server.py --check failed"))
    return _unavailable[0] or None


def require_rtsp_server() -> None:
    reason = rtsp_server_unavailable()
    if reason:
        pytest.skip(f"GStreamer's RTSP server cannot run (python tools/test_deps.py installs it): {reason}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RtspServer:
    """tools/rtsp_server.py in a child process. `start()` waits for its ready line; the port
    stays the same across `kill()`/`start()`, so a client can reconnect to it."""

    def __init__(self, *, path: str = "/cam", auth: str | None = None, auth_method: str = "basic",
                 codec: str = "h264", size: str = "320x240", fps: int = 15, frames: Path | None = None, port: int = 0) -> None:  # fmt: skip
        self.path, self.auth, self.port = path, auth, port
        self._args = ["--path", path, "--codec", codec, "--size", size, "--fps", str(fps), "--auth-method", auth_method]
        if auth:
            self._args += ["--auth", auth]
        if frames is not None:
            self._args += ["--frames", str(frames)]
        self.process: subprocess.Popen | None = None

    def url(self, credentials: str | None = None) -> str:
        """The stream's URL, with `credentials` ("user:password") or the server's own."""
        login = credentials if credentials is not None else self.auth
        return f"rtsp://{login + '@' if login else ''}127.0.0.1:{self.port}{self.path}"

    def start(self) -> "RtspServer":
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SERVER), "--port", str(self.port), *self._args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        line = _read_line(self.process, READY_TIMEOUT_S)
        if "rtsp-server: ready" not in line:
            self.kill()
            raise AssertionError(f"the RTSP server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
        return self

    def kill(self) -> None:
        """SIGKILL: the camera loses power; its connections drop without a goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the camera hangs; its connections stay open and nothing comes."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _read_line(process: subprocess.Popen, timeout_s: float) -> str:
    """The child's first stdout line, or "" after `timeout_s` (a thread reads; Popen's pipe has no timeout)."""
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return found[0].strip() if found else ""


def moving_frame(index: int, width: int = 320, height: int = 240) -> np.ndarray:
    """A BGR test picture that changes every frame: a white square moving over grey."""
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    x = (index * 7) % (width - 40)
    image[height // 2 - 20:height // 2 + 20, x:x + 40] = 255
    return image


def serve_mjpeg(port: int, *, token: str | None, fps: float, size: tuple[int, int], frames_per_connection: int | None,
                tls: tuple[str, str] | None = None) -> None:
    """An HTTP MJPEG camera (multipart/x-mixed-replace, as ESP32-CAM and older IP cameras
    send) at http://127.0.0.1:PORT/stream, until killed; prints its ready line. With `token`, a
    request without ?token=TOKEN gets 401; with `frames_per_connection`, each stream ends after
    that many frames (a camera that keeps dropping its clients); with `tls` (certificate, key
    files), HTTPS."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: the test reads the client's output
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/stream":
                self.send_error(404)
                return
            if token is not None and parse_qs(parts.query).get("token") != [token]:
                self.send_error(401)
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            index = 0
            try:
                while frames_per_connection is None or index < frames_per_connection:
                    _, jpeg = cv2.imencode(".jpg", moving_frame(index, *size))
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                    self.wfile.write(jpeg.tobytes() + b"\r\n")
                    self.wfile.flush()
                    index += 1
                    time.sleep(1.0 / fps)
            except (BrokenPipeError, ConnectionResetError):
                pass

    class Server(ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server(("127.0.0.1", port), Handler)
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls else "http"
    print(f"mjpeg-server: ready {scheme}://127.0.0.1:{server.server_address[1]}/stream", flush=True)
    server.serve_forever(poll_interval=0.05)


class MjpegServer:
    """`serve_mjpeg` in a child process (this file run as a script), so that killing it is a
    real drop and its threads and sockets are not the test's own."""

    def __init__(self, *, token: str | None = None, fps: float = 20.0, size: str = "320x240",
                 frames_per_connection: int | None = None, port: int = 0, tls: tuple[Path, Path] | None = None) -> None:  # fmt: skip
        self.token, self.port = token, port
        self.scheme = "https" if tls else "http"
        self._args = ["--fps", str(fps), "--size", size]
        if token is not None:
            self._args += ["--token", token]
        if frames_per_connection is not None:
            self._args += ["--frames-per-connection", str(frames_per_connection)]
        if tls is not None:
            self._args += ["--tls", str(tls[0]), str(tls[1])]
        self.process: subprocess.Popen | None = None

    def url(self, token: str | None = None) -> str:
        given = token if token is not None else self.token
        return f"{self.scheme}://127.0.0.1:{self.port}/stream" + (f"?token={given}" if given else "")

    def start(self) -> "MjpegServer":
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--port", str(self.port), *self._args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "tests")},
        )  # fmt: skip
        line = _read_line(self.process, READY_TIMEOUT_S)
        if "mjpeg-server: ready" not in line:
            self.kill()
            raise AssertionError(f"the MJPEG server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        self.kill()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


class SilentServer:
    """Accepts TCP connections and never says a word (a camera whose software hung)."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self._held.append(connection)
            self.accepted += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for connection in self._held:
            connection.close()
        self._listener.close()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 made by the openssl command (cameras' are self-signed too)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def thread_and_fd_counts() -> tuple[int, int]:
    """This process's native threads and open file descriptors (Linux /proc)."""
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


# --- fixtures: `from network_testutil import rtsp_server, mjpeg_server` in a test module -------


@pytest.fixture
def rtsp_server():
    """`rtsp_server(**RtspServer options)` -> a started RTSP server, stopped after the test."""
    require_rtsp_server()
    started: list[RtspServer] = []

    def start(**options) -> RtspServer:
        server = RtspServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def mjpeg_server():
    started: list[MjpegServer] = []

    def start(**options) -> MjpegServer:
        server = MjpegServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()



if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="an HTTP MJPEG camera for the tests")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    parser.add_argument("--fps", type=float, default=20.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--frames-per-connection", type=int)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    serve_mjpeg(args.port, token=args.token, fps=args.fps, size=(width, height), frames_per_connection=args.frames_per_connection,
                tls=tuple(args.tls) if args.tls else None)
