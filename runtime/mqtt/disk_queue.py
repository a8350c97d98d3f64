"""The events not yet acknowledged by the broker, on disk: ordered, bounded, crash-safe.

One file per event, `000000000001.json`, `000000000002.json`, ... in a folder of its own
(under the unit's StateDirectory): written atomically (gclf.runtime.atomic: a temporary file,
fsync, one rename), so a power cut leaves each event whole or absent, never half. Files are
delivered in name order and removed only once the broker acknowledged them; a restarted
gclf finds them and delivers them first. A file per event costs a file-system block each
(4 KB), which is why the queue is capped by a count: at the cap the oldest event is dropped
to make room, and the count of events dropped so far is kept in `state.json` beside them
(it outlives restarts, as the events do).

One process per folder: a lock on `.lock` refuses a second gclf with the same camera name.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Mapping

from gclf.runtime.atomic import remove_stale_temp_files, write_bytes_atomic, write_json_atomic
from gclf.runtime.errors import OutputWriteError, UsageError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per camera is then the user's care
    fcntl = None  # type: ignore[assignment]

DEFAULT_QUEUE_MAX = 2000  # events (about 8 MB of 4 KB blocks): a day's outage at a busy door
ENTRY = re.compile(r"^(\d{12})\.json$")
STATE_FILE = "state.json"
LOCK_FILE = ".lock"


def default_queue_folder(camera: str, environ: Mapping[str, str] | None = None) -> Path:
    """`$STATE_DIRECTORY/mqtt-queue/CAMERA` under systemd (StateDirectory=), else
    `$XDG_STATE_HOME/gclf/mqtt-queue/CAMERA` (~/.local/state/gclf/...)."""
    env = os.environ if environ is None else environ
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "mqtt-queue" / camera
    xdg = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(xdg) / "gclf" / "mqtt-queue" / camera


class DiskQueue:
    """A first-in first-out queue of byte strings (JSON), one file each, at most `max_entries`.

    Not thread-safe: one thread (the publisher's) puts, reads and removes; other threads may
    read `depth` and `dropped`. `report` gets one sentence per problem (a corrupt entry).
    """

    def __init__(self, folder: Path, max_entries: int = DEFAULT_QUEUE_MAX, *, report: Callable[[str], None] = print) -> None:
        if max_entries < 1:
            raise UsageError(f"the MQTT queue must hold at least 1 event, not {max_entries}")
        self.folder = Path(folder)
        self.max_entries = max_entries
        self._report = report
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputWriteError(f"cannot make the MQTT queue folder {self.folder} ({exc.strerror or exc})") from None
        self._lock_fd = self._lock()
        remove_stale_temp_files(self.folder)  # from a process killed mid-write
        names = sorted(p.name for p in self.folder.iterdir() if ENTRY.match(p.name))
        self._names: collections.deque[str] = collections.deque(names)
        self._next = int(ENTRY.match(names[-1]).group(1)) + 1 if names else 1  # type: ignore[union-attr]
        self._dropped = self._read_dropped()

    def _lock(self) -> int | None:
        if fcntl is None:
            return None
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UsageError(
                f"the MQTT queue {self.folder} is in use by another gclf: give each camera its own name"
            ) from None
        return fd

    def _read_dropped(self) -> int:
        path = self.folder / STATE_FILE
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("dropped", 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, AttributeError):
            self._report(f"{path} is not a queue state file: its count of dropped events starts again at 0")
            return 0
        return value if isinstance(value, int) and value >= 0 else 0

    @property
    def depth(self) -> int:
        return len(self._names)

    @property
    def dropped(self) -> int:
        """Events dropped at the cap since this folder was made (restarts included)."""
        return self._dropped

    def put(self, payload: bytes) -> int:
        """Append one entry (on disk before this returns); at the cap, drop the oldest first.
        Returns how many were dropped. OutputWriteError if it cannot be written (nothing changed)."""
        dropped = 0
        while len(self._names) >= self.max_entries:
            self._unlink(self._names.popleft())
            dropped += 1
        name = f"{self._next:012d}.json"
        write_bytes_atomic(self.folder / name, payload)
        self._next += 1
        self._names.append(name)
        if dropped:
            self._dropped += dropped
            with contextlib.suppress(OutputWriteError):  # the count is a report; the events matter more
                write_json_atomic(self.folder / STATE_FILE, {"dropped": self._dropped})
        return dropped

    def names(self) -> Iterator[str]:
        """The entries, oldest first (a snapshot: safe to remove while iterating)."""
        return iter(list(self._names))

    def read(self, name: str) -> bytes | None:
        """The entry's bytes; None if it is gone, or is not JSON (then reported and removed)."""
        path = self.folder / name
        try:
            data = path.read_bytes()
            json.loads(data)
            return data
        except FileNotFoundError:
            self._forget(name)
            return None
        except (OSError, ValueError) as exc:
            self._report(f"{path} is not a queued event ({type(exc).__name__}): skipped and removed")
            self.remove(name)
            return None

    def remove(self, name: str) -> None:
        """Forget an entry (the broker acknowledged it); an entry already gone is fine."""
        self._forget(name)
        self._unlink(name)

    def _forget(self, name: str) -> None:
        with contextlib.suppress(ValueError):
            self._names.remove(name)  # nearly always the first: O(1) in practice

    def _unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / name).unlink()

    def close(self) -> None:
        """Release the folder's lock (the entries stay for the next run)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
