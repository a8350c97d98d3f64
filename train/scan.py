"""Reading a folder-per-class image set: decode every file once, report what is unusable.

Layout: DATA/<class>/<images...> (images in nested sub-folders of a class count for that
class). Unreadable files are reported by name and skipped; exact duplicates (same bytes)
are grouped so that the split can keep each group inside one split; a file whose copies
are filed under two classes is a labelling conflict, excluded and reported.

Reading, hashing, decoding and resizing run in worker processes (`workers`), each photo
handed to the image store: `DiskImageCache` (gclf.train.image_cache: pixels on disk, memory
flat in the number of photos; what gclf-train uses) or `ImageStore` (every image in memory:
gclf's first design, kept for `--image-cache memory` and as the benchmark's baseline). A
store has `ingest(path, data, sha256)` (in a worker: decode, transform, resize; returns a
payload for the main process and whether the transform found what it looks for) and
`keep(path, sha256, payload)` (in the main process).

A transform (e.g. gclf-train --face-crop's detector crop) that finds nothing in a photo
leaves it whole; the stores remember that, and the scan lists the photo (`no_face`) and keeps
it whole or leaves it out (`no_face="whole"|"skip"`), so a later run that finds the photo in
the image cache reports it the same way.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from gclf.runtime.errors import BadDataError, ImageDecodeError
from gclf.runtime.labels import UNSURE, is_unsure
from gclf.runtime.listing import is_hidden, list_images
from gclf.runtime.decode import decode_image, read_image_bytes
from gclf.runtime.preprocess import PreprocessSpec, resize_to_input
from gclf.train.image_cache import Transform

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into the class list
    sha256: str
    split: str | None = None  # set when the folder is pre-split into train/val/test


@dataclass
class ScanResult:
    class_names: list[str]
    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    duplicate_groups: list[list[str]] = field(default_factory=list)  # same bytes, same class
    conflicts: list[list[str]] = field(default_factory=list)  # same bytes, different classes
    presplit: bool = False
    no_face: list[str] = field(default_factory=list)  # the transform (face crop) found nothing: kept whole or left out

    def class_counts(self) -> dict[str, int]:
        counts = {name: 0 for name in self.class_names}
        for s in self.samples:
            counts[self.class_names[s.label]] += 1
        return counts


class ImageStore:
    """Decoded images kept in memory (up to a budget), so each file is decoded once.

    Images beyond the budget are decoded again from disk when needed, with the same
    function, so results do not depend on the budget. The resized-to-input copy used by
    evaluation is always kept (150 KB at 224x224: memory grows with the number of photos,
    which is why gclf-train uses gclf.train.image_cache.DiskImageCache unless asked).
    """

    def __init__(self, spec: PreprocessSpec, memory_budget_bytes: int = 4 << 30, *, transform: Transform | None = None) -> None:
        self.spec = spec
        self.budget = memory_budget_bytes
        self.used = 0
        self.transform = transform
        self.decodes = 0
        self._decoded: dict[Path, np.ndarray] = {}
        self._resized: dict[Path, np.ndarray] = {}

    def use_transform(self, transform: Transform | None) -> None:
        self.transform = transform

    def prepare(self) -> None:
        """Nothing to set up before a scan."""

    def ingest(self, path: Path, data: bytes, sha256: str) -> tuple[np.ndarray, bool]:
        return self._transformed(decode_image(data, name=str(path)))

    def keep(self, path: Path, sha256: str, rgb: np.ndarray) -> None:
        self.decodes += 1
        self.add(path, rgb)

    def _transformed(self, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        """(the image as kept, whether the transform found something): a photo in which it
        found nothing is kept whole (the scan decides whether to use it)."""
        if self.transform is None:
            return rgb, True
        out = self.transform(rgb)
        return (rgb, False) if out is None else (out, True)

    def add(self, path: Path, rgb: np.ndarray) -> None:
        self._resized[path] = resize_to_input(rgb, self.spec)
        if self.used + rgb.nbytes <= self.budget:
            self._decoded[path] = rgb
            self.used += rgb.nbytes

    def decoded(self, path: Path) -> np.ndarray:
        img = self._decoded.get(path)
        return img if img is not None else self._transformed(decode_image(path))[0]

    working = decoded  # augmentation starts from the whole decoded photo

    def resized(self, path: Path) -> np.ndarray:
        img = self._resized.get(path)
        return img if img is not None else resize_to_input(self._transformed(decode_image(path))[0], self.spec)

    @property
    def pixel_bytes_in_memory(self) -> int:
        return self.used + sum(a.nbytes for a in self._resized.values())


# Fewer files than this are read in the calling process: starting worker processes (each
# imports numpy and OpenCV) costs more than decoding a few hundred small files.
POOL_MIN_FILES = 256
_worker_store: Any = None


def _init_worker(store: Any) -> None:
    import cv2

    global _worker_store
    _worker_store = store
    cv2.setNumThreads(1)  # the processes are the parallelism; threads on top would oversubscribe


class Ingested(NamedTuple):
    """One file through a store's `ingest`: sha256 None and `reason` when it is unusable."""

    sha256: str | None
    payload: Any
    reason: str | None
    found: bool = True  # False: the transform (face crop) found nothing; the photo is kept whole


