"""What gclf publishes: the JSON of track events (with a unique id) and of the counts.

An event is the line `gclf-infer --events` writes (TrackEvent.to_json) plus who sent it:

    {"event": "track", "id": "door:5f1c2a9e07b3:17", "camera": "door", "boot": "5f1c2a9e07b3",
     "seq": 17, "queued_at": 1767000000.123, "track": 4, "label": "woman", ...}

`id` is unique: the camera, a boot id drawn at random once per process, and the event's
sequence number in that process. An event is queued on disk with its id, and a restarted
gclf delivers it with that same id, so a consumer that keeps the ids it has seen drops
every duplicate (QoS 1 is at least once: a message whose acknowledgement was lost with the
connection is sent again).
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any, Mapping, Sequence

WINDOWS = ("last_minute", "last_hour", "total")  # PeopleCounts.snapshot's windows


def new_boot_id() -> str:
    """48 random bits, drawn once per process: no two runs of a camera share one."""
    return secrets.token_hex(6)


class EventIds:
    """Hands out (id, seq) for one camera in one process: thread-safe, never repeating."""

    def __init__(self, camera: str, boot: str | None = None) -> None:
        self.camera = camera
        self.boot = boot or new_boot_id()
        self._seq = 0
        self._lock = threading.Lock()

    def next(self) -> tuple[str, int]:
        with self._lock:
            self._seq += 1
            seq = self._seq
        return f"{self.camera}:{self.boot}:{seq}", seq


def event_payload(event: Mapping[str, Any], *, event_id: str, camera: str, boot: str, seq: int, queued_at: float) -> dict[str, Any]:
    """The event message: `event` (TrackEvent.to_json()) with its id and sender first."""
    head = {"event": event.get("event", "track"), "id": event_id, "camera": camera, "boot": boot, "seq": seq, "queued_at": round(queued_at, 3)}
    return {**head, **{k: v for k, v in event.items() if k not in head}}


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def counts_payload(
    snapshot: Mapping[str, Any],
    *,
    labels: Sequence[str],
    fps: float,
    camera_up: bool,
    events_dropped: int,
    events_waiting: int,
) -> dict[str, Any]:
    """The retained counts message: PeopleCounts.snapshot()'s windows with every label of the
    model present (0 when nobody was seen), so that a dashboard's template always finds its
    field, plus the loop's FPS, whether the camera delivers, and the queue's state."""
    out: dict[str, Any] = {"at": snapshot.get("at")}
    for window in WINDOWS:
        counts = {label: 0 for label in labels}
        counts.update(snapshot.get(window, {}))
        out[window] = counts
    out.update(fps=round(float(fps), 2), camera_up=bool(camera_up), events_dropped=events_dropped, events_waiting=events_waiting)
    return out


def queue_payload(*, waiting: int, dropped: int, max_entries: int) -> dict[str, Any]:
    """The retained queue message: events waiting on disk, dropped at the cap so far, the cap."""
    return {"waiting": waiting, "dropped": dropped, "max": max_entries}
