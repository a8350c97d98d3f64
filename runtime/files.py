"""Finding image files, and writing files so that a crash never leaves a broken one.

Torch-free so that training, export and the runtime share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from gclf.runtime.errors import OutputWriteError, UsageError

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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# Temporary files are ".<dest name>.<8 random characters>.tmp" beside their destination.
TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _write_error(dest: Path, exc: OSError, tmp: Path | None = None) -> OutputWriteError:
    reason = exc.strerror or str(exc)
    if exc.filename and str(exc.filename) not in (str(dest), str(tmp), str(dest.parent)):
        reason += f" ({exc.filename})"
    return OutputWriteError(f"cannot write {dest}: {reason}; any previous {dest.name} is unchanged")


def _create_temp(dest: Path) -> Path:
    """An empty new file beside `dest`. Created with mode 0o666 so the umask decides the final
    file's permissions, as for any file a program writes (mkstemp would force 0o600)."""
    while True:
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync_folder(folder: Path) -> None:
    # The rename survives a power loss only once the folder's entry is on disk too.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows cannot open a folder; the rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest` in one rename.

    On any exception the temporary file is removed and `dest` is untouched, so a reader
    sees either the old complete file or the new complete file, never a partial one. An
    `OSError` while writing (read-only folder, full disk) becomes an `OutputWriteError`
    naming `dest`. A process killed mid-write leaves at most a hidden `.*.tmp` file beside
    `dest` (see `remove_stale_temp_files`).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(dest)
    except OSError as exc:
        raise _write_error(dest, exc) from None
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # flush to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        _fsync_folder(dest.parent)
    except OSError as exc:
        raise _write_error(dest, exc, tmp) from None
    finally:
        with contextlib.suppress(OSError):  # FileNotFoundError once renamed
            tmp.unlink()


def check_writable_folder(folder: Path) -> None:
    """Fail now, with the folder's name, if files cannot be created in `folder` (read-only,
    permissions), rather than after minutes of work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _create_temp(folder / ".gclf-write-check").unlink()
    except OSError as exc:
        raise OutputWriteError(f"cannot write in {folder}: {exc.strerror or exc}") from None


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove temporary files that a killed process left in `folder` (never finished files)."""
    removed = []
    for path in sorted(Path(folder).glob(f".*{TEMP_SUFFIX}")):
        if _TEMP_NAME.match(path.name) and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


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
