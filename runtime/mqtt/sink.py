"""`MqttSink`: the live loop's sink that hands the publisher each finished track's event and
publishes the counts, the FPS and "camera up".

Events: the sink is an event sink (gclf.runtime.live.sinks.EventSink), so the loop hands it
each track's event when the track ends, and every track still open before the sinks are
closed. Counts: with the first frame, then every `every_s` seconds of capture time (as
`--summary-every`'s lines), and once more when the loop ends, after the last events.

The sink does not close the publisher: whoever made it closes it after run_live returns
(close() then delivers what it can in a few seconds and says `offline`), and on every
path that fails before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from gclf.runtime.live.frames import FrameResult
    from gclf.runtime.mqtt.publisher import MqttPublisher
    from gclf.runtime.live.people import PeopleCounts, TrackEvent

DEFAULT_COUNTS_EVERY_S = 10.0


class MqttSink:
    needs_image = False

    def __init__(self, publisher: MqttPublisher, counts: PeopleCounts | None, every_s: float = DEFAULT_COUNTS_EVERY_S) -> None:
        self._publisher = publisher
        self._counts = counts
        self._every_s = every_s
        self._due: float | None = None  # capture time of the next publication
        self._last: FrameResult | None = None

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        self._last = result
        if self._due is None or result.timestamp >= self._due:
            self._publish(result)
            self._due = (self._due or result.timestamp) + self._every_s
            while self._due <= result.timestamp:  # after a stall: one message, not a burst
                self._due += self._every_s
        return True

    def write_event(self, event: TrackEvent) -> None:
        self._publisher.event(event)

    def close(self) -> None:
        if self._last is not None:
            self._publish(self._last)

    def _publish(self, result: FrameResult) -> None:
        # Frames flow, so the camera is up; a source that knows of an outage says so itself
        # (MqttPublisher.publish_counts(..., camera_up=False)).
        snapshot = self._counts.snapshot(result.timestamp) if self._counts is not None else {"at": round(result.timestamp, 3)}
        self._publisher.publish_counts(snapshot, fps=result.fps, camera_up=True)
