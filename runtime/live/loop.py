"""The live loop: frames in, faces (or the whole frame) classified, results out to sinks.

    feed (camera / video, own thread)
      -> prepare: [face detector every N-th frame, boxes tracked between], crops,
                  preprocessing contract (own thread)
      -> Classifier -> sinks (JSON lines | window | video file)

Preparing frame N+1 overlaps the inference of frame N, so when the model is the bottleneck
the loop runs at nearly the model's own rate (docs/measurements.md has the figures).

`run_live` knows nothing of click or of where frames come from: it takes a `FrameFeed`, a
`FaceDetector` or None (whole frames), a `Classifier` and a list of `Sink`s, and returns a
`LiveSummary`. Drawing is in `gclf.runtime.live.annotate`, the outputs in `gclf.runtime.live.sinks`.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from gclf.runtime.classifier import Classifier, FaceResult
from gclf.runtime.faces.crops import DEFAULT_FACE_MARGIN, boxes_to_model_input, faces_to_model_input
from gclf.runtime.faces.detectors import Box, FaceDetector
from gclf.runtime.live.annotate import annotate
from gclf.runtime.live.carry import DEFAULT_DETECT_EVERY, BoxCarrier
from gclf.runtime.live.frames import FrameResult, LiveSummary
from gclf.runtime.live.people import PersonTracker, TrackEvent
from gclf.runtime.live.sinks import EventSink, Sink, WaitingSink
from gclf.runtime.live.sources import CaptureSource, Frame, FrameFeed, open_feed
from gclf.runtime.preprocess import PreprocessSpec, preprocess_batch


class FpsMeter:
    """Frames per second over the last `window` frames: steady, yet follows changes within a second or two."""

    def __init__(self, window: int = 30) -> None:
        self._times: collections.deque[float] = collections.deque(maxlen=window)

    def tick(self, now: float) -> float:
        self._times.append(now)
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])


# --- one frame ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedFrame:
    """A frame made ready for the model: where its faces are, and their model input."""

    frame: Frame
    boxes: tuple[Box, ...]  # the faces as detected or carried; the whole frame without a detector
    batch: np.ndarray  # float32 (len(boxes), 3, H, W), the preprocessing contract's output
    detected: tuple[bool, ...] | None = None  # per box: detected on this frame (True) or carried; None: whole frame
    detection_s: float | None = None  # the face detector's time on this frame; None where it did not run


def prepare_frame(
    frame: Frame, spec: PreprocessSpec, detector: FaceDetector | BoxCarrier | None, *, margin: float = DEFAULT_FACE_MARGIN
) -> PreparedFrame:
    """Find the faces (a detector on this frame, or a tracker that detects every N-th frame and
    carries boxes between) or take the whole frame, and turn them into one model-input batch."""
    if detector is None:
        h, w = frame.bgr.shape[:2]
        return PreparedFrame(frame, ((0, 0, w, h),), preprocess_batch([frame.bgr], spec, color="bgr"))
    if isinstance(detector, BoxCarrier):
        runs = detector.counts.detections
        started = time.perf_counter()
        found = detector.faces(frame.bgr)
        # Timed only where the detector ran: carrying boxes over costs about a millisecond.
        detection_s = time.perf_counter() - started if detector.counts.detections != runs else None
        boxes = tuple(f.box for f in found)
        batch = boxes_to_model_input(frame.bgr, boxes, spec, margin=margin)
        return PreparedFrame(frame, boxes, batch, tuple(f.detected for f in found), detection_s)
    started = time.perf_counter()
    found, batch = faces_to_model_input(frame.bgr, spec, detector, margin=margin)
    return PreparedFrame(frame, tuple(found.boxes), batch, (True,) * len(found.boxes), time.perf_counter() - started)


def classify_prepared(prepared: PreparedFrame, classifier: Classifier) -> list[FaceResult]:
    """Run the model on a prepared frame (all its faces in one batch)."""
    if not prepared.boxes:
        return []
    preds = classifier.predict_input(prepared.batch)
    return [FaceResult.of(box, p) for box, p in zip(prepared.boxes, preds)]


# --- the loop ---------------------------------------------------------------------------


_FEED_ENDED = object()
STOP_POLL_S = 0.1  # how often a loop waiting for a frame looks whether it was asked to stop

# The signals that end a live run as q/Esc does: systemctl stop (SIGTERM), Ctrl-C (SIGINT),
# the terminal closing (SIGHUP).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopRequest:
    """Asks `run_live` to end after the frame in hand, as a quit key does; says who asked."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def stop_on_signals(signals: Sequence[signal.Signals] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """A `StopRequest` that `signals` set while the block runs (their handlers restored after).

    The handler only sets a flag: the loop ends between frames, so no output is cut half-way
    (a JSON line, a video frame) and everything is closed as after q. The first signal puts
    the previous handler back, so a second Ctrl-C interrupts at once. Signals can only be
    handled in the main thread; elsewhere the request is returned unwired.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: object) -> None:
        request.set(f"{signal.Signals(signum).name} received")
        signal.signal(signum, previous[signum])

    for sig in signals:
        # None: a handler installed outside Python, which cannot be put back; the default is.
        previous[sig] = signal.signal(sig, handle) or signal.SIG_DFL
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class FramePreparer:
    """Prepares the next frame in its own thread while the caller runs the model on this one.

    One frame is prepared at a time, and only once the consumer has taken the previous one
    (a one-slot handshake): the frame taken from a camera feed is then at most one inference
    old when the model gets it, and preparation never runs ahead of the model. Errors in the
    thread (a detector failing) are handed to the consumer and raised there.
    """

    def __init__(self, feed: FrameFeed, prepare: Callable[[Frame], PreparedFrame]) -> None:
        self._feed = feed
        self._prepare = prepare
        self._ready: queue.Queue[object] = queue.Queue(maxsize=1)
        self._may_take = threading.Semaphore(1)  # released each time the consumer takes one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gclf-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._may_take.acquire()
                if self._stop.is_set():
                    break
                frame = self._feed.next_frame()
                if frame is None:
                    self._hand_over(_FEED_ENDED)
                    return
                self._hand_over(self._prepare(frame))
        except BaseException as exc:  # raised again in the consumer's thread
            self._hand_over(exc)

    def _hand_over(self, item: object) -> None:
        # A bounded put that still notices stop(): the consumer may have stopped taking.
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self, stop: StopRequest | None = None, waiting: Callable[[], None] | None = None) -> PreparedFrame | None:
        """The next prepared frame; None when the feed has ended, or once `stop` is set.
        `waiting` is called every STOP_POLL_S while no frame is ready (in the caller's thread)."""
        while True:
            try:
                # Bounded, to notice `stop` (set by a signal handler) while a camera is slow.
                item = self._ready.get(timeout=STOP_POLL_S)
                break
            except queue.Empty:
                if stop is not None and stop.is_set():
                    return None
                if waiting is not None:
                    waiting()
        if item is _FEED_ENDED:
            self._ready.put(item)  # later calls see the end too
            return None
        self._may_take.release()
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, PreparedFrame)
        return item

    def stop(self) -> None:
        """Ask the thread to stop; it ends at once, or once the feed's next_frame returns
        (closing the feed makes it return)."""
        self._stop.set()
        self._may_take.release()  # wakes the thread if it waits for its turn
        with contextlib.suppress(queue.Empty):
            self._ready.get_nowait()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


