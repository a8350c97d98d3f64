"""Whether and how gclf-infer detects faces: the command line's choice over the model's record."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gclf.runtime.cli_support import warn

if TYPE_CHECKING:
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.metadata import ModelMetadata


def face_detection(clf: Classifier, model: Path, face_model: Path | str | None, face_margin: float | None) -> tuple[Path | str, float]:
    """(--face-model, --face-margin) as given, else as the model records it was trained with
    (gclf-train --face-crop), else today's default: gclf.runtime.faces.resolve_face_detection."""
    from gclf.runtime.faces import resolve_face_detection

    return resolve_face_detection(face_model, face_margin, clf.metadata.face_crop, model_dir=model.parent, warn=warn)


def use_face_detection(metadata: ModelMetadata, override: bool | None) -> bool:
    """Whether to detect faces: the --faces/--no-faces override, else the model's metadata."""
    from gclf.runtime.metadata import DEFAULT_INPUT_KIND

    if override is not None:
        return override
    kind = metadata.input_kind
    if kind is None:
        warn(
            f"the model does not record whether it expects face crops or whole images (no input_kind); "
            f"treating it as {DEFAULT_INPUT_KIND} (pass --faces if it was trained on faces)"
        )
        kind = DEFAULT_INPUT_KIND
    return kind == "faces"
