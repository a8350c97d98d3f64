"""The decoded-image cache on disk: memory that does not grow with the number of photos.

Each usable photo becomes one small file of uint8 pixels, named by the sha256 of the photo's
bytes, in a folder named by everything that decides those pixels (the preprocessing spec's
resize fields, the working size, the optional transform's key, the OpenCV version, this
format's version). Later runs, `--resume`, and every process of a torchrun job find the files
there and decode nothing. The training process keeps only a path -> sha256 table (under 1 KB
a photo with its Sample); pixels are read from disk when a batch needs them, and the kernel's page
cache keeps the hot ones in memory, shared by every process and given back under pressure.

Each entry holds two copies of one photo:
  - the evaluation copy: `resize_to_input(decode_image(file), spec)`, exactly the runtime's
    preprocessing up to the float step (the contract, gclf.runtime.preprocess), so
    validation and test tensors are bit-identical to what the runtime computes;
  - the working copy augmentation starts from, when augmentation is on: the photo squashed to
    WORK_SCALE times the input size. Augmentation used to start from the full decoded photo,
    which is what made memory grow with the set; see WORK_SCALE for the size chosen.

Safety: an entry is written to a temporary file and renamed into place, and carries a magic
number and a CRC-32 of its pixels; a reader accepts only a file of the exact size whose
checksum matches, so a file cut short by a crash, a power loss (entries are not fsynced: the
checksum catches what a lost write leaves), a full disk or an edit is never read as pixels.
It is decoded again from the photo and rewritten instead. Processes that write the same entry
at once (torchrun ranks, two runs) each rename a complete file of the same bytes: no locks.

Reads are plain file reads, not a memory map: pages of a mapped file that a process touches
count in its resident memory (RSS), which would then grow over an epoch with the set size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from gclf.runtime.decode import decode_image
from gclf.runtime.errors import OutputWriteError
from gclf.runtime.atomic import write_json_atomic
from gclf.runtime.paths import gclf_home
from gclf.runtime.preprocess import PreprocessSpec, resize_to_input

# Bump when decoding or the entry layout changes: old entries then live in another folder.
CACHE_FORMAT = 1
MAGIC = b"GCLFIMG1"
# The same entry for a photo in which the transform (a face crop) found nothing, so it holds
# the whole photo: the scan reports it alike whether it decoded the photo or found it here.
MAGIC_NOTHING_FOUND = b"GCLFIMGW"
_CRC = struct.Struct("<I")

# The working copy's side, as a multiple of the input side. Augmentation crops first (the
# presets keep 70-100% of the area, aspect 3:4-4:3): a crop of the median area (85%) spans
# 92% of a side, so from a working copy at 1.25x input it is still downsampled (1.15x) to the
# input, as crops of the full photo always were; only crops near the presets' smallest area
# with a narrow aspect are upsampled, by at most ~1.1x. A larger copy would cost disk and
# read time (1.25^2 = 1.56x the evaluation copy) for detail the input size then discards.
WORK_SCALE = 1.25


def default_cache_root() -> Path:
    """`$GCLF_HOME/images` (gclf.runtime.paths.gclf_home: ~/.cache/gclf by default), beside
    the face models gclf.runtime.faces.models downloads."""
    return gclf_home() / "images"


def working_size(spec: PreprocessSpec, augmenting: bool) -> tuple[int, int] | None:
    """(height, width) of the working copy; None without augmentation (nothing needs it)."""
    if not augmenting:
        return None
    return (round(spec.input_height * WORK_SCALE), round(spec.input_width * WORK_SCALE))


Transform = Callable[[np.ndarray], "np.ndarray | None"]  # with a `key: str` attribute


class Entry(NamedTuple):
    """One photo's copies in the cache."""

    eval_copy: np.ndarray
    work: np.ndarray | None
    found: bool = True  # False: the transform (face crop) found nothing, so these are the whole photo


