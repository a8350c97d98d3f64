"""What the browser view serves: the newest frame as the loop left it (`Snapshot`), the model's
description, `/latest`'s JSON body and the JPEG pictures, and the limits of the stream."""

from __future__ import annotations

from gclf.runtime.errors import install_hint

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from gclf.runtime.live.frames import FrameResult
    from gclf.runtime.live.network import StreamState

MAX_VIEWERS = 8  # concurrent /stream connections; more get 503 (each one costs a socket's buffers)
STREAM_MAX_FPS = 15.0  # JPEG encodes per second, all viewers together: a Pi's cores belong to the model
JPEG_QUALITY = 80
# A viewer must read each frame within this long of its write, else it is disconnected and
# frees its slot. What it has not read is followed through our socket and its receive buffer
# (gclf.runtime.serve.backlog), so however large its buffers, a viewer that stops reading is
# let go within 10 s; any link that shows video carries a frame in 5 s.
WRITE_TIMEOUT_S = 5.0
# /healthz answers 503 once no frame has come for this long: the live feed's own frame timeout
# (gclf.runtime.live.sources.FRAME_TIMEOUT_S), after which a camera counts as stalled.
STALLED_AFTER_S = 5.0
INSTALL_HINT = install_hint("serve")


@dataclass(frozen=True)
class ModelInfo:
    """What the page shows about the model."""

    name: str  # the file's name
    variant: str  # "fp32" or "int8"
    classes: tuple[str, ...]
    min_confidence: float = 0.0  # answers below it are "unsure" (0: never)


@dataclass(frozen=True)
class Snapshot:
    """The newest processed frame as the loop left it. The arrays are never written again
    (each frame from a source is a new array), so server threads read them without a lock."""

    seq: int  # frames written to the sink so far, this one included (1, 2, ...)
    result: "FrameResult"
    image: "np.ndarray | None"  # annotated BGR; None while nobody watched, or between pictures
    dropped: int  # the feed's dropped-frame count when this frame was written


def latest_json(snapshot: Snapshot | None, model: ModelInfo) -> dict[str, Any]:
    """/latest's body: a --headless line's fields for the newest frame, plus what the page
    shows (dropped frames, frames processed, the model). Before the first frame the frame's
    fields are null."""
    if snapshot is None:
        body: dict[str, Any] = {"timestamp": None, "frame": None, "faces": [], "fps": None, "dropped": 0, "processed": 0}
    else:
        body = snapshot.result.to_json()
        body.update(dropped=snapshot.dropped, processed=snapshot.seq)
    body["model"] = {"name": model.name, "variant": model.variant, "classes": list(model.classes), "min_confidence": model.min_confidence}
    return body


def status_json(name: str | None, camera: StreamState | None) -> dict[str, Any]:
    """/latest's "camera": its name, and a network camera's state (up, since when it is down,
    outages, ..., and the line the page shows: "camera down since ...")."""
    body: dict[str, Any] = {"name": name}
    if camera is not None:
        body.update(camera.to_json(), line=camera.line())
    return {"camera": body}


def encode_jpeg(image: "np.ndarray", quality: int = JPEG_QUALITY) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} frame as JPEG")
    return buf.tobytes()
