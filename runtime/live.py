"""The live loop: frames in, faces (or the whole frame) classified, results out to sinks.

    feed (camera / video, own thread)
      -> prepare: [face detector], crops, preprocessing contract (own thread)
      -> Classifier -> sinks (JSON lines | window | video file)

Preparing frame N+1 overlaps the inference of frame N, so when the model is the bottleneck
the loop runs at nearly the model's own rate (docs/measurements.md has the figures).

`run_live` knows nothing of click or of where frames come from: it takes a `FrameFeed`, a
`FaceDetector` or None (whole frames), a `Classifier` and a list of `Sink`s, and returns a
`LiveSummary`. The sinks here are the three the CLI offers.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, TextIO

import cv2
import numpy as np

from gclf.runtime.classifier import Classifier
from gclf.runtime.errors import BadModelError, GclfError, UsageError
from gclf.runtime.faces import Box, FaceDetector, expand_box
from gclf.runtime.preprocess import PreprocessSpec, resize_to_input, to_model_input
from gclf.runtime.video_sources import Frame, FrameFeed

INPUT_KINDS = ("faces", "whole_image")
DEFAULT_INPUT_KIND = "whole_image"  # what models trained before gclf recorded input_kind expect
DEFAULT_FACE_MARGIN = 0.0  # see faces.expand_box for why


# --- what the model expects --------------------------------------------------------------


def model_input_kind(training: Mapping[str, Any]) -> str | None:
    """`input_kind` from a model's training metadata: "faces", "whole_image", or None if absent.

    An unknown value is refused, never guessed: a faces model fed whole frames (or the
    reverse) fails silently as lower accuracy.
    """
    kind = training.get("input_kind")
    if kind is None:
        return None
    if kind not in INPUT_KINDS:
        raise BadModelError(f"model metadata has input_kind {kind!r}; this gclf knows {list(INPUT_KINDS)}")
    return kind


def use_face_detection(training: Mapping[str, Any], override: bool | None, warn: Callable[[str], None]) -> bool:
    """Whether to detect faces: the `--faces/--no-faces` override, else the model's metadata."""
    if override is not None:
        return override
    kind = model_input_kind(training)
    if kind is None:
        warn(
            f"the model does not record whether it expects face crops or whole images (no input_kind); "
            f"treating it as {DEFAULT_INPUT_KIND} (pass --faces if it was trained on faces)"
        )
        kind = DEFAULT_INPUT_KIND
    return kind == "faces"


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceResult:
    box: Box  # the face as detected (without the crop margin); the whole frame without detection
    label: str
    confidence: float  # softmax probability of `label`


@dataclass(frozen=True)
class FrameResult:
    index: int  # the frame's position in its source
    timestamp: float  # capture time, seconds since the epoch
    faces: tuple[FaceResult, ...]
    fps: float  # frames processed per second, over the last few frames

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": round(self.timestamp, 3),
            "frame": self.index,
            "faces": [{"box": list(f.box), "label": f.label, "confidence": round(f.confidence, 6)} for f in self.faces],
            "fps": round(self.fps, 2),
        }


@dataclass(frozen=True)
class LiveSummary:
    processed: int
    dropped: int
    elapsed_s: float  # from the first frame taken to the last one done
    stopped_by: str  # "end of video x.avi", "q pressed", "interrupted", a lost camera's message
    failure: GclfError | None = None  # the source was lost: the run ends with its exit code
    interrupted: bool = False

    @property
    def mean_fps(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.processed} frame{'' if self.processed == 1 else 's'} processed, {self.dropped} dropped, "
            f"mean {self.mean_fps:.1f} FPS over {self.elapsed_s:.1f} s; stopped: {self.stopped_by}"
        )


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
    boxes: tuple[Box, ...]  # the faces as detected; the whole frame without a detector
    batch: np.ndarray  # float32 (len(boxes), 3, H, W), the preprocessing contract's output