@dataclass(frozen=True)
class CacheLayout:
    """What decides an entry's pixels, and so the folder its entries live in."""

    spec: PreprocessSpec
    work_hw: tuple[int, int] | None
    transform_key: str = ""

    def key(self) -> dict[str, Any]:
        import cv2

        s = self.spec
        return {
            "format": CACHE_FORMAT,
            "eval_hw": [s.input_height, s.input_width],
            "work_hw": list(self.work_hw) if self.work_hw else None,
            # Only the fields that change pixels: mean/std are applied later, in float.
            "resize_mode": s.resize_mode, "interpolation": s.interpolation, "channel_order": s.channel_order,
            "grey_to_rgb": s.grey_to_rgb, "alpha": s.alpha, "depth_16bit": s.depth_16bit, "spec_version": s.version,
            "transform": self.transform_key,
            "opencv": cv2.__version__,  # the decoders and cv2.resize: bit-identity holds per version
        }

    def folder_name(self) -> str:
        return hashlib.sha256(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()[:20]

    @property
    def eval_shape(self) -> tuple[int, int, int]:
        return (self.spec.input_height, self.spec.input_width, 3)

    @property
    def work_shape(self) -> tuple[int, int, int] | None:
        return (*self.work_hw, 3) if self.work_hw else None

    @property
    def entry_bytes(self) -> int:
        pixels = int(np.prod(self.eval_shape)) + (int(np.prod(self.work_shape)) if self.work_shape else 0)
        return len(MAGIC) + pixels + _CRC.size


class DiskImageCache:
    """The image store of a training run, backed by the cache folder (see the module's docstring).

    The scan (gclf.train.scan) calls `ingest` in its worker processes and `keep` in the
    main process; training reads `resized(path)` (evaluation copy) and `working(path)`
    (augmentation's starting point). Picklable: DataLoader and scan workers get a copy.
    """

    def __init__(self, root: Path, spec: PreprocessSpec, *, work_hw: tuple[int, int] | None = None, transform: Transform | None = None) -> None:
        self.root = Path(root)
        self.spec = spec
        self.transform = transform
        self._set_layout(CacheLayout(spec, work_hw, getattr(transform, "key", "") if transform is not None else ""))
        self._sha: dict[Path, str] = {}
        self.decodes = 0  # photos decoded by this store's scans (cache misses)
        self.hits = 0  # photos found in the cache

    def use_transform(self, transform: Transform | None) -> None:
        """Set the transform applied after decoding (its `key` is part of the cache folder)."""
        if transform is not None and not isinstance(getattr(transform, "key", None), str):
            raise TypeError("a scan transform needs a `key` string naming what it does (it keys the image cache)")
        self.transform = transform
        self._set_layout(CacheLayout(self.spec, self.layout.work_hw, transform.key if transform is not None else ""))

    def _set_layout(self, layout: CacheLayout) -> None:
        self.layout = layout
        self.folder = self.root / layout.folder_name()
        # Per-read constants, worked out once: an entry is read for every training image.
        self._folder_str = str(self.folder)
        self._entry_bytes = layout.entry_bytes
        self._eval_n = int(np.prod(layout.eval_shape))
        self._work_n = int(np.prod(layout.work_shape)) if layout.work_shape else 0

    def prepare(self) -> None:
        """Create the cache folder (and its key.json, for people) before workers write in it."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for i in range(256):  # the entries' sub-folders (first two hex digits), made once
                (self.folder / f"{i:02x}").mkdir(exist_ok=True)
            if not (self.folder / "key.json").is_file():
                write_json_atomic(self.folder / "key.json", self.layout.key())
        except OSError as exc:
            raise OutputWriteError(f"cannot write the image cache in {self.root}: {exc.strerror or exc}; choose another place with --image-cache DIR") from None

    # -- the scan: workers build entries, the main process records them ---------------------

    def ingest(self, path: Path, data: bytes, sha256: str) -> tuple[bool, bool]:
        """Make sure the entry of this photo exists: (whether it had to be decoded (a miss),
        whether the transform found something). Runs in scan worker processes. Raises
        ImageDecodeError."""
        entry = self._read(sha256)
        if entry is not None:
            return False, entry.found
        entry = self._build(path, data)
        self._write(sha256, entry)
        return True, entry.found

    def keep(self, path: Path, sha256: str, decoded: bool) -> None:
        self._sha[Path(path)] = sha256
        if decoded:
            self.decodes += 1
        else:
            self.hits += 1

    # -- training reads ------------------------------------------------------------------------

    def resized(self, path: Path) -> np.ndarray:
        """The evaluation copy: equal to `resize_to_input(decode_image(path), spec)`."""
        return self._entry(Path(path)).eval_copy

    def working(self, path: Path) -> np.ndarray:
        """What augmentation starts from: the working copy (the evaluation copy without augmentation)."""
        eval_copy, work, _ = self._entry(Path(path))
        return eval_copy if work is None else work

    decoded = working  # the in-memory store's name for augmentation's starting point

    @property
    def pixel_bytes_in_memory(self) -> int:
        """Pixels this store holds in memory: none, whatever the number of photos."""
        return 0

    def __len__(self) -> int:
        return len(self._sha)

    # -- entries -------------------------------------------------------------------------------

    def entry_path(self, sha256: str) -> Path:
        return Path(self._entry_file(sha256))

    def _entry_file(self, sha256: str) -> str:
        return f"{self._folder_str}/{sha256[:2]}/{sha256}.img"

    def _build(self, path: Path, data: bytes) -> Entry:
        import cv2

        rgb = decode_image(data, name=str(path))
        found = True
        if self.transform is not None:
            out = self.transform(rgb)
            found = out is not None
            rgb = rgb if out is None else out  # nothing found: the whole photo (the scan decides)
        eval_copy = resize_to_input(rgb, self.spec)
        work = None
        if self.layout.work_hw is not None:
            h, w = self.layout.work_hw
            # INTER_AREA when shrinking (no aliasing of fine detail), linear when enlarging.
            shrinking = rgb.shape[0] * rgb.shape[1] >= h * w
            work = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        return Entry(eval_copy, work, found)

    def _write(self, sha256: str, entry: Entry) -> None:
        magic = MAGIC if entry.found else MAGIC_NOTHING_FOUND
        body = magic + b"".join(np.ascontiguousarray(c).tobytes() for c in entry[:2] if c is not None)
        dest = self._entry_file(sha256)
        tmp = f"{self._folder_str}/{sha256[:2]}/.{sha256}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            try:
                fh = open(tmp, "wb")
            except FileNotFoundError:  # its sub-folder was removed since prepare()
                os.makedirs(os.path.dirname(tmp), exist_ok=True)
                fh = open(tmp, "wb")
            with fh:
                fh.write(body + _CRC.pack(zlib.crc32(body)))
            os.replace(tmp, dest)  # a reader sees no file or the whole file
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise OutputWriteError(f"cannot write the image cache in {self.root}: {exc.strerror or exc}; choose another place with --image-cache DIR") from None

    def _read(self, sha256: str) -> Entry | None:
        """The entry's copies, or None if it is missing or not exactly a valid entry."""
        size = self._entry_bytes
        buf = bytearray(size + 1)  # one byte more: a longer file is no valid entry either
        try:
            with open(self._entry_file(sha256), "rb", buffering=0) as fh:
                n = fh.readinto(buf)
        except OSError:
            return None
        magic = bytes(buf[: len(MAGIC)])
        if n != size or magic not in (MAGIC, MAGIC_NOTHING_FOUND):
            return None
        body = memoryview(buf)[: size - _CRC.size]
        if _CRC.unpack_from(buf, size - _CRC.size)[0] != zlib.crc32(body):
            return None
        start = len(MAGIC)
        eval_copy = np.frombuffer(buf, np.uint8, self._eval_n, start).reshape(self.layout.eval_shape)
        work = None
        if self._work_n:
            work = np.frombuffer(buf, np.uint8, self._work_n, start + self._eval_n).reshape(self.layout.work_shape)
        return Entry(eval_copy, work, magic == MAGIC)

    def _entry(self, path: Path) -> Entry:
        sha256 = self._sha[path]
        entry = self._read(sha256)
        if entry is None:
            # Removed or damaged since the scan (a cache cleaner, a full disk): rebuilt from
            # the photo with the same functions, so the pixels are the same.
            from gclf.runtime.decode import read_image_bytes
            from gclf.runtime.errors import BadDataError

            data = read_image_bytes(path)
            if hashlib.sha256(data).hexdigest() != sha256:
                raise BadDataError(f"{path} has changed since the run scanned it; start a new run (or restore the file)")
            entry = self._build(path, data)
            self._write(sha256, entry)
        return entry
