"""The face detector a faces model was trained with, copied beside the exported model.

A model trained on YuNet crops needs that very YuNet file (its sha256 is in the model's
`gclf.training` "face_crop"); the runtime looks for it beside the model first
(gclf.runtime.faces.choice), checked by the one trust rule of every detector file. With the
file beside it, the export folder is all a device needs. The copy keeps the recorded file
name; nothing is downloaded here: the file is the one training used, or the cache's copy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gclf.runtime.atomic import write_bytes_atomic
from gclf.runtime.errors import GclfError
from gclf.runtime.faces.models import MAX_DOWNLOAD_BYTES, cache_dir
from gclf.runtime.faces.spec import FaceCropSpec
from gclf.runtime.files import read_regular_file
from gclf.runtime.log import Log
from gclf.runtime.onnx_metadata import read_metadata


def recorded_detector(model_path: Path) -> FaceCropSpec | None:
    """The detector the model file records it was trained with (None: none recorded)."""
    training = json.loads(read_metadata(model_path).get("gclf.training", "{}"))
    crop = training.get("face_crop")
    return None if crop is None else FaceCropSpec.from_dict(crop)


def detector_candidates(recorded: FaceCropSpec, train_face_crop: str | None) -> list[Path]:
    """Where the recorded file may be, in order: the file training was given
    (gclf-train --face-crop PATH), then gclf's face-model cache (--face-crop yunet)."""
    given = [Path(train_face_crop)] if train_face_crop and train_face_crop not in ("none", "haar", "yunet") else []
    return given + [cache_dir() / recorded.model_file]


def bundle_detector(model_path: Path, train_face_crop: str | None, log: Log) -> bool | None:
    """Copy the recorded YuNet file beside `model_path` under its recorded name; True when it is
    there afterwards, False when no file with the recorded sha256 was found (a warning says
    what a device then needs), None when there is nothing to copy (no detector recorded, or
    Haar, whose cascade ships with OpenCV)."""
    recorded = recorded_detector(model_path)
    if recorded is None or recorded.kind != "yunet":
        return None
    dest = model_path.parent / recorded.model_file
    for source in [dest, *detector_candidates(recorded, train_face_crop)]:
        data = _read_if_pinned(source, recorded.model_sha256)
        if data is None:
            continue
        if source != dest:
            write_bytes_atomic(dest, data)
            dest.chmod(0o644)  # a device's service user reads the model folder's files
        log(f"face detector: {dest} (sha256 {recorded.model_sha256[:12]}..., the one the model was trained with)")
        return True
    log(
        f"warning: the model was trained with the face detector {recorded.model_file} (sha256 {recorded.model_sha256[:12]}...), "
        f"which was not found to copy beside it; a device needs that file beside the model or in gclf's face-model cache"
    )
    return False


def _read_if_pinned(path: Path, sha256: str) -> bytes | None:
    """The bytes of the regular file `path` if their sha256 is `sha256`, else None."""
    try:
        data = read_regular_file(path, max_bytes=MAX_DOWNLOAD_BYTES)
    except (GclfError, OSError):
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None