def _ingest_one(store: Any, path: Path) -> Ingested:
    try:
        data = read_image_bytes(path)
        sha = hashlib.sha256(data).hexdigest()
        payload, found = store.ingest(path, data, sha)
        return Ingested(sha, payload, None, found)
    except ImageDecodeError as exc:
        return Ingested(None, None, str(exc).removeprefix(f"{path}: "))


def _ingest_in_worker(path: Path) -> Ingested:
    return _ingest_one(_worker_store, path)


def ingest_files(paths: Sequence[Path], store: Any, *, workers: int = 0) -> Iterator[Ingested]:
    """`_ingest_one` for every path, in order; in `workers` processes (0: in this one).

    Worker processes are spawned, not forked: a fork of a process whose OpenCV or torch
    threads are running can deadlock in the child. Results stream back in order (imap), so
    the main process never holds more than a few chunks of them.
    """
    store.prepare()
    if workers <= 0 or len(paths) < POOL_MIN_FILES:
        for path in paths:
            yield _ingest_one(store, path)
        return
    processes = min(workers, len(paths))
    chunk = max(1, min(64, len(paths) // (processes * 8)))
    with multiprocessing.get_context("spawn").Pool(processes, initializer=_init_worker, initargs=(store,)) as pool:
        yield from pool.imap(_ingest_in_worker, paths, chunksize=chunk)


def default_workers() -> int:
    """The CPU cores this process may use, at most 8, shared among the processes torchrun
    started on this machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    per_node = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(8, cores // per_node))


def _class_folders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p))
    except OSError as exc:
        raise BadDataError(f"{root}: cannot read folder ({exc.strerror or exc})") from None


def _refuse_reserved(class_dir: Path) -> None:
    """A class folder named `unsure` (any case) would be indistinguishable from the runtime's
    own answer below the confidence threshold: refused, whatever it holds."""
    if is_unsure(class_dir.name):
        raise BadDataError(
            f"{class_dir}: {UNSURE!r} is reserved for answers below the confidence threshold and cannot be a class; "
            "rename the folder or leave it out"
        )


def _loose_images_hint(roots: Sequence[Path]) -> str:
    """Images directly in a DATA folder are a common mistake: say where they were found."""
    loose = [root for root in roots if list_images(Path(root), recursive=False)]
    if not loose:
        return ""
    return f" (images directly in {', '.join(map(str, loose))} are not used: put them in one sub-folder per class)"


def is_presplit(root: Path) -> bool:
    """A folder whose sub-folders are train/ (required), val/ and test/ is pre-split."""
    names = {p.name for p in _class_folders(root)}
    return "train" in names and names <= set(SPLIT_NAMES)


def scan_folders(
    roots: Sequence[Path],
    store: Any,
    *,
    on_skip: Callable[[str, str], None] | None = None,
    workers: int = 0,
    transform: Transform | None = None,
    no_face: str = "whole",
    on_no_face: Callable[[str], None] | None = None,
) -> ScanResult:
    """Scan one or more DATA folders (same class names) and decode every image once.

    `store`: an `ImageStore` or a `gclf.train.image_cache.DiskImageCache`; `workers`: worker
    processes for reading, hashing, decoding and resizing (0: this process). `transform`, if
    given, is applied to each decoded image before it is resized and stored: a picklable
    object with a `key` string (part of the image cache's key) called as `transform(rgb)`,
    returning the image to keep or None when it finds nothing, e.g. gclf-train --face-crop's
    crop to the largest face. A photo in which it finds nothing is listed in `no_face` (and
    told to `on_no_face`), and kept whole (`no_face="whole"`) or left out ("skip"). The
    result does not depend on `workers`.
    """
    if no_face not in ("whole", "skip"):
        raise ValueError(f"no_face must be 'whole' or 'skip', not {no_face!r}")
    listed = _list_entries(roots, on_skip)
    class_names = _class_names(listed.entries, roots)
    result = ScanResult(class_names, [], presplit=listed.presplit)
    result.skipped.extend(listed.unreadable)
    store.use_transform(transform)
    by_hash = _ingest_entries(listed.entries, result, store, workers=workers, no_face=no_face, on_skip=on_skip, on_no_face=on_no_face)
    _find_duplicates(result, by_hash)
    empty = [name for name, n in result.class_counts().items() if n == 0]
    if empty:
        raise BadDataError(f"class folder(s) {', '.join(empty)} have no usable images (see skipped files above)")
    return result


@dataclass
class _Listed:
    entries: list[tuple[Path, str, str | None]]  # (file, class name, split or None)
    presplit: bool
    unreadable: list[tuple[str, str]]  # sub-folders that could not be listed, and why


def _list_entries(roots: Sequence[Path], on_skip: Callable[[str, str], None] | None) -> _Listed:
    """Every image file under the DATA folders with its class folder's name (and split, for
    pre-split folders); all roots must be laid out alike."""
    listed = _Listed([], False, [])
    presplit_flags = set()

    def folder_error(folder: Path, reason: str) -> None:
        # Reported at once, so it is seen even if the scan then fails for want of classes.
        listed.unreadable.append((str(folder), f"cannot read folder ({reason}); its images are skipped"))
        if on_skip:
            on_skip(*listed.unreadable[-1])

    for root in map(Path, roots):
        if not root.is_dir():
            raise BadDataError(f"{root}: no such folder")
        presplit = is_presplit(root)
        presplit_flags.add(presplit)
        split_dirs = [(root / s, s) for s in SPLIT_NAMES if (root / s).is_dir()] if presplit else [(root, None)]
        for split_dir, split in split_dirs:
            for class_dir in _class_folders(split_dir):
                _refuse_reserved(class_dir)
                listed.entries.extend((path, class_dir.name, split) for path in list_images(class_dir, on_error=folder_error))
    if len(presplit_flags) > 1:
        raise BadDataError("cannot combine pre-split (train/val/test) folders with folder-per-class folders")
    listed.presplit = presplit_flags == {True}
    return listed


def _class_names(entries: Sequence[tuple[Path, str, str | None]], roots: Sequence[Path]) -> list[str]:
    class_names = sorted({name for _, name, _ in entries})
    if len(class_names) < 2:
        where = ", ".join(map(str, roots))
        raise BadDataError(
            f"{where}: found {len(class_names)} class folder(s) with images; gclf needs one sub-folder "
            "per class with at least 2 classes (e.g. DATA/cats/*.jpg and DATA/dogs/*.jpg)" + _loose_images_hint(roots)
        )
    return class_names


def _ingest_entries(
    entries: Sequence[tuple[Path, str, str | None]],
    result: ScanResult,
    store: Any,
    *,
    workers: int,
    no_face: str,
    on_skip: Callable[[str, str], None] | None,
    on_no_face: Callable[[str], None] | None,
) -> dict[str, list[tuple[Path, int]]]:
    """Decode every entry once into `store` and `result` (skipped files, photos without a
    face); returns the kept files by content hash, for the duplicate check."""
    index = {name: i for i, name in enumerate(result.class_names)}
    by_hash: dict[str, list[tuple[Path, int]]] = defaultdict(list)
    loaded = ingest_files([path for path, _, _ in entries], store, workers=workers)
    for (path, name, split), (digest, payload, reason, found) in zip(entries, loaded):
        if digest is None:
            result.skipped.append((str(path), reason))
            if on_skip:
                on_skip(str(path), reason)
            continue
        if not found:
            result.no_face.append(str(path))
            if on_no_face:
                on_no_face(str(path))
            if no_face == "skip":
                continue
        store.keep(path, digest, payload)
        result.samples.append(Sample(path, index[name], digest, split))
        by_hash[digest].append((path, index[name]))
    return by_hash


def _find_duplicates(result: ScanResult, by_hash: dict[str, list[tuple[Path, int]]]) -> None:
    conflicted: set[str] = set()
    for digest, items in by_hash.items():
        if len(items) < 2:
            continue
        paths = [str(p) for p, _ in items]
        if len({label for _, label in items}) > 1:
            result.conflicts.append(paths)
            conflicted.add(digest)
        else:
            result.duplicate_groups.append(paths)
    if conflicted:
        # The same picture under two labels teaches nothing but noise: leave it out.
        result.samples = [s for s in result.samples if s.sha256 not in conflicted]
