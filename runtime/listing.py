"""Finding input files: image listing and the command line's inputs.

Torch-free so that training, export and the runtime share it. Listing only names files:
reading them goes through `gclf.runtime.files` (regular files only), so a FIFO, socket or
device found in a folder under an image's name is refused by name when it is read, and the
other files are read as usual.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from gclf.runtime.errors import UsageError

# Extensions OpenCV decodes everywhere (its wheels bundle these codecs).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".pbm", ".pgm", ".ppm", ".pnm"}
)


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


OnFolderError = Callable[[Path, str], None]  # (folder, reason)


def list_images(folder: Path, *, recursive: bool = True, on_error: OnFolderError | None = None) -> list[Path]:
    """Image files under `folder`, sorted, skipping hidden files and folders.

    Symlinked folders are not followed (they can loop); symlinked files are kept. A folder
    that cannot be listed (permissions, a symlink loop) goes to `on_error(folder, reason)`;
    without `on_error` it is left out silently, as `os.walk` does.
    """

    def report(exc: OSError) -> None:
        if on_error is not None:
            on_error(Path(exc.filename or folder), exc.strerror or str(exc))

    found: list[Path] = []
    for root, dirs, files in os.walk(folder, onerror=report, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if not recursive:
            dirs[:] = []
        for name in files:
            path = Path(root) / name
            if not is_hidden(path) and path.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(path)
    return sorted(found)


def _warn_unreadable_folder(folder: Path, reason: str) -> None:
    print(f"warning: {folder}: cannot read folder ({reason}); its images are skipped", file=sys.stderr)


def expand_inputs(paths: Sequence[Path], *, on_error: OnFolderError = _warn_unreadable_folder) -> list[Path]:
    """Files as given (whatever their extension: the user named them) plus images in folders.

    A folder that cannot be listed is reported through `on_error` (default: a warning on
    stderr) and its images are skipped.
    """
    result: list[Path] = []
    for path in paths:
        try:
            is_dir = path.is_dir()
        except OSError:
            # Cannot even stat it (e.g. permissions): keep it as a file, so decoding reports it by name.
            result.append(path)
            continue
        if is_dir:
            result.extend(list_images(path, on_error=on_error))
        elif path.exists() or path.is_symlink():
            result.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return result