def prepare_frame(frame: Frame, spec: PreprocessSpec, detector: FaceDetector | None, *, margin: float = DEFAULT_FACE_MARGIN) -> PreparedFrame:
    """Detect faces (or take the whole frame) and turn them into one model-input batch.

    The contract is cvtColor(BGR->RGB), then resize_to_input, then to_model_input. Here the
    resize comes first and the colour swap after: linear resizing treats each channel on
    its own, so the result is bit-identical (tests check it) while the swap touches the
    224x224 result instead of a whole 640x480 frame.
    """
    bgr = frame.bgr
    h, w = bgr.shape[:2]
    if detector is None:
        boxes: list[Box] = [(0, 0, w, h)]
        regions = [bgr]
    else:
        boxes = detector.detect(bgr)
        regions = []
        for box in boxes:
            x, y, bw, bh = expand_box(box, (h, w), margin)
            regions.append(bgr[y : y + bh, x : x + bw])
    resized = np.empty((len(regions), spec.input_height, spec.input_width, 3), dtype=np.uint8)
    for i, region in enumerate(regions):
        resized[i] = resize_to_input(np.ascontiguousarray(region), spec)[..., ::-1]  # BGR -> RGB
    return PreparedFrame(frame, tuple(boxes), to_model_input(resized, spec))


def classify_prepared(prepared: PreparedFrame, classifier: Classifier) -> list[FaceResult]:
    """Run the model on a prepared frame (all its faces in one batch)."""
    if not prepared.boxes:
        return []
    preds = classifier.predict_batch(prepared.batch)
    return [FaceResult(box, p.label, p.confidence) for box, p in zip(prepared.boxes, preds)]


def classify_frame(bgr: np.ndarray, classifier: Classifier, detector: FaceDetector | None, *, margin: float = DEFAULT_FACE_MARGIN) -> list[FaceResult]:
    """Classify the faces in a BGR frame (all in one batch), or the whole frame without a detector."""
    prepared = prepare_frame(Frame(0, 0.0, bgr), classifier.spec, detector, margin=margin)
    return classify_prepared(prepared, classifier)


FONT = cv2.FONT_HERSHEY_SIMPLEX
BOX_COLOUR = (0, 200, 0)  # BGR
TEXT_COLOUR = (255, 255, 255)


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    # Dark outline under light text: readable on any background.
    cv2.putText(image, text, org, FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, org, FONT, scale, TEXT_COLOUR, 1, cv2.LINE_AA)


def annotate(bgr: np.ndarray, result: FrameResult) -> np.ndarray:
    """Draw box, label and confidence per face, and the FPS, onto `bgr` (in place) and return it."""
    h, w = bgr.shape[:2]
    scale = max(0.4, min(w, h) / 800)
    line_h = round(30 * scale) + 4
    for face in result.faces:
        x, y, bw, bh = face.box
        whole = (bw, bh) == (w, h)
        if not whole:
            cv2.rectangle(bgr, (x, y), (x + bw - 1, y + bh - 1), BOX_COLOUR, max(1, round(2 * scale)))
        # Above the box if there is room, else inside it; the whole frame's label goes under the FPS.
        org = (8, 2 * line_h) if whole else (x + 2, y - 6 if y >= line_h else y + line_h)
        _text(bgr, f"{face.label} {face.confidence:.2f}", org, scale)
    _text(bgr, f"{result.fps:.1f} FPS", (8, line_h), scale)
    return bgr


# --- sinks ---------------------------------------------------------------------------------


