"""gclf's live metrics for Prometheus: `LiveMetrics` holds them, the loop updates them, and
`render()` gives the `/metrics` body in Prometheus's text format.

prometheus_client's registry and text format, never its own HTTP server (unauthenticated, on
every address): gclf's web server serves `render()` with its token, its connection caps and
its quiet logging. Each `LiveMetrics` has a registry of its own, so that two in one process
(tests, a bench) never collide.

    gclf_info{camera, model, version}            1
    gclf_frames_processed_total                  frames the loop classified
    gclf_frames_dropped_total                    frames the camera delivered while the loop was busy
    gclf_loop_fps                                frames processed per second, over the last few
    gclf_inference_duration_seconds              the classifier's time per frame (histogram)
    gclf_detection_duration_seconds              the face detector's time, on frames it ran on (histogram)
    gclf_tracks_total{label}                     people seen: tracks ended, by label (every class from 0)
    gclf_camera_up                               1 while the camera delivers, 0 while it is down
    gclf_camera_outages_total                    times it went down
    gclf_mqtt_connected / _queue_depth / _events_dropped_total   the MQTT publisher's state
    gclf_viewers                                 browsers watching the stream
    process_*                                    CPU seconds, resident memory, open files (Linux)

`MetricsSink` is the live loop's sink that feeds them: each frame's timings, the dropped
frames, camera up, and each finished track (it takes events). The MQTT publisher's state
is read when the metrics are rendered (`mqtt_stats`), and so are the viewers and whether
frames still flow (the web server knows those: WebSink.metrics_body).

prometheus_client is imported when a `LiveMetrics` is made: without it (the `serve` extra),
that is a MissingDependencyError naming the extra.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from gclf.runtime.errors import MissingDependencyError, install_hint

if TYPE_CHECKING:
    import numpy as np

    from gclf.runtime.live.frames import FrameResult
    from gclf.runtime.live.people import TrackEvent


class MqttState(Protocol):
    """What the metrics read of the MQTT publisher's stats (MqttPublisher.stats()); named here
    so that the browser view never imports the MQTT package."""

    connected: bool
    waiting: int
    dropped: int

INSTALL_HINT = install_hint("serve")
# The text format every Prometheus reads (2.x and 3.x); what render() writes for gclf's names.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: a laptop classifies a face in a few ms, a Pi 4 runs YuNet and the int8 model in tens
# of ms, a Pi Zero-class board in hundreds.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _prometheus_client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MissingDependencyError(f"the Prometheus metrics need the web server extra: {INSTALL_HINT}") from None
    return prometheus_client


class LiveMetrics:
    """The live loop's metrics (module docstring). Every update is thread-safe and takes
    microseconds: the loop, the web server and the MQTT publisher update it from their threads."""

    def __init__(
        self,
        *,
        labels: Sequence[str] = (),
        camera: str | None = None,
        model: str | None = None,
        version: str | None = None,
        mqtt_stats: Callable[[], MqttState] | None = None,
    ) -> None:
        """`mqtt_stats`: the MQTT publisher's stats, read at each render (None: no MQTT, and
        its metrics stay at 0)."""
        pc = _prometheus_client()
        self._mqtt_stats = mqtt_stats
        self._pc = pc
        self.registry = pc.CollectorRegistry()
        r = self.registry
        info = {k: v for k, v in (("camera", camera), ("model", model), ("version", version)) if v}
        pc.Info("gclf", "What this gclf runs: its camera's name, its model, its version", registry=r).info(info)
        self._frames = pc.Counter("gclf_frames_processed", "Frames the live loop classified", registry=r)
        self._dropped = pc.Counter("gclf_frames_dropped", "Frames the camera delivered while the loop was busy with an earlier one", registry=r)
        self._fps = pc.Gauge("gclf_loop_fps", "Frames processed per second, over the last few frames", registry=r)
        self._inference = pc.Histogram("gclf_inference_duration_seconds", "Time the classifier took for one frame (all its faces)",
                                       buckets=LATENCY_BUCKETS_S, registry=r)
        self._detection = pc.Histogram("gclf_detection_duration_seconds", "Time the face detector took, on the frames it ran on",
                                       buckets=LATENCY_BUCKETS_S, registry=r)
        self._tracks = pc.Counter("gclf_tracks", "People seen: tracks ended, by the label of each", ["label"], registry=r)
        for label in labels:
            self._tracks.labels(label=label)  # every class present from the start, at 0
        self._camera_up = pc.Gauge("gclf_camera_up", "1 while the camera delivers frames, 0 while it is down", registry=r)
        self._outages = pc.Counter("gclf_camera_outages", "Times the camera stopped delivering frames", registry=r)
        self._mqtt_connected = pc.Gauge("gclf_mqtt_connected", "1 while the MQTT broker is connected", registry=r)
        self._mqtt_queue = pc.Gauge("gclf_mqtt_queue_depth", "Track events waiting on disk for the MQTT broker", registry=r)
        self._mqtt_dropped = pc.Counter("gclf_mqtt_events_dropped", "Track events dropped at the MQTT queue's cap", registry=r)
        self._viewers = pc.Gauge("gclf_viewers", "Browsers watching the live stream", registry=r)
        pc.ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ... (Linux)
        self._lock = threading.Lock()
        self._dropped_seen = 0  # the feed's dropped count last turned into increments
        self._mqtt_dropped_seen = 0
        self._camera_is_up: bool | None = None

    # --- updates ------------------------------------------------------------------------------

    def frame_processed(self, *, fps: float, inference_s: float | None = None, detection_s: float | None = None) -> None:
        """One frame done: its FPS reading, the classifier's time, the detector's (None on a
        frame where the boxes were carried over instead of detected)."""
        self._frames.inc()
        self._fps.set(fps)
        if inference_s is not None:
            self._inference.observe(inference_s)
        if detection_s is not None:
            self._detection.observe(detection_s)

    def frames_dropped(self, total: int) -> None:
        """The feed's count of dropped frames so far (FrameFeed.dropped): counted as increments."""
        with self._lock:
            delta, self._dropped_seen = total - self._dropped_seen, max(total, self._dropped_seen)
        if delta > 0:
            self._dropped.inc(delta)

    def track_ended(self, event: TrackEvent) -> None:
        """A PersonTracker `on_end` listener: one more person of `event.label`."""
        self._tracks.labels(label=event.label).inc()

    def camera_state(self, up: bool) -> None:
        """Whether the camera delivers; a change from up to down counts an outage."""
        with self._lock:
            went_down = self._camera_is_up is True and not up
            self._camera_is_up = up
        self._camera_up.set(1 if up else 0)
        if went_down:
            self._outages.inc()

    def mqtt_state(self, *, connected: bool, waiting: int, dropped: int) -> None:
        """The MQTT publisher's stats (MqttPublisher.stats(): connected, waiting, dropped)."""
        self._mqtt_connected.set(1 if connected else 0)
        self._mqtt_queue.set(waiting)
        with self._lock:
            delta, self._mqtt_dropped_seen = dropped - self._mqtt_dropped_seen, max(dropped, self._mqtt_dropped_seen)
        if delta > 0:
            self._mqtt_dropped.inc(delta)

    def viewers(self, count: int) -> None:
        self._viewers.set(count)

    # --- output -------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The /metrics body, in Prometheus's text format (serve it with CONTENT_TYPE)."""
        if self._mqtt_stats is not None:
            stats = self._mqtt_stats()
            self.mqtt_state(connected=stats.connected, waiting=stats.waiting, dropped=stats.dropped)
        return self._pc.generate_latest(self.registry)


class MetricsSink:
    """The live loop's sink that feeds `LiveMetrics`: per frame its timings, the feed's
    dropped frames and camera up; per finished track (an event sink) its label."""

    needs_image = False

    def __init__(self, metrics: LiveMetrics) -> None:
        self._metrics = metrics

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        self._metrics.frame_processed(fps=result.fps, inference_s=result.inference_s, detection_s=result.detection_s)
        self._metrics.frames_dropped(result.dropped)
        self._metrics.camera_state(True)  # a frame came: the camera delivers
        return True

    def write_event(self, event: TrackEvent) -> None:
        self._metrics.track_ended(event)

    def close(self) -> None:
        pass
