"""Reading the files gclf is handed: regular files only, opened without ever blocking, and their sha256.

Every file gclf reads because a user named it or a folder held it (images, models, detector
files, token files, configuration and credential files) is opened here. A FIFO with no writer
would block `open()` forever (and Ctrl-C with it), `/dev/zero` never ends, a socket cannot be
opened at all: each is refused at once, by name, with the error the caller asks for (an image
is skipped, a model ends the command, ...).

The path is checked before it is opened, so a device is never opened (opening one can have
effects of its own), and the open descriptor after, so a file swapped for something else in
between is still refused. The open is non-blocking, so not even that swap can hang it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from gclf.runtime.errors import GclfError, UsageError

# What each kind of non-regular file is called in a refusal.
_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def not_regular(mode: int) -> str | None:
    """What a file of this `st_mode` is, when it is not a regular file ("a named pipe (FIFO)", ...)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _refusal(path: str | os.PathLike, kind: str, error: type[GclfError]) -> GclfError:
    return error(f"{path}: {kind}, not a regular file (gclf reads only regular files)")


def open_regular_file(path: str | os.PathLike, *, error: type[GclfError] = UsageError) -> BinaryIO:
    """`path` opened for reading in binary mode, if it is a regular file (symbolic links are
    followed); anything else, or a file that cannot be opened, is `error` naming the path,
    raised at once."""
    try:
        kind = not_regular(os.stat(path).st_mode)
    except OSError as exc:
        raise error(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if kind:
        raise _refusal(path, kind, error)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:  # e.g. ENXIO: swapped for a socket since the stat
        raise error(f"{path}: cannot read file ({exc.strerror or exc})") from None
    try:
        kind = not_regular(os.fstat(fd).st_mode)
        if kind:
            raise _refusal(path, kind, error)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # reads of a regular file never wait; some network file systems honour the flag anyway
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, *, max_bytes: int, error: type[GclfError] = UsageError) -> bytes:
    """The bytes of the regular file `path` (`open_regular_file`); a file of more than
    `max_bytes` is `error` naming it, found without reading more than that."""
    with open_regular_file(path, error=error) as fh:
        try:
            data = fh.read(max_bytes + 1)
            size = os.fstat(fh.fileno()).st_size
        except OSError as exc:
            raise error(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: file too large ({max(size, len(data))} bytes; gclf reads at most {max_bytes} here)")
    return data


def require_regular_file(path: str | os.PathLike, *, error: type[GclfError] = UsageError) -> None:
    """Refuse `path` as `open_regular_file` would, for a file that a library opens by its path
    (onnxruntime's models): opened once here, and closed."""
    open_regular_file(path, error=error).close()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20, *, error: type[GclfError] = UsageError) -> str:
    """The sha256 (hex) of the regular file `path`, read in blocks of `chunk` bytes."""
    digest = hashlib.sha256()
    with open_regular_file(path, error=error) as fh:
        try:
            while block := fh.read(chunk):
                digest.update(block)
        except OSError as exc:
            raise error(f"{Path(path)}: cannot read file ({exc.strerror or exc})") from None
    return digest.hexdigest()