def run_live(
    feed: FrameFeed,
    classifier: Classifier,
    *,
    detector: FaceDetector | None,
    sinks: Sequence[Sink],
    margin: float = DEFAULT_FACE_MARGIN,
    max_frames: int | None = None,
    detect_every: int = DEFAULT_DETECT_EVERY,
    stop: StopRequest | None = None,
    people: PersonTracker | None = None,
    track_people: bool = True,
    source_down: Callable[[], bool] | None = None,
) -> LiveSummary:
    """Classify frames from `feed` until it ends, a sink asks to stop, `stop` is set (see
    `stop_on_signals`), or `max_frames`.

    A source that goes down without ending the feed (a network camera reconnecting: it says
    so through `source_down`) ends the tracks of the people in view, in this thread, while
    the loop waits for its frames: their events go to the event sinks then, not when (or if)
    the camera comes back. Sinks that keep time while no frame comes (`WaitingSink`: the
    summary, systemd's watchdog) are called as the loop waits.

    With a `detector`, it runs on every `detect_every`-th frame and the boxes are carried over
    in between (gclf.runtime.live.carry; 1: detection on every frame).

    With a `detector`, each face also gets a track id and its track's answer (`people`, a
    fresh `PersonTracker` with the classifier's `min_confidence` if None; `track_people=False` leaves that out, for measuring its
    cost). Each finished track's event goes to every sink that takes events (`EventSink`),
    and every track still open is ended before the sinks are closed, so its event is written.

    The feed and every sink are closed on the way out, whatever happens (camera and window
    released, video file finished). A KeyboardInterrupt (Ctrl-C where no `stop_on_signals`
    handles it) ends the run with a summary (`interrupted`).
    """
    if people is None and detector is not None and track_people:
        people = PersonTracker(min_confidence=classifier.min_confidence)
    # Made here, used only by the preparation thread: it keeps the previous frame to track from.
    carrier = BoxCarrier(detector, detect_every) if detector is not None else None
    run = _Run(feed, classifier, sinks, people, stop, source_down, carrier)
    with contextlib.ExitStack() as cleanup:
        preparer = FramePreparer(feed, lambda frame: prepare_frame(frame, classifier.spec, carrier, margin=margin))
        # Run in reverse: stop the preparer, end the tracks (their events go to the sinks),
        # close the sinks, close the feed (which also releases a preparer waiting for a
        # frame), then wait for the preparer's thread.
        cleanup.callback(preparer.join)
        cleanup.callback(feed.close)
        for sink in sinks:
            cleanup.callback(sink.close)
        cleanup.callback(run.end_tracks)
        cleanup.callback(preparer.stop)
        try:
            run.frames(preparer, max_frames)
        except KeyboardInterrupt:
            run.stopped_by, run.interrupted = "interrupted", True
    return run.summary()


