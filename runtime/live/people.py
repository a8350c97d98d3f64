"""One person, one answer: track ids across frames, a label per track, events and counts.

The live loop answers frame by frame, and a face's frames disagree (benchmarks/track_bench.py).
`PersonTracker` gives each face a `track` id that lasts while the person is in view, and
each track a label from all its frames so far:

- **Association.** Each frame's boxes (detected, or carried over by the optical-flow
  carrier in gclf.runtime.live.carry) are matched to the open tracks, greedily by overlap
  (IoU) with where each track is expected to be (its last box moved on by its velocity),
  or, for a box that jumped, by centre distance relative to the face's size (allowed to grow
  while the track goes unseen). The velocity comes from detected boxes only: a carried box
  can slide onto another face while one passes in front of the other. A box that matches no
  track starts one.
- **Misses.** A track not matched on a frame is kept for `max_missed` frames (the detector
  missed the face, or one person passed in front of the other), then ended; sooner if the
  person walked out: at once when where it is expected to be has left the frame, and after
  `EDGE_MISSED` frames when its last box touched the frame's edge (otherwise the next person
  coming in through the same door would continue that track).
- **The answer.** A track's probabilities are the mean of its frames' probabilities; its
  label the most probable class (track_bench measured mean probabilities against summed
  log-probabilities and against face-size weights: docs/measurements.md). Below the
  tracker's `min_confidence` (the classifier's threshold) the track's label is `unsure`,
  decided on the mean, not frame by frame: one person, one answer, sure or not.
- **Events.** A track that ends (and, at the end of the run, every open track) becomes one
  `TrackEvent`: what an unattended device records instead of a line per frame. Tracks of
  fewer than `min_frames` frames (a detector's false alarm on a frame or two) make none.
- **Counts.** `PeopleCounts` counts tracks (people) per label: in total, over the last minute and
  over the last hour, by the time each track was first seen. An `unsure` track counts under
  "unsure", apart: never inside a class's count.

Pure Python and numpy-free on purpose: a few boxes per frame cost microseconds here.
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Sequence

from gclf.runtime.labels import UNSURE

if TYPE_CHECKING:
    from gclf.runtime.classifier import FaceResult
    from gclf.runtime.faces import Box

# A track not matched for this many frames in a row ends (a second at 30 frames/s, a few
# seconds on a slow Pi): long enough for missed detections or one face passing behind
# another (track_bench's crossings hide one for up to about 25 frames).
DEFAULT_MAX_MISSED = 30
# Tracks shorter than this make no event and are not counted (a false detection lasts a
# frame or two; a person is in view for many more).
DEFAULT_MIN_FRAMES = 3
MIN_IOU = 0.2  # least overlap of a box with a track's expected box for a match
MAX_CENTRE_SHIFT = 0.6  # or: centre within this share of the track's face size (a fast move)
SHIFT_GROWTH = 0.04  # ...plus this share per frame the track went unseen (where it is grows uncertain)
VELOCITY_SMOOTHING = 0.5  # share of the newest motion in the velocity estimate

EDGE_MISSED = 5  # frames a track whose last box touched the frame's edge is kept
EDGE_PX = 2  # a box this close to the frame's border touches it

MINUTE_S, HOUR_S = 60.0, 3600.0


class FaceTrack(NamedTuple):
    """What a face on one frame belongs to: its track and the track's answer so far."""

    id: int
    label: str  # the track's most probable class, or UNSURE
    confidence: float  # the track's mean probability of `best`
    frames: int  # frames the track's answer rests on
    best: str = ""  # the track's most probable class ("": `label`)

    @property
    def top(self) -> str:
        return self.best or self.label


@dataclass(frozen=True)
class TrackEvent:
    """One person's visit: written once, when the track ends."""

    track: int
    label: str  # the most probable class over the track's frames, or UNSURE
    confidence: float  # the mean probability of `best`
    probabilities: Mapping[str, float]  # mean over the track's frames, per class
    first_seen: float  # capture timestamps, seconds since the epoch
    last_seen: float
    frames: int
    largest_box: Box  # the largest box the face had (x, y, width, height, frame pixels)
    best: str = ""  # the most probable class ("" when built: then `label`)

    def __post_init__(self) -> None:
        if not self.best:
            object.__setattr__(self, "best", self.label)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "track",
            "track": self.track,
            "label": self.label,
            **({"best": self.best} if self.label == UNSURE else {}),
            "confidence": round(self.confidence, 4),
            "probabilities": {c: round(p, 4) for c, p in self.probabilities.items()},
            "first_seen": round(self.first_seen, 3),
            "last_seen": round(self.last_seen, 3),
            "frames": self.frames,
            "largest_box": list(self.largest_box),
        }


