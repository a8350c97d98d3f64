"""A run folder: what it holds, and reading and writing it.

Run folder contents (all written atomically):
  manifest.json  the split: file lists, seed, fractions, skipped files, duplicates
  config.json    the options this run used
  history.csv    per-epoch loss and accuracy on train and validation
  best.pt        the network the run keeps (what gclf-export uses): the one with the lowest
                 validation loss, or the last epoch's with keep="last"
  last.pt        checkpoint after the last completed epoch, with the state --resume needs
  metrics.json   test-split accuracy, per-class precision/recall, confusion matrix
  training_progress.png, confusion_matrix.png, test_predictions.png, summary.md
                 figures and a Markdown summary for people (see gclf.train.reports);
                 without a test split only the progress plot and the summary

A run's images come either from a new scan and split (`scan_and_split`) or, for a run that
already exists, exactly as its manifest.json lists them (`read_run_data`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

from gclf.runtime.errors import BadDataError, UsageError
from gclf.runtime.faces import DEFAULT_FACE_MARGIN
from gclf.runtime.faces.crops import FaceCropper
from gclf.runtime.faces.spec import FaceCropSpec
from gclf.runtime.atomic import check_writable_folder, write_json_atomic, write_text_atomic
from gclf.runtime.log import Log
from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.checkpoint import RESUME_KEY, save_checkpoint
from gclf.train.config import TrainConfig
from gclf.train.image_cache import DiskImageCache, default_cache_root, working_size
from gclf.train.scan import SPLIT_NAMES, ImageStore, Sample, default_workers, ingest_files, scan_folders
from gclf.train.split import limit_per_class, manifest, split_samples


@dataclass
class RunData:
    """A run's fixed inputs: from a new scan and split, or re-read from its manifest.json."""

    spec: PreprocessSpec
    class_names: list[str]
    splits: dict[str, list[Sample]]
    store: ImageStore | DiskImageCache
    roots: list[str]  # the DATA folders, resolved
    face_crop: FaceCropSpec | None = None  # --face-crop: the detector that cropped every image


def face_cropper_of(config: TrainConfig) -> FaceCropper | None:
    """The detector crop `config` asks for (None: --face-crop none). Refuses face-crop options
    without --input-kind faces, in one sentence (exit 2), before anything is read."""
    if config.face_crop == "none":
        given = [flag for flag, used in (("--face-margin", config.face_margin != DEFAULT_FACE_MARGIN), ("--if-no-face", config.if_no_face != "whole")) if used]
        if given:
            raise UsageError(f"{', '.join(given)} only apply with --face-crop haar|yunet|PATH (detector crops of the training photos)")
        return None
    if config.input_kind != "faces":
        raise UsageError(f"--face-crop {config.face_crop} needs --input-kind faces: face crops are for a model that the runtime feeds face crops")
    return FaceCropper.create(config.face_crop, config.face_margin)


def _no_face_logger(log: Log, action: str) -> Log:
    what = "kept whole" if action == "whole" else "left out"
    return lambda path: log(f"no face found in {path}: {what}")


def spec_of(config: TrainConfig) -> PreprocessSpec:
    return PreprocessSpec(input_height=config.image_size, input_width=config.image_size)


# --image-cache's value that keeps every image in memory (gclf's first design) instead.
MEMORY_CACHE = "memory"


def make_store(config: TrainConfig, spec: PreprocessSpec) -> ImageStore | DiskImageCache:
    """The run's image store: the disk cache (--image-cache DIR, default the user cache), or
    every image in memory with --image-cache memory."""
    if config.image_cache == MEMORY_CACHE:
        return ImageStore(spec, int(config.memory_budget_gb * (1 << 30)))
    from gclf.train.augment import augment_config

    root = Path(config.image_cache).expanduser() if config.image_cache else default_cache_root()
    return DiskImageCache(root, spec, work_hw=working_size(spec, augment_config(config.augment, config.augment_options).enabled))


def resolve_workers(config: TrainConfig) -> int:
    return default_workers() if config.workers is None else config.workers


def _cache_line(store: ImageStore | DiskImageCache) -> str:
    if isinstance(store, DiskImageCache):
        return f"decoded {store.decodes} image(s), {store.hits} found in the image cache ({store.folder})"
    return f"decoded {store.decodes} image(s), kept in memory (--image-cache memory)"


def prepare_run_dir(out: Path) -> None:
    """A run never overwrites another run's files: the folder must be new or empty."""
    try:
        used = out.exists() and (not out.is_dir() or any(out.iterdir()))
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot read folder ({exc.strerror or exc})") from None
    if used:
        unfinished = (out / "config.json").is_file() and not (out / "metrics.json").is_file()
        hint = f", or continue this interrupted run with --resume {out}" if unfinished else ""
        raise UsageError(f"--out {out} already exists and is not empty; choose a new run folder{hint}")
    check_writable_folder(out)  # a read-only place fails now, not after the scan


