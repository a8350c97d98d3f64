"""Which face detector and margin to use: an option given wins, else what the model records it
was trained with (gclf-train --face-crop), else today's default; and where a recorded
detector's file is looked for. gclf-infer, `Classifier` and gclf-infer --check share these rules
(`resolve_face_detection`, the one resolver)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from gclf.runtime.errors import GclfError, WeightsUnavailableError
from gclf.runtime.faces.crops import DEFAULT_FACE_MARGIN
from gclf.runtime.faces.detectors import default_face_model, haar_cascade_path
from gclf.runtime.faces.models import cache_dir, pinned_detector_file, yunet_model_path, yunet_source
from gclf.runtime.files import sha256_file

if TYPE_CHECKING:
    from gclf.runtime.faces.spec import FaceCropSpec


def resolve_face_margin(face_margin: float | None, recorded: FaceCropSpec | None) -> float:
    """The margin to crop with: the explicit one, else the model's training margin, else
    DEFAULT_FACE_MARGIN."""
    if face_margin is not None:
        return face_margin
    return recorded.margin if recorded is not None else DEFAULT_FACE_MARGIN


def resolve_face_detection(
    face_model: Path | str | None,
    face_margin: float | None,
    recorded: FaceCropSpec | None,
    *,
    model_dir: Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[Path | str, float]:
    """(face model, margin) to detect with: an explicit option wins, else what the model
    records it was trained with, else today's default (default_face_model, DEFAULT_FACE_MARGIN).

    A recorded YuNet is looked for by its file name in the model's folder and the face-model
    cache; a file found there goes through the one trust rule of every detector file
    (gclf.runtime.faces.models.pinned_detector_file: a private folder, no symbolic link, a
    regular file, the recorded sha256; exit 7 otherwise). Not found, it is never replaced by
    another detector: only a recorded file that is the pinned YuNet (gclf.runtime.faces.models) is fetched, and only into a cache that
    can be written (a service at boot may have neither network nor a writable home: no
    download is tried then). Anything else is a `WeightsUnavailableError` (exit 7) naming the
    file and where to put it. An explicit `face_model` path that is not the recorded file is
    used, with one sentence through `warn` (a device's unit names its detector by path).
    """
    margin = resolve_face_margin(face_margin, recorded)
    if face_model is not None:
        if warn is not None and recorded is not None and isinstance(face_model, Path):
            if recorded.kind == "haar":
                warn(f"the model was trained on crops by the Haar cascade and --face-model names the YuNet file {face_model}; "
                     "its crops may differ from training's (--face-model haar crops as in training)")
            else:
                _warn_if_not_recorded(face_model, recorded, warn)
        return face_model, margin
    if recorded is None:
        chosen = default_face_model()
        if chosen == "haar" and warn is not None:
            warn(HAAR_FALLBACK_WARNING)
        return chosen, margin
    if recorded.kind == "haar":
        path = haar_cascade_path()
        if warn is not None:
            _warn_if_not_recorded(path, recorded, warn)
        return "haar", margin
    return _recorded_yunet_file(recorded, model_dir), margin


# Said once per run when a faces model records no detector and YuNet is not at hand: Haar
# misses most faces that are not frontal and upright (docs/evaluation.md has the measurement).
HAAR_FALLBACK_WARNING = (
    "the model records no face detector and YuNet is not in gclf's cache, so faces are found by OpenCV's Haar cascade, "
    "which misses many faces YuNet finds: run once with --face-model yunet where there is a network (it is cached), "
    "or pass --face-model PATH"
)


def find_recorded_face_model(recorded: FaceCropSpec, model_dir: Path | None) -> tuple[Path | None, list[Path]]:
    """Where a recorded detector file is looked for, in order (beside the model, then gclf's
    face-model cache), and the first that holds it (None: in none of them). Nothing is
    downloaded; gclf-infer --check asks the same question."""
    folders = ([model_dir] if model_dir is not None else []) + [cache_dir()]
    # lexists: a link or a FIFO in the model's folder is found here, and refused by the trust rule.
    return next((d / recorded.model_file for d in folders if os.path.lexists(d / recorded.model_file)), None), folders


def _recorded_yunet_file(recorded: FaceCropSpec, model_dir: Path | None) -> Path:
    """The recorded YuNet's file: beside the model, in the cache, or (the pinned file only,
    into a writable cache) downloaded; see resolve_face_detection."""
    path, folders = find_recorded_face_model(recorded, model_dir)
    if path is not None:
        what = "the face-model cache" if path.parent == cache_dir() else "the model's folder"
        return pinned_detector_file(path, recorded.model_sha256, what=what)
    missing = (
        f"the model was trained on crops by YuNet file {recorded.model_file} (sha256 {recorded.model_sha256}), "
        f"which is not in {' or '.join(map(str, folders))}"
    )
    put_it = "copy that file beside the model, or pass --face-model PATH"
    if recorded.model_sha256 != yunet_source().sha256:
        raise WeightsUnavailableError(f"{missing}, and it is not the YuNet gclf can download: {put_it}")
    if not _writable(cache_dir()):
        raise WeightsUnavailableError(f"{missing}, and {cache_dir()} cannot be written to download it: {put_it}")
    try:
        return yunet_model_path()  # the pinned file: downloaded once
    except GclfError as exc:  # no network (exit 7), or the cache could not be written after all (exit 11)
        raise WeightsUnavailableError(f"{missing}, and it could not be downloaded: {put_it} ({exc})") from None


def _writable(folder: Path) -> bool:
    """Whether `folder` exists and can be written, or could be created (its nearest existing
    ancestor is a writable folder)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def _warn_if_not_recorded(path: Path, recorded: FaceCropSpec, warn: Callable[[str], None]) -> None:
    found = sha256_file(path) if path.is_file() else recorded.model_sha256
    if found != recorded.model_sha256:
        warn(
            f"the model was trained on crops by {recorded.kind} file {recorded.model_file} (sha256 {recorded.model_sha256[:12]}...) "
            f"and {path} is another file (sha256 {found[:12]}...); its crops may differ a little from training's"
        )