class _Run:
    """One run of the live loop: what it has done so far, and each processed frame's steps."""

    def __init__(
        self, feed: FrameFeed, classifier: Classifier, sinks: Sequence[Sink], people: PersonTracker | None, stop: StopRequest | None,
        source_down: Callable[[], bool] | None = None, carrier: BoxCarrier | None = None,
    ) -> None:  # fmt: skip
        self.feed, self.classifier, self.sinks, self.people, self.stop = feed, classifier, sinks, people, stop
        self.source_down = source_down
        self.carrier = carrier  # read only at the end, for its count of dropped detector answers
        self.event_sinks = [s for s in sinks if isinstance(s, EventSink)]
        self.waiting_sinks = [s for s in sinks if isinstance(s, WaitingSink)]
        self.meter = FpsMeter()
        self.processed = 0
        self.first: float | None = None
        self.last = 0.0
        self.stopped_by = ""
        self.interrupted = False

    def frames(self, preparer: FramePreparer, max_frames: int | None) -> None:
        """Frames until the feed ends, a sink or `stop` asks, or `max_frames`; sets `stopped_by`."""
        while max_frames is None or self.processed < max_frames:
            prepared = preparer.next(self.stop, self.waiting)
            if self._asked_to_stop():
                return
            if prepared is None:
                self.stopped_by = self.feed.end_reason or "the source ended"
                return
            if not self._process(prepared):
                self.stopped_by = "quit by the user"
                return
            if self._asked_to_stop():  # after the frame, as a quit key
                return
        self.stopped_by = f"the limit of {max_frames} frames reached"

    def _asked_to_stop(self) -> bool:
        if self.stop is not None and self.stop.is_set():
            self.stopped_by = self.stop.reason or "asked to stop"
            return True
        return False

    def _process(self, prepared: PreparedFrame) -> bool:
        """Classify one prepared frame and hand it to every sink; False: a sink asked to stop."""
        if self.first is None:
            self.first = time.perf_counter()
        frame = prepared.frame
        started = time.perf_counter()
        faces = classify_prepared(prepared, self.classifier)
        inference_s = time.perf_counter() - started if prepared.boxes else None
        tracks = self.people.update(frame.timestamp, faces, frame.bgr.shape[:2], prepared.detected) if self.people is not None else None
        result = FrameResult(frame.index, frame.timestamp, tuple(faces), self.meter.tick(time.perf_counter()), prepared.detected, tracks,
                             self.feed.dropped, inference_s, prepared.detection_s)
        self.processed += 1
        self.last = time.perf_counter()
        self._hand_over_events()
        # Asked per frame: a sink may want pictures only some of the time (--serve: while watched).
        image = annotate(frame.bgr, result) if any(s.needs_image for s in self.sinks) else None
        # Every sink gets the frame (the video keeps it) before a quit key is obeyed.
        keep_going = [sink.write(result, image) for sink in self.sinks]
        return all(keep_going)

    def _hand_over_events(self) -> None:
        if self.people is None:
            return
        for event in self.people.take_ended():
            for sink in self.event_sinks:
                sink.write_event(event)

    def waiting(self) -> None:
        """No frame yet: a source that is down ends the open tracks (once: none are left open
        until frames come again); the sinks that keep time are told."""
        if self.source_down is not None and self.people is not None and self.people.open_tracks and self.source_down():
            self.end_tracks()
        for sink in self.waiting_sinks:
            sink.write_waiting()

    def end_tracks(self) -> None:
        """The run is over, or its source went down: every open track ends, and its event is handed over."""
        if self.people is not None:
            self.people.finish()
            self._hand_over_events()

    def summary(self) -> LiveSummary:
        elapsed = self.last - self.first if self.first is not None else 0.0
        detector_dropped = self.carrier.counts.dropped if self.carrier is not None else 0
        return LiveSummary(
            self.processed, self.feed.dropped, elapsed, self.stopped_by, failure=self.feed.failure, interrupted=self.interrupted, detector_dropped=detector_dropped
        )


