"""Drawing a frame's results onto the frame: a box, label and confidence per face, and the FPS."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from gclf.runtime.labels import UNSURE

if TYPE_CHECKING:
    from gclf.runtime.live.frames import FrameResult

FONT = cv2.FONT_HERSHEY_SIMPLEX
BOX_COLOUR = (0, 200, 0)  # BGR
UNSURE_COLOUR = (0, 165, 255)  # BGR amber: an answer below the confidence threshold
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
    thick = max(2, round(2 * scale))
    for i, face in enumerate(result.faces):
        x, y, bw, bh = face.box
        whole = (bw, bh) == (w, h)
        # The person's answer over all their frames (steady), else this frame's own.
        if result.tracks is not None:
            track = result.tracks[i]
            label, best, confidence, suffix = track.label, track.top, track.confidence, f" #{track.id}"
        else:
            label, best, confidence, suffix = face.label, face.best, face.confidence, ""
        unsure = label == UNSURE
        if not whole:
            # A box carried over by the tracker (not detected on this frame) is drawn thinner.
            carried = result.detected is not None and not result.detected[i]
            colour = UNSURE_COLOUR if unsure else BOX_COLOUR
            cv2.rectangle(bgr, (x, y), (x + bw - 1, y + bh - 1), colour, max(1, thick // 2) if carried else thick)
        # Above the box if there is room, else inside it; the whole frame's label goes under the FPS.
        org = (8, 2 * line_h) if whole else (x + 2, y - 6 if y >= line_h else y + line_h)
        # Unsure keeps its most probable class in view: "unsure (woman 0.61)".
        text = f"{UNSURE} ({best} {confidence:.2f}){suffix}" if unsure else f"{label} {confidence:.2f}{suffix}"
        _text(bgr, text, org, scale)
    _text(bgr, f"{result.fps:.1f} FPS", (8, line_h), scale)
    return bgr
