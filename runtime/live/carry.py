"""Detection at the model's pace: run the face detector every N-th frame, carry the boxes between.

With an int8 classifier the face detector, not the model, bounds the live loop. A
face moves little from one frame to the next, so between two detections each box is moved
with the frame's content instead: a few corner points inside the box are followed to the next
frame with pyramidal Lucas-Kanade optical flow (`cv2.calcOpticalFlowPyrLK`, in every OpenCV
build, no contrib), and the box is shifted by their median motion and scaled by the median
change of their distances (the "median flow" idea). A box whose points do not follow (too
few corners, or points that do not come back to where they started when followed backwards)
is lost, and a lost box makes the detector run on that very frame: no frame goes without
boxes because tracking failed. A frame with no box also gets the detector, so a face that
comes into view is found on its first frame.

`BoxCarrier.faces(bgr)` says for each box whether it was detected on this frame or carried
over; the live loop passes that on to its JSON (`box_source`) and its picture (thinner box).

OpenCV is imported inside the functions (see gclf.runtime.faces.detectors).

Named apart from `people` on purpose: this module carries boxes between detections, it does
not know who is who; gclf.runtime.live.people gives the boxes identities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Sequence

from gclf.runtime.faces.detectors import DETECT_MAX_SIDE, Box, FaceDetector, downscaled, find_faces

if TYPE_CHECKING:
    import numpy as np

# The detector runs on every DEFAULT_DETECT_EVERY-th frame; benchmarks/track_bench.py measured
# the choice (docs/measurements.md, "The live loop").
DEFAULT_DETECT_EVERY = 3

FloatBox = tuple[float, float, float, float]  # x, y, width, height in the tracking copy's pixels


class CarriedBox(NamedTuple):
    box: Box  # x, y, width, height in the frame's pixels
    detected: bool  # True: the detector found it on this frame; False: carried over (tracked)


@dataclass
class CarryCounts:
    """What a BoxCarrier did so far (for benchmarks and the curious)."""

    frames: int = 0
    detections: int = 0  # frames on which the detector ran
    lost: int = 0  # of those, runs brought forward because a carried box was lost
    dropped: int = 0  # entries of the detector's answers dropped as unusable (faces.find_faces)


class FlowBoxMover:
    """Moves boxes from one grey frame to the next by sparse optical flow.

    Frames are grey copies of at most `max_side` pixels (the detector's working size): optical
    flow on 320x240 follows a face well and costs about a millisecond.
    """

    MAX_POINTS = 40  # corners followed per box
    MIN_POINTS = 6  # fewer surviving points than this: the box is lost
    MIN_SURVIVING = 0.5  # share of a box's points that must follow; fewer: lost
    FB_ERROR_PX = 1.0  # forward-backward error allowed per point, in the copy's pixels
    INNER = 0.8  # corners are taken from the box's inner part: its rim holds background
    WINDOW = (15, 15)
    LEVELS = 2  # pyramid levels: motion up to about 4x the window, in copy pixels

    def track(self, prev: np.ndarray, grey: np.ndarray, box: FloatBox) -> FloatBox | None:
        """`box` (in `prev`) moved to where its content is in `grey`; None if it is lost."""
        import cv2
        import numpy as np

        h, w = grey.shape[:2]
        x, y, bw, bh = box
        mx, my = bw * (1 - self.INNER) / 2, bh * (1 - self.INNER) / 2
        x0, y0 = max(0, int(x + mx)), max(0, int(y + my))
        x1, y1 = min(w, int(x + bw - mx + 1)), min(h, int(y + bh - my + 1))
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        corners = cv2.goodFeaturesToTrack(prev[y0:y1, x0:x1], self.MAX_POINTS, 0.01, max(2.0, min(bw, bh) / 12))
        if corners is None or len(corners) < self.MIN_POINTS:
            return None  # too little texture to follow: let the detector look again
        pts = (corners.reshape(-1, 2) + np.float32([x0, y0])).reshape(-1, 1, 2)
        params = dict(winSize=self.WINDOW, maxLevel=self.LEVELS)
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(prev, grey, pts, None, **params)
        back, st_back, _ = cv2.calcOpticalFlowPyrLK(grey, prev, nxt, None, **params)
        fb_error = np.linalg.norm((back - pts).reshape(-1, 2), axis=1)
        good = (st.ravel() == 1) & (st_back.ravel() == 1) & (fb_error < self.FB_ERROR_PX)
        if good.sum() < max(self.MIN_POINTS, self.MIN_SURVIVING * len(pts)):
            return None
        p0, p1 = pts.reshape(-1, 2)[good], nxt.reshape(-1, 2)[good]
        dx, dy = np.median(p1 - p0, axis=0)
        # Scale: the median ratio of the points' distances to each other after and before.
        i, j = np.triu_indices(len(p0), k=1)
        before = np.linalg.norm(p0[i] - p0[j], axis=1)
        after = np.linalg.norm(p1[i] - p1[j], axis=1)
        usable = before > 2.0
        scale = float(np.median(after[usable] / before[usable])) if usable.any() else 1.0
        if not 0.8 <= scale <= 1.25:
            return None  # a jump no face makes between two frames: the points went astray
        cx, cy = x + bw / 2 + float(dx), y + bh / 2 + float(dy)
        nw, nh = bw * scale, bh * scale
        moved = (cx - nw / 2, cy - nh / 2, nw, nh)
        # Mostly out of the picture: the face is leaving; the detector decides what is left.
        vx0, vy0 = max(0.0, moved[0]), max(0.0, moved[1])
        vx1, vy1 = min(float(w), moved[0] + nw), min(float(h), moved[1] + nh)
        if vx1 <= vx0 or vy1 <= vy0 or (vx1 - vx0) * (vy1 - vy0) < 0.5 * nw * nh:
            return None
        return moved


class BoxCarrier:
    """Faces frame by frame: the detector on every `detect_every`-th frame, tracking between.

    Also runs the detector at once when a carried box is lost, when the previous frame had no
    face, and when the frame size changes. `detect_every=1` is plain detection on every frame
    (no tracking, no extra cost). Holds the previous frame: one BoxCarrier per video stream,
    fed its frames in order (the live loop's preparation thread does).
    """

    def __init__(self, detector: FaceDetector, detect_every: int = DEFAULT_DETECT_EVERY, *, max_side: int = DETECT_MAX_SIDE) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be 1 or more, not {detect_every}")
        self.detector = detector
        self.detect_every = detect_every
        self.max_side = max_side
        self.counts = CarryCounts()
        self._tracker = FlowBoxMover()
        self._prev: np.ndarray | None = None  # grey tracking copy of the previous frame
        self._scale = 1.0  # full frame pixels per copy pixel
        self._boxes: list[FloatBox] = []  # in copy pixels
        self._since_detection = 0

    @property
    def name(self) -> str:
        return self.detector.name

    def faces(self, bgr: np.ndarray) -> list[CarriedBox]:
        """The faces in this frame (a BGR uint8 image), each detected here or carried over."""
        self.counts.frames += 1
        if self.detect_every == 1:
            return [CarriedBox(b, True) for b in self._detect(bgr)]
        grey, scale = self._grey(bgr)
        due = self._since_detection + 1 >= self.detect_every
        if not due and self._boxes and self._prev is not None and self._prev.shape == grey.shape:
            moved = [self._tracker.track(self._prev, grey, b) for b in self._boxes]
            if all(m is not None for m in moved):
                self._prev, self._boxes = grey, moved  # type: ignore[assignment]
                self._since_detection += 1
                return [CarriedBox(b, False) for b in self._to_frame(moved, bgr.shape[:2])]
            self.counts.lost += 1
        found = self._detect(bgr)
        self._prev, self._scale, self._since_detection = grey, scale, 0
        self._boxes = [(x / scale, y / scale, w / scale, h / scale) for x, y, w, h in found]
        return [CarriedBox(b, True) for b in found]

    def _detect(self, bgr: np.ndarray) -> list[Box]:
        found = find_faces(self.detector, bgr)
        self.counts.detections += 1
        self.counts.dropped += found.dropped
        return found.boxes

    def _grey(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        import cv2

        small, scale = downscaled(bgr, self.max_side)
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), scale

    def _to_frame(self, boxes: Sequence[FloatBox], frame_hw: tuple[int, int]) -> list[Box]:
        fh, fw = frame_hw
        out = []
        for x, y, w, h in boxes:
            x0, y0 = max(0, round(x * self._scale)), max(0, round(y * self._scale))
            x1, y1 = min(fw, round((x + w) * self._scale)), min(fh, round((y + h) * self._scale))
            out.append((x0, y0, max(1, x1 - x0), max(1, y1 - y0)))
        return out