@dataclass
class _Track:
    id: int
    box: Box
    first_seen: float
    last_seen: float
    prob_sum: dict[str, float]
    frames: int = 1
    missed: int = 0  # frames in a row without a match
    velocity: tuple[float, float] = (0.0, 0.0)  # centre motion, pixels per frame
    anchor: tuple[int, float, float] | None = None  # frame number and centre of the last detected box
    largest_box: Box = (0, 0, 0, 0)

    def answer(self, min_confidence: float = 0.0) -> tuple[str, str, float, dict[str, float]]:
        """(label, most probable class, its mean probability, mean per class); the label is
        UNSURE when that mean is below `min_confidence`."""
        mean = {c: s / self.frames for c, s in self.prob_sum.items()}
        best = max(mean, key=mean.__getitem__)
        return (UNSURE if mean[best] < min_confidence else best), best, mean[best], mean

    def expected(self, ahead: int = 1) -> tuple[float, float, float, float]:
        """Where the face should be `ahead` frames after the last one counted in `missed`:
        the last box moved on by the velocity."""
        x, y, w, h = self.box
        steps = self.missed + ahead
        return (x + self.velocity[0] * steps, y + self.velocity[1] * steps, float(w), float(h))


def _probabilities(face: FaceResult) -> dict[str, float]:
    # A result built from a label and confidence alone (no probabilities): that is all there is.
    return dict(face.probabilities) if face.probabilities else {face.best: face.confidence}


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _centre_shift(expected: Sequence[float], box: Sequence[float]) -> float:
    """Distance between the centres, in units of the expected face's size."""
    dx = (expected[0] + expected[2] / 2) - (box[0] + box[2] / 2)
    dy = (expected[1] + expected[3] / 2) - (box[1] + box[3] / 2)
    return math.hypot(dx, dy) / max(1.0, math.sqrt(expected[2] * expected[3]))


def _outside(box: Sequence[float], frame_hw: tuple[int, int]) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return not (0 <= cx < frame_hw[1] and 0 <= cy < frame_hw[0])