class Sink(Protocol):
    needs_image: bool  # whether write() needs the annotated frame (drawing costs time)

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        """Take one processed frame; False asks the loop to stop (the user quit)."""
        ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object per processed frame, flushed at once (for a pipe on a device without a screen)."""

    needs_image = False

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        self._stream.write(json.dumps(result.to_json()) + "\n")
        self._stream.flush()
        return True

    def close(self) -> None:
        pass


QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27: Esc


class WindowSink:
    """An OpenCV window showing the annotated frames; q or Esc (or closing it) quits."""

    needs_image = True

    def __init__(self, title: str = "gclf") -> None:
        self.title = title
        self._seen_visible = False
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # Checked first: some GUI backends abort the whole process without a display.
            raise UsageError("cannot open a window: no display ($DISPLAY is not set); pass --headless for JSON lines instead")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise UsageError(
                "cannot open a window: this OpenCV has no GUI support (opencv-python-headless); "
                "pass --headless for JSON lines instead (--save FILE also writes the annotated video)"
            ) from None

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        cv2.imshow(self.title, annotated)
        key = cv2.waitKey(1)  # also lets the GUI draw; 1 ms
        if key != -1 and (key & 0xFF) in QUIT_KEYS:
            return False
        # Closed with the mouse: the window stops being visible. Only trusted once it has been
        # seen visible, since a GUI backend without this property answers -1 from the start.
        visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        self._seen_visible = self._seen_visible or visible
        return visible or not self._seen_visible

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)  # lets the GUI actually remove it


VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


class VideoFileSink:
    """Writes the annotated frames to a video file, moved into place when it is complete.

    `fps` is the file's frame rate: the source's when every frame is kept. When frames are
    dropped (a camera), pass None: the rate is measured over the first frames, so the video
    plays at the speed things happened.
    """

    needs_image = True
    MEASURE_FRAMES = 15

    def __init__(self, path: Path, *, fps: float | None) -> None:
        self.path = Path(path)
        codec = VIDEO_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise UsageError(f"--save {self.path}: use a .mp4 or .avi file name")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the target under a hidden name (with the real extension, which
        # picks the container), renamed at close: never a half-written file at `path`.
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._fourcc = cv2.VideoWriter_fourcc(*codec)
        self.fps = fps  # settable until the first frame arrives
        self._writer: cv2.VideoWriter | None = None
        self._pending: list[tuple[float, np.ndarray]] = []
        self.frames_written = 0

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        assert annotated is not None
        if self._writer is None:
            self._pending.append((result.timestamp, annotated.copy()))
            if self.fps is None and len(self._pending) < self.MEASURE_FRAMES:
                return True
            self._open()
            return True
        self._put(annotated)
        return True

    def _open(self) -> None:
        fps = self.fps or _measured_fps([t for t, _ in self._pending])
        h, w = self._pending[0][1].shape[:2]
        self._writer = cv2.VideoWriter(str(self._tmp), self._fourcc, fps, (w, h))
        if not self._writer.isOpened():
            self._writer = None
            raise UsageError(f"--save {self.path}: OpenCV cannot write this video format here")
        for _, image in self._pending:
            self._put(image)
        self._pending = []

    def _put(self, image: np.ndarray) -> None:
        assert self._writer is not None
        self._writer.write(image)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is None and self._pending:
            self._open()  # fewer frames than the measurement wanted: use what there is
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.replace(self._tmp, self.path)


def _measured_fps(timestamps: Sequence[float]) -> float:
    span = timestamps[-1] - timestamps[0] if len(timestamps) > 1 else 0.0
    return min(120.0, max(1.0, (len(timestamps) - 1) / span)) if span > 0 else 10.0


# --- the loop ---------------------------------------------------------------------------


_FEED_ENDED = object()


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

    def next(self) -> PreparedFrame | None:
        """The next prepared frame; None when the feed has ended."""
        item = self._ready.get()
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
    clock: Callable[[], float] = time.perf_counter,
) -> LiveSummary:
    """Classify frames from `feed` until it ends, a sink asks to stop, or `max_frames`.

    The feed and every sink are closed on the way out, whatever happens (camera and window
    released, video file finished). Ctrl-C ends the run with a summary (`interrupted`).
    """
    meter = FpsMeter()
    processed = 0
    first: float | None = None
    last = 0.0
    stopped_by = ""
    interrupted = False
    with contextlib.ExitStack() as cleanup:
        preparer = FramePreparer(feed, lambda frame: prepare_frame(frame, classifier.spec, detector, margin=margin))
        # Run in reverse: stop the preparer, close the sinks, close the feed (which also
        # releases a preparer waiting for a frame), then wait for the preparer's thread.
        cleanup.callback(preparer.join)
        cleanup.callback(feed.close)
        for sink in sinks:
            cleanup.callback(sink.close)
        cleanup.callback(preparer.stop)
        try:
            while max_frames is None or processed < max_frames:
                prepared = preparer.next()
                if prepared is None:
                    stopped_by = feed.end_reason or "the source ended"
                    break
                if first is None:
                    first = clock()
                faces = classify_prepared(prepared, classifier)
                result = FrameResult(prepared.frame.index, prepared.frame.timestamp, tuple(faces), meter.tick(clock()))
                processed += 1
                last = clock()
                # Asked per frame: a sink may want pictures only some of the time (--serve: while watched).
                image = annotate(prepared.frame.bgr, result) if any(s.needs_image for s in sinks) else None
                # Every sink gets the frame (the video keeps it) before a quit key is obeyed.
                keep_going = [sink.write(result, image) for sink in sinks]
                if not all(keep_going):
                    stopped_by = "quit by the user"
                    break
            else:
                stopped_by = f"--max-frames {max_frames} reached"
        except KeyboardInterrupt:
            stopped_by, interrupted = "interrupted", True
    elapsed = last - first if first is not None else 0.0
    return LiveSummary(processed, feed.dropped, elapsed, stopped_by, failure=feed.failure, interrupted=interrupted)
