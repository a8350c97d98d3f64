"""The live loop: frames from a camera or a video, faces found and followed, answers to sinks.

- `sources`: cameras and video files as frame feeds (newest frame wins, or every frame).
- `picamera`: the Raspberry Pi camera through picamera2 (the only module importing it).
- `carry`: `BoxCarrier`, the face detector every N-th frame and boxes carried between.
- `people`: `PersonTracker`, one identity and one answer per person; events and counts.
- `frames`: `FrameResult` and `LiveSummary`, the plain data handed to sinks.
- `loop`: `run_live`, and `track_events` for the Python API.
- `annotate`, `sinks`, `sd_notify`: drawing, the outputs (JSON lines, window, video file,
  summaries), and systemd's readiness and watchdog.

May import the flat core and gclf.runtime.faces, never the browser view or the command line
(those sit above it and hand it their sinks). Importing this package loads nothing heavy:
the names below come from their modules on first use, so `--help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_API = {
    "run_live": "gclf.runtime.live.loop",
    "track_events": "gclf.runtime.live.loop",
    "stop_on_signals": "gclf.runtime.live.loop",
    "FrameResult": "gclf.runtime.live.frames",
    "LiveSummary": "gclf.runtime.live.frames",
    "PersonTracker": "gclf.runtime.live.people",
    "PeopleCounts": "gclf.runtime.live.people",
    "TrackEvent": "gclf.runtime.live.people",
    "BoxCarrier": "gclf.runtime.live.carry",
}

__all__ = list(_API)

if TYPE_CHECKING:
    from gclf.runtime.live.carry import BoxCarrier
    from gclf.runtime.live.frames import FrameResult, LiveSummary
    from gclf.runtime.live.loop import run_live, stop_on_signals, track_events
    from gclf.runtime.live.people import PeopleCounts, PersonTracker, TrackEvent


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value
