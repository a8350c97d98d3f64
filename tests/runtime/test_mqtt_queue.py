"""The disk queue of events: ordered, capped (the oldest dropped and counted), kept across
restarts, one process per folder, a corrupt entry named and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gclf.runtime.errors import UsageError
from gclf.runtime.mqtt.disk_queue import DiskQueue, default_queue_folder


def _entry(n: int) -> bytes:
    return json.dumps({"n": n}).encode()


def _contents(queue: DiskQueue) -> list[int]:
    return [json.loads(queue.read(name))["n"] for name in queue.names()]


def test_entries_come_back_in_order_and_survive_a_restart(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path / "q", 10, report=lambda s: None)
    for n in range(4):
        queue.put(_entry(n))
    first = next(queue.names())
    queue.remove(first)
    assert _contents(queue) == [1, 2, 3] and queue.depth == 3
    queue.close()

    again = DiskQueue(tmp_path / "q", 10, report=lambda s: None)
    again.put(_entry(4))  # numbered after what is on disk: still last
    assert _contents(again) == [1, 2, 3, 4]
    again.close()


def test_the_cap_drops_the_oldest_and_counts_them_across_restarts(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path / "q", 3, report=lambda s: None)
    dropped = [queue.put(_entry(n)) for n in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert _contents(queue) == [2, 3, 4] and queue.dropped == 2
    assert len(list((tmp_path / "q").glob("*.json"))) == 3 + 1  # the entries and state.json
    queue.close()
    again = DiskQueue(tmp_path / "q", 3, report=lambda s: None)
    again.put(_entry(5))
    assert again.dropped == 3 and _contents(again) == [3, 4, 5]
    again.close()


def test_a_corrupt_entry_is_named_and_skipped_and_stale_temporary_files_go(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    queue = DiskQueue(folder, 10, report=lambda s: None)
    for n in range(3):
        queue.put(_entry(n))
    queue.close()
    names = sorted(p.name for p in folder.glob("0*.json"))
    (folder / names[1]).write_bytes(b'{"n": 1, trunc')
    stale = folder / f".{names[0]}.abcd1234.tmp"
    stale.write_bytes(b"half")
    reports: list[str] = []
    again = DiskQueue(folder, 10, report=reports.append)
    assert not stale.exists()
    assert [json.loads(d)["n"] for d in (again.read(n) for n in again.names()) if d is not None] == [0, 2]
    assert len(reports) == 1 and names[1] in reports[0]
    assert again.depth == 2 and not (folder / names[1]).exists()
    again.close()


def test_one_process_per_queue_folder(tmp_path: Path) -> None:
    first = DiskQueue(tmp_path / "q", 10)
    with pytest.raises(UsageError, match="in use by another gclf"):
        DiskQueue(tmp_path / "q", 10)
    first.close()
    DiskQueue(tmp_path / "q", 10).close()  # free again


def test_the_queue_lives_in_the_units_state_directory(tmp_path: Path) -> None:
    assert default_queue_folder("door", {"STATE_DIRECTORY": "/var/lib/gclf"}) == Path("/var/lib/gclf/mqtt-queue/door")
    assert default_queue_folder("door", {"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "gclf" / "mqtt-queue" / "door"
    with pytest.raises(UsageError):
        DiskQueue(tmp_path / "q", 0)