# --- the Python API: one event per person -------------------------------------------------


class _EventQueue:
    """A sink that queues the people's events for `track_events`, and asks the loop to stop
    once `stop` is set (the consumer left)."""

    needs_image = False

    def __init__(self, events: queue.Queue[object], stop: threading.Event) -> None:
        self._events = events
        self._stop = stop

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        return not self._stop.is_set()

    def write_event(self, event: TrackEvent) -> None:
        self._events.put(event)

    def close(self) -> None:
        pass


def track_events(
    feed: FrameFeed | str | Path,
    classifier: Classifier,
    *,
    detector: FaceDetector,
    margin: float = DEFAULT_FACE_MARGIN,
    max_frames: int | None = None,
    detect_every: int = DEFAULT_DETECT_EVERY,
    people: PersonTracker | None = None,
) -> Iterator[TrackEvent]:
    """The people in `feed`, one `TrackEvent` each, as their tracks end (`gclf-infer --events`).

        for event in track_events("door.mp4", Classifier("faces.onnx"), detector=make_detector(None)):
            print(event.track, event.label, event.frames)

    `feed`: a video file (every frame, in order) or any started feed (a camera:
    `open_feed(open_camera("usb", 0), keep_every_frame=False)`).

    The live loop runs in a thread of its own while the caller takes the events; leaving the
    loop early (break) stops it and closes the feed. Tracks still open when the feed ends
    come last. A failure of the loop (a detector error) is raised here; a lost camera ends
    the events, and `feed.failure` says why.
    """
    if isinstance(feed, (str, Path)):
        feed = open_feed(CaptureSource.video(Path(feed)), keep_every_frame=True)
    people = people or PersonTracker(min_confidence=classifier.min_confidence)
    events: queue.Queue[object] = queue.Queue()
    stop = threading.Event()

    def run() -> None:
        try:
            run_live(feed, classifier, detector=detector, sinks=[_EventQueue(events, stop)], margin=margin,
                     max_frames=max_frames, detect_every=detect_every, people=people)
        except BaseException as exc:  # handed to the consumer
            events.put(exc)
        finally:
            events.put(_FEED_ENDED)

    worker = threading.Thread(target=run, name="gclf-track-events", daemon=True)
    worker.start()
    try:
        while True:
            item = events.get()
            if item is _FEED_ENDED:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, TrackEvent)
            yield item
    finally:
        stop.set()  # the loop stops at its next frame...
        feed.close()  # ...or, waiting for one, is released (closing twice is allowed)
        worker.join()
