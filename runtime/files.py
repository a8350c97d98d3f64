"""Finding image files, and writing files so that a crash never leaves a broken one.

Torch-free so that training, export and the runtime share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from gclf.runtime.errors import UsageError

# Extensions OpenCV decodes everywhere (its wheels bundle these codecs).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".pbm", ".pgm", ".ppm", ".pnm"}
)


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def list_images(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Image files under `folder`, sorted, skipping hidden files and folders.

    Symlinked folders are not followed (they can loop); symlinked files are kept.
    """
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if not recursive:
            dirs[:] = []
        for name in files:
            path = Path(root) / name
            if not is_hidden(path) and path.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(path)
    return sorted(found)


def expand_inputs(paths: Sequence[Path]) -> list[Path]:
    """Files as given (whatever their extension: the user named them) plus images in folders."""
    result: list[Path] = []
    for path in paths:
        if path.is_dir():
            result.extend(list_images(path))
        elif path.exists() or path.is_symlink():
            result.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return result


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest` in one rename.

    On any exception the temporary file is removed and `dest` is untouched, so a reader
    sees either the old complete file or the new complete file, never a partial one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # flush to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(dest: Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(dest: Path, text: str) -> None:
    write_bytes_atomic(dest, text.encode("utf-8"))


def write_json_atomic(dest: Path, obj: Any) -> None:
    write_text_atomic(dest, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_atomic_with(dest: Path, writer: Callable[[Path], None]) -> None:
    """Call `writer(tmp_path)` and move the result into place atomically."""
    with atomic_path(dest) as tmp:
        writer(tmp)