def scan_and_split(config: TrainConfig, log: Log, face_crop: FaceCropper | None = None) -> tuple[RunData, dict]:
    """Scan the DATA folders, split them with the run's seed; returns the run's data and its
    manifest (what manifest.json will hold). With `face_crop` (face_cropper_of(config)) every
    image is its largest face, and the photos without one are listed."""
    spec = spec_of(config)
    store = make_store(config, spec)
    # Absolute paths, so manifest.json still finds the images from another working folder
    # (gclf-export, --resume).
    roots = [Path(p).absolute() for p in config.data]
    if face_crop is not None:
        log(f"cropping every photo to its largest face: {face_crop.spec.describe()}")
    scan = scan_folders(
        roots, store, on_skip=lambda p, r: log(f"skipped {p}: {r}"), workers=resolve_workers(config),
        transform=face_crop, no_face=config.if_no_face, on_no_face=_no_face_logger(log, config.if_no_face),
    )
    counts = scan.class_counts()
    log(f"found {len(scan.samples)} usable images in {len(scan.class_names)} classes: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    log(_cache_line(store))
    if scan.skipped:
        log(f"skipped {len(scan.skipped)} unreadable file(s) (listed above and in manifest.json)")
    if face_crop is not None:
        what = "kept whole" if config.if_no_face == "whole" else "left out (--if-no-face skip)"
        log(f"no face found in {len(scan.no_face)} photo(s), {what} (listed above and in manifest.json)")
    if scan.duplicate_groups:
        n_files = sum(len(g) for g in scan.duplicate_groups)
        log(f"{len(scan.duplicate_groups)} group(s) of identical files ({n_files} files): each group is kept inside one split")
    for group in scan.conflicts:
        log(f"warning: the same image is filed under different classes, excluded: {', '.join(group)}")
    splits = split_samples(scan, config.split, config.seed)
    if config.max_train_per_class is not None:
        # After the split, so val and test are the same images as a run on all the data.
        splits["train"] = limit_per_class(splits["train"], config.max_train_per_class, config.seed)
        log(f"training on at most {config.max_train_per_class} images per class (--max-train-per-class); validation and test unchanged")
    resolved = [str(Path(p).resolve()) for p in config.data]
    doc = manifest(scan, splits, seed=config.seed, fractions=None if scan.presplit else config.split, roots=resolved)
    if face_crop is not None:
        doc["face_crop"] = face_crop.spec.to_dict()
        doc["no_face"] = [{"path": p, "action": config.if_no_face} for p in scan.no_face]
    return RunData(spec, scan.class_names, splits, store, resolved, face_crop.spec if face_crop else None), doc


def write_new_run(config: TrainConfig, manifest_doc: dict) -> None:
    write_json_atomic(config.out / "manifest.json", manifest_doc)
    write_json_atomic(config.out / "config.json", config.to_dict())


def _read_run_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--resume: {path.parent} is not a gclf run folder (no {path.name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--resume: {path} cannot be read ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"--resume: {path} is not a JSON object")
    return value


def load_run_config(run_dir: Path) -> TrainConfig:
    """The options a run was started with (its config.json), with `out` set to `run_dir`
    (the folder may have been moved since)."""
    config = TrainConfig.from_dict(_read_run_json(run_dir / "config.json"), source=run_dir / "config.json")
    return dataclasses.replace(config, out=run_dir)


def read_run_data(run_dir: Path, config: TrainConfig, log: Log, *, only: tuple[str, ...] = SPLIT_NAMES) -> RunData:
    """The run's images, split exactly as its manifest.json says (a resumed run never
    re-splits: the folder may have changed). Every listed image must still be readable.
    `only` reads some splits (e.g. ("test",) to evaluate); the others stay empty. The images
    go through the run's image store, so a resumed run finds them in the image cache, and
    through the run's face crop (--face-crop), which must be the one the manifest records."""
    spec = spec_of(config)
    face_crop = face_cropper_of(config)
    path = run_dir / "manifest.json"
    doc = _read_run_json(path)
    try:
        class_names = [str(c) for c in doc["class_names"]]
        index = {name: i for i, name in enumerate(class_names)}
        presplit, roots = bool(doc["presplit"]), [str(r) for r in doc["data"]]
        # Manifest order is the order the new run trained in: the shuffling depends on it.
        entries = [(split, Path(file), index[label]) for split in SPLIT_NAMES if split in only for file, label in doc["splits"][split]]
        recorded = FaceCropSpec.from_dict(doc["face_crop"]) if doc.get("face_crop") is not None else None
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"--resume: {path} is not a gclf manifest ({type(exc).__name__}: {exc})") from None
    asked = face_crop.spec if face_crop is not None else None
    if asked != recorded:
        # The same detector file and settings, or the images would not be the ones the run trained on.
        was = recorded.describe() if recorded else "no face crops"
        now = asked.describe() if asked else "no face crops"
        raise UsageError(f"{path} records {was}, and this gclf would crop with {now}; use the same face detector file (--face-crop) the run was started with")
    store = make_store(config, spec)
    store.use_transform(face_crop)  # a listed photo without a face was kept whole at the scan: it is again
    splits: dict[str, list[Sample]] = {name: [] for name in SPLIT_NAMES}
    loaded = ingest_files([file for _, file, _ in entries], store, workers=resolve_workers(config))
    for (split, file, label), (digest, payload, reason, _) in zip(entries, loaded):
        if digest is None:
            raise BadDataError(f"{file}: {reason}; the run's manifest.json lists it, and resuming needs every image the run was split with")
        store.keep(file, digest, payload)
        splits[split].append(Sample(file, label, digest, split if presplit else None))
    log(f"read {len(entries)} images in {len(class_names)} classes, split as in manifest.json: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    log(_cache_line(store))
    return RunData(spec, class_names, splits, store, roots, recorded)


def _history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def write_history(run_dir: Path, history: list[dict]) -> None:
    write_text_atomic(run_dir / "history.csv", _history_csv(history))


def save_epoch(run_dir: Path, checkpoint: dict, resume_state: dict, history: list[dict], *, keep_this: bool) -> None:
    """An epoch's files: best.pt (when this epoch's network is the one to keep), last.pt with
    the training state, history.csv."""
    # best.pt before last.pt: last.pt is what --resume continues from, so a kill between the
    # two redoes this epoch, which writes the same best.pt again.
    if keep_this:
        save_checkpoint(run_dir / "best.pt", checkpoint)
    save_checkpoint(run_dir / "last.pt", {**checkpoint, RESUME_KEY: resume_state})
    write_history(run_dir, history)
