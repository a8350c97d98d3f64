"""Classifying a labelled folder-per-class set the way a user's photos are classified: through
`Classifier.predict_files`, faces first for a faces model (the model's recorded detector),
whole images otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from gclf.runtime.errors import BadDataError
from gclf.runtime.evaluation.outcomes import Outcomes
from gclf.runtime.faces import detectors
from gclf.runtime.faces.choice import resolve_face_detection
from gclf.runtime.listing import is_hidden, list_images
from gclf.runtime.log import warn
from gclf.runtime.metadata import use_face_detection

if TYPE_CHECKING:
    from gclf.runtime.classifier import Classifier


@dataclass(frozen=True)
class LabelledSet:
    """The photos of a folder-per-class set (files at any depth inside a class folder)."""

    root: Path
    paths: tuple[Path, ...]  # sorted by class folder, then path
    labels: tuple[str, ...]  # each photo's class folder name
    loose: tuple[Path, ...] = ()  # images directly in `root`: in no class, left out

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.labels))

    def counts(self) -> dict[str, int]:
        return {name: self.labels.count(name) for name in self.class_names}


def list_labelled(root: Path, *, on_folder_error: Callable[[Path, str], None] | None = None) -> LabelledSet:
    """The class folders of `root` and their images (hidden files and folders skipped)."""
    root = Path(root)
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p))
    except OSError as exc:
        raise BadDataError(f"{root}: cannot read folder ({exc.strerror or exc})") from None
    paths: list[Path] = []
    labels: list[str] = []
    for folder in folders:
        found = list_images(folder, on_error=on_folder_error)
        paths.extend(found)
        labels.extend([folder.name] * len(found))
    if not paths:
        raise BadDataError(f"{root}: no images in class folders; a labelled set has one sub-folder per class (e.g. {root}/cats/*.jpg)")
    return LabelledSet(root, tuple(paths), tuple(labels), tuple(list_images(root, recursive=False)))


def label_indices(data: LabelledSet, class_names: Sequence[str], model_name: str) -> np.ndarray:
    """Each photo's class as the model's class index; a class folder the model does not know
    is a `BadDataError` (its photos could never be answered right)."""
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in data.class_names if name not in index]
    if unknown:
        raise BadDataError(
            f"{data.root}: class folder{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"{'are' if len(unknown) > 1 else 'is'} not among {model_name}'s classes ({', '.join(class_names)})"
        )
    return np.array([index[name] for name in data.labels], dtype=np.int64)


def classify_set(
    clf: Classifier,
    data: LabelledSet,
    *,
    faces: bool | None = None,
    face_model: Path | str | None = None,
    batch_size: int = 16,
) -> Outcomes:
    """Classify every photo of `data` with the loaded model `clf`.

    A faces model (by its metadata, or `faces` where given) detects faces with the detector
    it records, or `face_model`; a photo's answer is its largest face's, and a photo without a face has
    none (no_face="skip", never the whole image: the figures are of the faces path). A file
    that cannot be read is left out and listed in `unreadable`. The probabilities are those
    `clf` answers with: its model's recorded calibration applied unless it was loaded with
    calibrated=False (the outcomes' `calibration` says which)."""
    model = clf.path
    labels = label_indices(data, clf.class_names, model.name)
    faces = use_face_detection(clf.metadata, faces)
    detector = None
    if faces:
        chosen, margin = resolve_face_detection(face_model, None, clf.metadata.face_crop, model_dir=model.parent, warn=warn)
        detector = detectors.make_detector(chosen)  # looked up on the module: a test may stand a detector in
        results = clf.predict_files(data.paths, batch_size=batch_size, faces=True, detector=detector, margin=margin, no_face="skip")
    else:
        results = clf.predict_files(data.paths, batch_size=batch_size)
    n_classes = len(clf.class_names)
    kept: list[int] = []
    rows: list[np.ndarray] = []
    unreadable: list[tuple[Path, str]] = []
    for i, result in enumerate(results):
        if result.error is not None:
            unreadable.append((result.path, result.error))
            continue
        answer = result.faces[0] if result.faces else result.prediction  # faces come largest first
        kept.append(i)
        if answer is None:
            rows.append(np.full(n_classes, np.nan))
        else:
            rows.append(np.array([answer.probabilities[c] for c in clf.class_names], dtype=np.float64))
    return Outcomes(
        model=model.name,
        variant=clf.metadata.variant,
        class_names=clf.class_names,
        paths=tuple(data.paths[i] for i in kept),
        labels=labels[kept] if kept else np.zeros(0, dtype=np.int64),
        probabilities=np.array(rows).reshape(len(kept), n_classes),
        faces=faces,
        detector=detector.name if detector is not None else None,
        unreadable=tuple(unreadable),
        calibration=f"recorded {clf.calibration.describe()}" if clf.calibration is not None else None,
    )
