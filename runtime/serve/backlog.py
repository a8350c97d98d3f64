"""What a viewer of /stream has not read yet, as far as TCP lets a server see it.

A viewer that stops reading must be let go within seconds, whatever its buffers hold. The
time a frame's write takes says nothing until every buffer between us and the viewer is
full: a viewer with an 8 MB receive buffer takes megabytes (ten seconds of frames) without
reading any. So each viewer's frames are followed until the viewer has read them:

- bytes still in our socket (`TIOCOUTQ`: not sent, or sent and not acknowledged), and
- bytes in the viewer's receive buffer: TCP tells a sender only the window the viewer last
  advertised (`tcpi_snd_wnd` in Linux's `TCP_INFO`, kernel 5.4 and later), which shrinks by
  what arrives unread and opens again when the program reads. The largest window seen
  minus the window now is what waits there (it undercounts while the kernel is still
  growing a new connection's window: the first megabyte or so).

`SentFrames.overdue` is then "the oldest frame not read was written more than the deadline
ago, and frames have gone on since": a window is only news when data flows (a receiver that
reads does not always say so until the next frame arrives), so a pause of the stream never
counts against a viewer. Where the kernel does not tell the window (another OS, an old
kernel), only our own socket's queue is counted, as the write deadline always did.

Standard library only; no web library.
"""

from __future__ import annotations

import collections
import socket
import struct

try:
    import fcntl
    import termios
except ImportError:  # Windows: no TIOCOUTQ
    fcntl = termios = None  # type: ignore[assignment]

# struct tcp_info (linux/tcp.h): tcpi_snd_wnd is the u32 at this offset (Linux 5.4+; shorter
# answers from older kernels do not reach it).
_TCPI_SND_WND_OFFSET = 228
_TCP_INFO_LEN = 232
# Frames written after the oldest unread one before it may count as stalled: by then the
# viewer's acknowledgements of newer data carry a window that shows whether it read it.
MIN_FRAMES_AFTER = 3


def send_queue_bytes(sock: socket.socket) -> int:
    """Bytes in our socket not yet acknowledged by the other side (0 where unknown)."""
    if fcntl is None or not hasattr(termios, "TIOCOUTQ"):
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0


def peer_window(sock: socket.socket) -> int | None:
    """The receive window the other side last advertised, in bytes; None where the kernel does not say."""
    tcp_info = getattr(socket, "TCP_INFO", None)
    if tcp_info is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, _TCP_INFO_LEN)
    except (OSError, ValueError):
        return None
    if len(info) < _TCPI_SND_WND_OFFSET + 4:
        return None
    return struct.unpack_from("I", info, _TCPI_SND_WND_OFFSET)[0]


class SentFrames:
    """The frames written to one viewer and not yet read by it (see the module's docstring).

    `wrote(n, now)` after each frame is handed to the socket; `overdue(now)` says the viewer
    stopped reading; `seconds_left(now)` bounds a write that waits for room in the socket.
    """

    def __init__(self, sock: socket.socket | None, deadline_s: float) -> None:
        self._sock = sock
        self.deadline_s = deadline_s
        self._frames: collections.deque[tuple[int, float, int]] = collections.deque()  # (end offset, written at, index)
        self._written = 0  # bytes handed to the socket so far
        self._count = 0  # frames so far
        self._max_window = 0

    def wrote(self, nbytes: int, now: float) -> None:
        self._written += nbytes
        self._count += 1
        self._frames.append((self._written, now, self._count))

    def unread_bytes(self) -> int:
        """Bytes written and not read by the viewer: our socket's queue plus what its window says it holds."""
        if self._sock is None or self._sock.fileno() < 0:
            return 0
        queued = send_queue_bytes(self._sock)
        window = peer_window(self._sock)
        if window is not None:
            self._max_window = max(self._max_window, window)
            queued += self._max_window - window
        return min(queued, self._written)

    def _oldest_unread(self) -> tuple[int, float, int] | None:
        read_up_to = self._written - self.unread_bytes()
        while self._frames and self._frames[0][0] <= read_up_to:
            self._frames.popleft()
        return self._frames[0] if self._frames else None

    def overdue(self, now: float) -> bool:
        """The oldest unread frame was written more than `deadline_s` ago and frames went on after it."""
        oldest = self._oldest_unread()
        return oldest is not None and now - oldest[1] > self.deadline_s and self._count - oldest[2] >= MIN_FRAMES_AFTER

    def seconds_left(self, now: float) -> float:
        """How long a write may wait for room: until the oldest unread frame's deadline
        (a full socket is certain news: the viewer takes nothing), at least a moment."""
        oldest = self._oldest_unread()
        start = oldest[1] if oldest is not None else now
        return max(0.05, start + self.deadline_s - now)
