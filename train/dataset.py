"""Reading a folder-per-class image set: decode every file once, report what is unusable.

Layout: DATA/<class>/<images...> (images in nested sub-folders of a class count for that
class). Unreadable files are reported by name and skipped; exact duplicates (same bytes)
are grouped so that the split can keep each group inside one split; a file whose copies
are filed under two classes is a labelling conflict, excluded and reported.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from gclf.runtime.errors import BadDataError, ImageDecodeError
from gclf.runtime.files import is_hidden, list_images
from gclf.runtime.decode import decode_image, read_image_bytes
from gclf.runtime.preprocess import PreprocessSpec, resize_to_input

SPLIT_NAMES = ("train", "val", "test")


class FaceCrop(Protocol):
    """What `scan_folders(face_crop=...)` takes (gclf.runtime.faces.FaceCropper): picklable,
    so it can go to worker processes; `key` identifies the crop (for cache keys)."""

    key: str

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """The RGB image cropped to its largest face; None when no face is found."""
        ...


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
    no_face: list[str] = field(default_factory=list)  # face_crop found no face (kept whole or left out: no_face action)

    def class_counts(self) -> dict[str, int]:
        counts = {name: 0 for name in self.class_names}
        for s in self.samples:
            counts[self.class_names[s.label]] += 1
        return counts


class ImageStore:
    """Decoded images kept in memory (up to a budget), so each file is decoded once.

    Images beyond the budget are decoded again from disk when needed, with the same
    function, so results do not depend on the budget. The resized-to-input copy used by
    evaluation is always kept (it is small: 150 KB at 224x224).

    With `face_crop` (gclf-train --face-crop) the store holds face crops: `add` is given the
    crop (see `crop`), and an image decoded again from disk is cropped the same way, so the
    training never sees an uncropped photo because of the budget. A photo without a face
    that was kept is kept whole, and the same detector finds no face in it again.
    """

    def __init__(self, spec: PreprocessSpec, memory_budget_bytes: int = 4 << 30, *, face_crop: FaceCrop | None = None) -> None:
        self.spec = spec
        self.budget = memory_budget_bytes
        self.face_crop = face_crop
        self.used = 0
        self._decoded: dict[Path, np.ndarray] = {}
        self._resized: dict[Path, np.ndarray] = {}

    def crop(self, rgb: np.ndarray) -> np.ndarray | None:
        """The image as this store keeps it: its largest face with `face_crop` (None: no
        face found), else the image itself."""
        return rgb if self.face_crop is None else self.face_crop(rgb)

    def _from_disk(self, path: Path) -> np.ndarray:
        rgb = decode_image(path)
        cropped = self.crop(rgb)
        return rgb if cropped is None else cropped

    def add(self, path: Path, rgb: np.ndarray) -> None:
        self._resized[path] = resize_to_input(rgb, self.spec)
        if self.used + rgb.nbytes <= self.budget:
            self._decoded[path] = rgb
            self.used += rgb.nbytes

    def decoded(self, path: Path) -> np.ndarray:
        img = self._decoded.get(path)
        return img if img is not None else self._from_disk(path)

    def resized(self, path: Path) -> np.ndarray:
        img = self._resized.get(path)
        return img if img is not None else resize_to_input(self._from_disk(path), self.spec)


def _class_folders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p))
    except OSError as exc:
        raise BadDataError(f"{root}: cannot read folder ({exc.strerror or exc})") from None


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
    store: ImageStore,
    *,
    on_skip: Callable[[str, str], None] | None = None,
    face_crop: FaceCrop | None = None,
    no_face: str = "whole",
    on_no_face: Callable[[str], None] | None = None,
) -> ScanResult:
    """Scan one or more DATA folders (same class names) and decode every image once.

    With `face_crop` each image is cropped to its largest face right after decoding (the
    store must be made with the same `face_crop`, for images it decodes again); a photo
    without a face is listed in `no_face` (and told to `on_no_face`), and kept whole
    (`no_face="whole"`) or left out ("skip").
    """
    if face_crop is not None and store.face_crop is not face_crop:
        raise ValueError("scan_folders: the store must be made with the same face_crop")
    entries: list[tuple[Path, str, str | None]] = []  # (file, class name, split)
    presplit_flags = set()
    unreadable: list[tuple[str, str]] = []  # sub-folders that could not be listed

    def folder_error(folder: Path, reason: str) -> None:
        # Reported at once, so it is seen even if the scan then fails for want of classes.
        unreadable.append((str(folder), f"cannot read folder ({reason}); its images are skipped"))
        if on_skip:
            on_skip(*unreadable[-1])

    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise BadDataError(f"{root}: no such folder")
        presplit = is_presplit(root)
        presplit_flags.add(presplit)
        split_dirs = [(root / s, s) for s in SPLIT_NAMES if (root / s).is_dir()] if presplit else [(root, None)]
        for split_dir, split in split_dirs:
            for class_dir in _class_folders(split_dir):
                for path in list_images(class_dir, on_error=folder_error):
                    entries.append((path, class_dir.name, split))
    if len(presplit_flags) > 1:
        raise BadDataError("cannot combine pre-split (train/val/test) folders with folder-per-class folders")
    class_names = sorted({name for _, name, _ in entries})
    if len(class_names) < 2:
        where = ", ".join(map(str, roots))
        raise BadDataError(
            f"{where}: found {len(class_names)} class folder(s) with images; gclf needs one sub-folder "
            "per class with at least 2 classes (e.g. DATA/cats/*.jpg and DATA/dogs/*.jpg)" + _loose_images_hint(roots)
        )
    index = {name: i for i, name in enumerate(class_names)}
    result = ScanResult(class_names, [], presplit=presplit_flags == {True})
    result.skipped.extend(unreadable)
    by_hash: dict[str, list[tuple[Path, int]]] = defaultdict(list)
    for path, name, split in entries:
        try:
            data = read_image_bytes(path)
            rgb = decode_image(data, name=str(path))
        except ImageDecodeError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            result.skipped.append((str(path), reason))
            if on_skip:
                on_skip(str(path), reason)
            continue
        if face_crop is not None:
            cropped = face_crop(rgb)
            if cropped is None:
                result.no_face.append(str(path))
                if on_no_face:
                    on_no_face(str(path))
                if no_face == "skip":
                    continue
            else:
                rgb = cropped
        digest = hashlib.sha256(data).hexdigest()
        store.add(path, rgb)
        result.samples.append(Sample(path, index[name], digest, split))
        by_hash[digest].append((path, index[name]))
    _find_duplicates(result, by_hash)
    counts = result.class_counts()
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise BadDataError(f"class folder(s) {', '.join(empty)} have no usable images (see skipped files above)")
    return result


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
