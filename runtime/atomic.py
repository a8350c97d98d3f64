"""Writing files so that a crash never leaves a broken one: each write goes to a temporary
file beside its destination and replaces it in one rename.

Torch-free so that training, export and the runtime share it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Callable, Iterator

from gclf.runtime.errors import OutputWriteError


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