class PeopleCounts:
    """Tracks per label: in total, over the last minute and over the last hour.

    A track counts once it has `min_frames` frames, at the time it was first seen, under its
    current label (an open track's label may still change). Thread-safe: the live loop
    updates it, a web server's thread reads `snapshot()`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: dict[int, tuple[float, str]] = {}  # track id -> (first seen, label), last hour
        self._older: collections.Counter[str] = collections.Counter()  # labels of tracks over an hour old
        self._latest = 0.0  # the newest timestamp seen: "now" for the windows

    def set_label(self, track: int, first_seen: float, label: str, now: float) -> None:
        with self._lock:
            self._recent[track] = (first_seen, label)
            self._latest = max(self._latest, now)
            if len(self._recent) > 64:
                self._forget_old()

    def _forget_old(self) -> None:
        # Tracks first seen over an hour ago only count in the total any more.
        old = [t for t, (seen, _) in self._recent.items() if seen < self._latest - HOUR_S]
        for t in old:
            self._older[self._recent.pop(t)[1]] += 1

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """{"total": {label: n}, "last_minute": {...}, "last_hour": {...}, "at": timestamp}."""
        with self._lock:
            now = self._latest if now is None else now
            recent = list(self._recent.values())
            total = collections.Counter(self._older)
        total.update(label for _, label in recent)
        minute = collections.Counter(label for seen, label in recent if seen >= now - MINUTE_S)
        hour = collections.Counter(label for seen, label in recent if seen >= now - HOUR_S)
        return {"at": round(now, 3), "total": dict(total), "last_minute": dict(minute), "last_hour": dict(hour)}

    def line(self) -> str:
        """For the exit summary: `4 tracks (man 2, woman 1; unsure 1)`."""
        total = self.snapshot()["total"]
        n = sum(total.values())
        unsure = total.pop(UNSURE, 0)
        labels = ", ".join(f"{label} {count}" for label, count in sorted(total.items()))
        if unsure:
            labels += ("; " if labels else "") + f"{UNSURE} {unsure}"
        return f"{n} track{'' if n == 1 else 's'}" + (f" ({labels})" if labels else "")


class PersonTracker:
    """Track ids and per-track answers for the faces of one video stream, fed frame by frame.

    `update()` once per processed frame, in order; `finish()` once at the end. Ended tracks'
    events wait in order until `take_ended()` hands them over (the live loop passes them to its
    event sinks after every frame); confirmed tracks' labels go to `counts`. A track whose
    mean probability of its most probable class is below `min_confidence` (the classifier's
    threshold; 0: never) is labelled UNSURE.
    """

    def __init__(
        self,
        *,
        counts: PeopleCounts | None = None,
        max_missed: int = DEFAULT_MAX_MISSED,
        min_frames: int = DEFAULT_MIN_FRAMES,
        min_confidence: float = 0.0,
    ) -> None:
        self.counts = counts
        self.min_confidence = min_confidence
        self._ended: list[TrackEvent] = []
        self.max_missed = max_missed
        self.min_frames = min_frames
        self._open: list[_Track] = []
        self._next_id = 1
        self._frame = 0  # frames seen

    def update(
        self,
        timestamp: float,
        faces: Sequence[FaceResult],
        frame_hw: tuple[int, int] | None = None,
        detected: Sequence[bool] | None = None,
    ) -> tuple[FaceTrack, ...]:
        """Match this frame's faces to the tracks; per face, its track and the track's answer.

        `frame_hw` (height, width): a missed track expected outside the frame ends at once.
        `detected`: per face, whether the detector found it on this frame (else it was carried
        over); None: all detected."""
        self._frame += 1
        assigned = self._associate([f.box for f in faces])
        views = []
        seen_now: set[int] = set()
        for i, (face, track) in enumerate(zip(faces, assigned)):
            probs = _probabilities(face)
            if track is None:
                track = _Track(self._next_id, face.box, timestamp, timestamp, probs, largest_box=face.box)
                self._next_id += 1
                self._open.append(track)
            else:
                self._extend(track, face, probs, timestamp)
            if detected is None or detected[i]:
                self._anchor(track)
            seen_now.add(track.id)
            label, best, confidence, _ = track.answer(self.min_confidence)
            views.append(FaceTrack(track.id, label, confidence, track.frames, best))
            if self.counts is not None and track.frames >= self.min_frames:
                self.counts.set_label(track.id, track.first_seen, label, timestamp)
        still_open = []
        for track in self._open:
            if track.id not in seen_now:
                track.missed += 1
                if track.missed > self.max_missed or (frame_hw is not None and self._left(track, frame_hw)):
                    self._end(track)
                    continue
            still_open.append(track)
        self._open = still_open
        return tuple(views)

    def finish(self) -> None:
        """End every open track (the run is over)."""
        for track in self._open:
            self._end(track)
        self._open = []

    @property
    def open_tracks(self) -> int:
        return len(self._open)

    def _left(self, track: _Track, frame_hw: tuple[int, int]) -> bool:
        """Whether a missed track's person has walked out of the frame."""
        if _outside(track.expected(ahead=0), frame_hw):
            return True
        x, y, w, h = track.box
        at_edge = x <= EDGE_PX or y <= EDGE_PX or x + w >= frame_hw[1] - EDGE_PX or y + h >= frame_hw[0] - EDGE_PX
        return at_edge and track.missed > EDGE_MISSED

    def _associate(self, boxes: Sequence[Box]) -> list[_Track | None]:
        """Per box, the open track it continues, or None; greedy, best overlap first."""
        candidates = []
        for ti, track in enumerate(self._open):
            expected = track.expected()
            for bi, box in enumerate(boxes):
                overlap = _iou(expected, box)
                shift = _centre_shift(expected, box)
                if overlap >= MIN_IOU or shift <= MAX_CENTRE_SHIFT + SHIFT_GROWTH * track.missed:
                    candidates.append((-overlap, shift, ti, bi))
        candidates.sort()
        out: list[_Track | None] = [None] * len(boxes)
        taken: set[int] = set()
        for _, _, ti, bi in candidates:
            if ti in taken or out[bi] is not None:
                continue
            taken.add(ti)
            out[bi] = self._open[ti]
        return out

    def _anchor(self, track: _Track) -> None:
        """A detected box: the velocity from the last detected one to this one."""
        x, y, w, h = track.box
        cx, cy = x + w / 2, y + h / 2
        if track.anchor is not None and track.anchor[0] < self._frame:
            frame, ax, ay = track.anchor
            steps = self._frame - frame
            a = VELOCITY_SMOOTHING
            track.velocity = (a * (cx - ax) / steps + (1 - a) * track.velocity[0], a * (cy - ay) / steps + (1 - a) * track.velocity[1])
        track.anchor = (self._frame, cx, cy)

    @staticmethod
    def _extend(track: _Track, face: FaceResult, probs: Mapping[str, float], timestamp: float) -> None:
        w1, h1 = face.box[2], face.box[3]
        track.box, track.last_seen, track.missed = face.box, timestamp, 0
        track.frames += 1
        for c, p in probs.items():
            track.prob_sum[c] = track.prob_sum.get(c, 0.0) + p
        if w1 * h1 > track.largest_box[2] * track.largest_box[3]:
            track.largest_box = face.box

    def _end(self, track: _Track) -> None:
        if track.frames < self.min_frames:
            return
        label, best, confidence, mean = track.answer(self.min_confidence)
        self._ended.append(TrackEvent(track.id, label, confidence, mean, track.first_seen, track.last_seen, track.frames, track.largest_box, best))

    def take_ended(self) -> list[TrackEvent]:
        """The events of the tracks that ended since the last call, oldest first."""
        ended, self._ended = self._ended, []
        return ended
