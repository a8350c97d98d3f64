"""A real Mosquitto broker for the tests, and a real subscriber that records what arrives.

`MosquittoBroker` runs Debian's `mosquitto` (tools/test_deps.py installs it) on a free
loopback port with its own configuration and password file, no anonymous clients, and
persistence in its folder (a subscriber's session and the retained messages outlive a stop
and a start on the same port, as on a real installation). `Subscriber` is a paho client
with a persistent session, so it also receives what was published while it was away.
"""

from __future__ import annotations

import getpass
import json
import random
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from gclf_testutil import find_program

def require_mosquitto() -> tuple[str, str]:
    """(mosquitto, mosquitto_passwd); the test is skipped, with how to install them, if absent."""
    broker, passwd = find_program("mosquitto"), find_program("mosquitto_passwd")
    if broker is None or passwd is None:
        pytest.skip("Mosquitto is not installed: python tools/test_deps.py installs it (Debian: apt-get install mosquitto)")
    return broker, passwd


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the test CA's certificate (what a client trusts)
    cert: Path  # the broker's certificate, for 127.0.0.1, signed by the CA
    key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """A throw-away CA and a certificate for 127.0.0.1 signed by it, made with the openssl
    command (the test is skipped without it)."""
    openssl = find_program("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed (Debian: apt-get install openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key, cert, key, csr, ext = (folder / n for n in ("ca.pem", "ca.key", "server.pem", "server.key", "server.csr", "server.ext"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=gclf test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                   "authorityKeyIdentifier=keyid,issuer\nbasicConstraints=critical,CA:FALSE\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return TlsFiles(ca, cert, key)


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range. Not one of the ports the
    kernel hands to outgoing connections: while the broker is stopped, a client reconnecting
    to a port inside that range can be given it as its own source port and connect to itself
    (TCP's simultaneous open), and then believe it reached the broker."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default; macOS's range starts at 49152
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, max(10001, low))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


class MosquittoBroker:
    """One mosquitto process on 127.0.0.1:`port`; `stop()` and `start()` keep the port and
    the persisted state."""

    def __init__(self, folder: Path, users: dict[str, str], *, tls: TlsFiles | None = None) -> None:
        self.program, passwd = require_mosquitto()
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        password_file = folder / "passwd"
        password_file.touch(mode=0o600)
        for user, password in users.items():
            subprocess.run([passwd, "-b", str(password_file), user, password], check=True, capture_output=True, timeout=30)
        self.config = folder / "mosquitto.conf"
        self.tls = tls is not None
        self.ca = tls.ca if tls is not None else None  # what a client must trust
        listener = f"listener {self.port} {self.host}\n"
        if tls is not None:
            listener += f"cafile {tls.ca}\ncertfile {tls.cert}\nkeyfile {tls.key}\n"
        self.config.write_text(
            listener
            + "allow_anonymous false\n"
            f"password_file {password_file}\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            f"user {getpass.getuser()}\n"  # as root, stay root: the folder is ours (else it drops to user mosquitto)
        )
        self.log = folder / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def pid(self) -> int:
        """The running mosquitto's process id (a benchmark reads its CPU time)."""
        assert self._process is not None, "the broker is stopped"
        return self._process.pid

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        assert self._process is None
        offset = self.log.stat().st_size if self.log.exists() else 0  # this start's lines follow
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen([self.program, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}: {self.log.read_text()[-2000:]}")
            # Listening once it says so (a connection test could reach a stray listener).
            if b"listen socket on port" in self.log.read_bytes()[offset:]:
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its state) and wait."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.time() when it arrived

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client subscribed (QoS 1, persistent session) to `topics`, recording messages."""

    def __init__(self, broker: MosquittoBroker, user: str, password: str, topics: tuple[str, ...] = ("#",), client_id: str = "gclf-test-subscriber") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self._lock = threading.Condition()
        self._topics = topics
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self._client.username_pw_set(user, password)
        if broker.ca is not None:
            self._client.tls_set(ca_certs=str(broker.ca))
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.connect(broker.host, broker.port, keepalive=5)
        self._client.loop_start()
        assert self._subscribed.wait(10), "the test subscriber could not subscribe"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(topic, 1) for topic in self._topics])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(Message(message.topic, bytes(message.payload), bool(message.retain), time.time()))
            self._lock.notify_all()

    def on(self, topic: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, condition: Callable[[list[Message]], bool], timeout_s: float = 10.0) -> list[Message]:
        """Wait until `condition(messages)` holds; returns the messages (the assertion follows)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not condition(self.messages) and time.monotonic() < deadline:
                self._lock.wait(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
            return list(self.messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
