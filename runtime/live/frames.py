"""What the live loop hands its sinks: a `FrameResult` per processed frame, and the run's
`LiveSummary` at the end. Plain data, so that sinks, the browser view and the systemd
notifier can name it without importing the loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gclf.runtime.errors import GclfError
from gclf.runtime.faces.detectors import dropped_answers
from gclf.runtime.labels import UNSURE

if TYPE_CHECKING:
    from gclf.runtime.classifier import FaceResult
    from gclf.runtime.live.people import FaceTrack


@dataclass(frozen=True)
class FrameResult:
    index: int  # the frame's position in its source
    timestamp: float  # capture time, seconds since the epoch
    faces: tuple[FaceResult, ...]
    fps: float  # frames processed per second, over the last few frames
    # Per face: True if the detector found its box on this frame, False if the box was carried
    # over from earlier frames by the tracker; None for whole frames (no detection).
    detected: tuple[bool, ...] | None = None
    # Per face: the person it belongs to and that track's answer so far (gclf.runtime.live.people);
    # None without tracking (whole frames).
    tracks: tuple[FaceTrack, ...] | None = None
    # Frames the feed had captured and dropped (the model had no time for them) by this one.
    dropped: int = 0
    # Seconds this frame took: the classifier (all its faces in one batch; None on a frame
    # without a face, where it did not run), and the face detector where it ran on this frame
    # (None: boxes carried over, or whole frames). For /metrics; not in the JSON lines.
    inference_s: float | None = None
    detection_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        faces = []
        for i, f in enumerate(self.faces):
            # "best" (the most probable class) only where the label is unsure: it is the label otherwise.
            face: dict[str, Any] = {"box": list(f.box), "label": f.label, **_best(f.label, f.best), "confidence": round(f.confidence, 6)}
            if self.detected is not None:
                face["box_source"] = BOX_DETECTED if self.detected[i] else BOX_CARRIED
            if self.tracks is not None:
                track = self.tracks[i]
                face.update(track=track.id, track_label=track.label)
                if track.label == UNSURE:
                    face["track_best"] = track.top
                face["track_confidence"] = round(track.confidence, 4)
            faces.append(face)
        return {"timestamp": round(self.timestamp, 3), "frame": self.index, "faces": faces, "fps": round(self.fps, 2)}


def _best(label: str, best: str) -> dict[str, str]:
    return {"best": best} if label == UNSURE else {}


# A face's "box_source" in the JSON: found by the detector on this frame, or carried over.
BOX_DETECTED, BOX_CARRIED = "detected", "carried"


@dataclass(frozen=True)
class LiveSummary:
    processed: int
    dropped: int
    elapsed_s: float  # from the first frame taken to the last one done
    stopped_by: str  # "end of video x.avi", "q pressed", "interrupted", a lost camera's message
    failure: GclfError | None = None  # the source was lost: the run ends with its exit code
    interrupted: bool = False
    detector_dropped: int = 0  # entries of the face detector's answers dropped as unusable (faces.find_faces)

    @property
    def mean_fps(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        answers = f", {dropped_answers(self.detector_dropped)}" if self.detector_dropped else ""
        return (
            f"{self.processed} frame{'' if self.processed == 1 else 's'} processed, {self.dropped} dropped, "
            f"mean {self.mean_fps:.1f} FPS over {self.elapsed_s:.1f} s{answers}; stopped: {self.stopped_by}"
        )
