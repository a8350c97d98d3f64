"""`gclf-infer MODEL PATHS...`: classify image files and folders, whole or face by face, and
print a table or JSON lines; the exit code says whether every file could be read. Imported by
the command only when files are given (it loads OpenCV and onnxruntime)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import click

from gclf.runtime.classifier import Classifier, FaceResult, Prediction
from gclf.runtime.cli.support import warn
from gclf.runtime.engine import DEFAULT_ENGINE, DEFAULT_PRECISION, describe
from gclf.runtime.errors import EXIT_BAD_DATA, EXIT_OK, EXIT_PARTIAL, BadDataError
from gclf.runtime.faces import detectors
from gclf.runtime.faces.choice import resolve_face_detection
from gclf.runtime.faces.detectors import FaceDetector, dropped_answers
from gclf.runtime.listing import expand_inputs
from gclf.runtime.metadata import use_face_detection


@dataclass(frozen=True)
class FileOptions:
    faces: bool | None  # None: follow the model's metadata
    face_model: Path | str | None  # a file, or "haar"/"yunet"; None: the model's, else today's default
    face_margin: float | None  # None: the model's training margin, else DEFAULT_FACE_MARGIN
    if_no_face: str | None  # None: not given ("whole")
    batch_size: int
    as_json: bool


def run_files_command(model: Path, paths: list[Path], opts: FileOptions, *, threads: int, engine: str = DEFAULT_ENGINE,
                      precision: str = DEFAULT_PRECISION, min_confidence: float | None = None) -> int:
    """`gclf-infer MODEL PATHS...`: classify files, whole or face by face; one row (table) or
    object (--json) per image, or per face. Returns the exit code. `min_confidence`: the
    Classifier's (None: the model's recorded threshold, if any)."""
    files = expand_inputs(paths)
    if not files:
        raise BadDataError("no image files found in " + ", ".join(map(str, paths)))
    clf = Classifier(model, threads=threads or None, engine=engine, precision=precision, min_confidence=min_confidence)
    if clf.threshold.origin != "none":  # a model without a threshold answers as it always did, silently
        click.echo(clf.threshold.describe("--min-confidence"), err=True)
    with_faces = use_face_detection(clf.metadata, opts.faces)
    if not with_faces:
        unused = [name for name, given in (("--face-model", opts.face_model is not None), ("--if-no-face", opts.if_no_face is not None)) if given]
        if unused:
            warn(f"{', '.join(unused)} not used: {model.name} classifies whole images (pass --faces to detect faces)")
        return _print_whole_images(clf, files, opts)
    face_model, margin = resolve_face_detection(opts.face_model, opts.face_margin, clf.metadata.face_crop, model_dir=model.parent, warn=warn)
    detector = detectors.make_detector(face_model)
    return _print_faces(clf, files, replace(opts, face_margin=margin), detector)


def _print_whole_images(clf: Classifier, files: list[Path], opts: FileOptions) -> int:
    n_ok = n_failed = 0
    width = max(len(str(f)) for f in files)
    if not opts.as_json:
        click.echo(f"{'image':<{width}}  {'label':<16} confidence")  # an unsure row: "unsure (woman)"
    for result in clf.predict_files(files, batch_size=opts.batch_size):
        if result.error is not None:
            n_failed += 1
            click.echo(f"skipped: {result.error}", err=True)
            continue
        n_ok += 1
        pred = result.prediction
        if opts.as_json:
            click.echo(json.dumps({"path": str(result.path), **_prediction_json(pred)}, allow_nan=False))  # NaN never reaches JSON
        else:
            click.echo(f"{str(result.path):<{width}}  {_label_text(pred):<16} {pred.confidence:.3f}")
    click.echo(f"{n_ok} classified, {n_failed} skipped ({clf.metadata.variant} model {clf.path.name} on {describe(clf.engine)})", err=True)
    return _exit_code(n_ok, n_failed)


def _print_faces(clf: Classifier, files: list[Path], opts: FileOptions, detector: FaceDetector) -> int:
    """One table row per face (largest first), or one JSON object per photo with its faces;
    a photo without a face says so, with the whole image's label where that fallback is on."""
    no_face = opts.if_no_face or "whole"
    n_ok = n_failed = n_faces = n_without = n_dropped = 0
    width = max(len(str(f)) for f in files)
    if not opts.as_json:
        click.echo(f"{'image':<{width}}  {'face':>4}  {'box x,y,w,h':<19} {'label':<16} confidence")
    results = clf.predict_files(
        files, batch_size=opts.batch_size, faces=True, detector=detector, margin=opts.face_margin, no_face=no_face
    )
    for result in results:
        if result.error is not None:
            n_failed += 1
            click.echo(f"skipped: {result.error}", err=True)
            continue
        n_ok += 1
        n_faces += len(result.faces)
        n_without += not result.faces
        n_dropped += result.detector_dropped
        if opts.as_json:
            record: dict = {"path": str(result.path), "faces": [{"box": list(f.box), **_prediction_json(f)} for f in result.faces]}
            if result.fallback is not None:
                record["fallback"] = result.fallback
                if result.prediction is not None:
                    record.update(_prediction_json(result.prediction))
            click.echo(json.dumps(record, allow_nan=False))
            continue
        for i, face in enumerate(result.faces, start=1):
            box = ",".join(map(str, face.box))
            click.echo(f"{str(result.path):<{width}}  {i:>4}  {box:<19} {_label_text(face):<16} {face.confidence:.3f}")
        if not result.faces:
            pred = result.prediction
            outcome = f"whole image: {_label_text(pred)} {pred.confidence:.3f}" if pred is not None else "not classified"
            click.echo(f"{str(result.path):<{width}}  {'-':>4}  no face found ({outcome})")
    fallback = "classified as whole images" if no_face == "whole" else "not classified"
    answers = f"; {dropped_answers(n_dropped)} (not finite, empty, outside the photo or a bad score)" if n_dropped else ""
    click.echo(
        f"{n_ok} read, {n_failed} skipped: {n_faces} face{'' if n_faces == 1 else 's'} classified, "
        f"{n_without} photo{'' if n_without == 1 else 's'} without a face ({fallback}); "
        f"{clf.metadata.variant} model {clf.path.name} on {describe(clf.engine)}, {detector.name} detector, margin {opts.face_margin:g}{answers}",
        err=True,
    )
    return _exit_code(n_ok, n_failed)


def _label_text(pred: Prediction | FaceResult) -> str:
    """The table's label: the class, or "unsure (woman)" keeping the most probable class in view."""
    return f"{pred.label} ({pred.best})" if pred.unsure else pred.label


def _prediction_json(pred: Prediction | FaceResult) -> dict:
    """label, then "best" (the most probable class) only where the label is unsure, its confidence, every probability."""
    return {
        "label": pred.label,
        **({"best": pred.best} if pred.unsure else {}),
        "confidence": round(pred.confidence, 6),
        "probabilities": {c: round(p, 6) for c, p in pred.probabilities.items()},
    }


def _exit_code(n_ok: int, n_failed: int) -> int:
    """0: every file read; 5: some could not be; 3: none could."""
    if not n_failed:
        return EXIT_OK
    return EXIT_PARTIAL if n_ok else EXIT_BAD_DATA


