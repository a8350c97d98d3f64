"""systemd's service notifications (sd_notify), by hand: a few lines, no dependency.

With `Type=notify` in a unit, systemd counts the service as started when it sends READY=1;
with `WatchdogSec=`, it kills and restarts the service when WATCHDOG=1 stops coming, which
catches what no timeout inside the process can: a loop stuck anywhere at all. The protocol
(sd_notify(3)): one datagram of newline-separated KEY=VALUE lines to the unix socket named
in $NOTIFY_SOCKET; a leading "@" names a socket in Linux's abstract namespace. Without
$NOTIFY_SOCKET (not run by systemd, or by a unit without Type=notify) nothing is sent.
"""

from __future__ import annotations

import math
import os
import socket
import time
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    import numpy as np

    from gclf.runtime.live.frames import FrameResult
    from gclf.runtime.live.network import StreamState

WATCHDOG_MAX_INTERVAL_S = 1.0  # ping at least this often, whatever WatchdogSec is


def notify(state: str, *, environ: Mapping[str, str] = os.environ) -> bool:
    """Send `state` ("READY=1", "WATCHDOG=1\\nSTATUS=...") to systemd; False if there is no
    socket to send to or the send failed (a notification is never worth failing the run)."""
    address = environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # unset, or a kind of address this does not speak (vsock:...)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def watchdog_interval_s(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of the unit's WatchdogSec (systemd passes it as
    $WATCHDOG_USEC), at most WATCHDOG_MAX_INTERVAL_S; None where no watchdog is asked for
    this process ($WATCHDOG_PID names another one)."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    usec = environ.get("WATCHDOG_USEC", "")
    half = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else math.inf
    return min(half, WATCHDOG_MAX_INTERVAL_S)


class SystemdNotifySink:
    """A live-loop sink that tells systemd how the run goes: READY=1 with the first processed
    frame (the camera delivers, the model runs), WATCHDOG=1 with a STATUS line at most every
    `watchdog_interval_s`, STOPPING=1 when the loop ends.

    With `camera` (a network camera's state) the status also says whether it is up and its
    outages, and while the loop waits for frames (`write_waiting`: the camera is down, for as
    long as it takes) the process is still doing its job: READY=1 if not yet sent (a camera
    that cannot be reached at start must not fail the unit's start), then WATCHDOG=1 with
    "camera down since ...", as long as `responsive()` says the reading thread is not stuck.
    `name`: the camera's name, first in every status line."""

    needs_image = False

    def __init__(
        self, *, environ: Mapping[str, str] = os.environ, clock: Callable[[], float] = time.monotonic, name: str | None = None,
        camera: Callable[[], StreamState] | None = None, responsive: Callable[[], bool] | None = None,
    ) -> None:  # fmt: skip
        self._environ = environ
        self._clock = clock
        self._interval = watchdog_interval_s(environ)
        self._last: float | None = None  # when READY or the last WATCHDOG was sent
        self._frames = 0
        self._name = name
        self._camera = camera
        self._responsive = responsive

    @classmethod
    def from_environment(cls, **options) -> "SystemdNotifySink | None":
        """A sink when systemd listens ($NOTIFY_SOCKET set), else None; `options` as the constructor's."""
        return cls(**options) if os.environ.get("NOTIFY_SOCKET") else None

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        self._frames += 1
        self._tell(f"{self._frames} frame{'' if self._frames == 1 else 's'} processed")
        return True

    def write_waiting(self) -> None:
        """No frame for a while: for a network camera, the watchdog is fed while its reading
        thread makes progress (reconnecting is progress); a stuck one starves it, and systemd
        restarts the process."""
        if self._camera is None or (self._responsive is not None and not self._responsive()):
            return
        self._tell(f"{self._frames} frame{'' if self._frames == 1 else 's'} processed")

    def _tell(self, status: str) -> None:
        """READY=1 the first time, then WATCHDOG=1 at most every interval, each with a STATUS line."""
        now = self._clock()
        if self._camera is not None:
            status = f"{self._camera().line()}; {status}"
        if self._name is not None:
            status = f"{self._name}: {status}"
        status = "STATUS=" + status.replace("\n", " ")
        if self._last is None:
            self._send(f"READY=1\n{status}" + ("\nWATCHDOG=1" if self._interval is not None else ""))
            self._last = now
        elif now - self._last >= (self._interval if self._interval is not None else WATCHDOG_MAX_INTERVAL_S):
            # Without a watchdog, the status alone, as often (systemctl status shows it).
            self._send(("WATCHDOG=1\n" if self._interval is not None else "") + status)
            self._last = now

    def close(self) -> None:
        self._send(f"STOPPING=1\nSTATUS=stopped after {self._frames} frames")

    def _send(self, state: str) -> None:
        notify(state, environ=self._environ)
