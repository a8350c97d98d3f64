"""Face detector model files: `--face-model haar|yunet|PATH`, and YuNet's download cache.

Haar needs no file (its cascade ships inside the opencv wheel); YuNet is the default only once
its file is in the cache (gclf.runtime.faces.default_face_model), and nothing is ever
downloaded unless asked for. `--face-model yunet` fetches OpenCV Zoo's YuNet
once into a user cache and checks its sha256, the way torchvision caches weights in
`$TORCH_HOME/hub/checkpoints`: the cache is `$GCLF_HOME/face_models`, `$GCLF_HOME` defaulting
to `$XDG_CACHE_HOME/gclf`, i.e. `~/.cache/gclf/face_models/`. The download goes to a temporary
file beside its destination, is hashed while it is written, and is renamed into place only if
the sha256 is the pinned one: the cache never holds a partial or a foreign file.

The cache is trusted only as far as it is private: a folder that another user owns or may
write to is refused (they could swap the file between its check and its use), a cached file
that is a symbolic link is refused, and the bytes that were hashed are the bytes OpenCV loads
(`model_bytes`: from memory, never by opening the path again). A download is capped in size
(`MAX_DOWNLOAD_BYTES`) and in total time (`DOWNLOAD_DEADLINE_S`, plus one read's timeout).

Only the standard library (urllib) is used: the runtime must stay light for a Raspberry Pi.
Nothing here imports OpenCV: the command line reads DETECTOR_NAMES from here for `--help`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from gclf.runtime.errors import UsageError, WeightsUnavailableError
from gclf.runtime.files import read_regular_file
from gclf.runtime.atomic import atomic_path
from gclf.runtime.paths import gclf_home


@dataclass(frozen=True)
class ModelSource:
    """One pinned model file: where to fetch it, the name it gets in the cache, its sha256."""

    filename: str
    url: str
    sha256: str  # hex, lower case
    size: int | None = None  # bytes; only for the message when a download is the wrong file


# OpenCV Zoo's YuNet, 2023mar release (MIT licence, opencv/opencv_zoo,
# models/face_detection_yunet/). The file is stored with Git LFS: the URL is GitHub's `raw`
# form at a fixed commit, which redirects to media.githubusercontent.com and serves the file
# itself (raw.githubusercontent.com would serve the 131-byte LFS pointer, which then fails the
# sha256 check). Where the sha256 and size come from: the LFS pointer of that path in the
# opencv_zoo git history, at commit 966be4cb6eefc2a4f586ed0581bf4bbaa2533070 (2025-05-29) and
# unchanged since commit c43cd247931e9e2773de3bfc7d5e2246c9f45b6f (2023-09-18):
#   "oid sha256:8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4", "size 232589".
# An LFS pointer's oid is the sha256 of the file's bytes, so this pins the exact upstream file.
# (The copy in ../shared/models, face_detection_yunet_2026may.onnx, is a later YuNet release:
# 229,738 bytes, sha256 ebafce4e...c22f0f0, not this file.)
YUNET_COMMIT = "966be4cb6eefc2a4f586ed0581bf4bbaa2533070"
YUNET = ModelSource(
    filename="face_detection_yunet_2023mar.onnx",
    url=f"https://github.com/opencv/opencv_zoo/raw/{YUNET_COMMIT}/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    size=232589,
)

# `GCLF_YUNET_URL` points the download elsewhere (a mirror, a file:// URL on a machine without
# internet); the sha256 stays pinned, so only the very same file is accepted from anywhere.
URL_ENV = "GCLF_YUNET_URL"
DOWNLOAD_TIMEOUT_S = 30.0  # each network read
DOWNLOAD_DEADLINE_S = 120.0  # the whole download (checked between reads)
MAX_DOWNLOAD_BYTES = 16 << 20  # YuNet is 230 KB: anything much larger is not it
_CHUNK = 1 << 16

# The bytes of each face-model file as they were read and hashed (verified against a pinned
# sha256, or read once for a user's PATH), keyed by path: what OpenCV is given, so a file
# swapped after its check is never the one loaded. A few hundred KB a file.
_LOADED: dict[Path, bytes] = {}


def cache_dir() -> Path:
    """Where downloaded face models live: `$GCLF_HOME/face_models` (see the module's docstring)."""
    return gclf_home() / "face_models"


def yunet_source() -> ModelSource:
    """The pinned YuNet file, with its URL replaced by `$GCLF_YUNET_URL` when that is set."""
    url = os.environ.get(URL_ENV)
    return replace(YUNET, url=url) if url else YUNET


def _default_notify(message: str) -> None:
    # Like torch.hub's "Downloading: ... to ...": a download is worth one line on stderr.
    print(message, file=sys.stderr)


def fetch_model(
    source: ModelSource,
    *,
    cache: Path | None = None,
    notify: Callable[[str], None] | None = _default_notify,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Path of `source`'s file in the cache, downloading it first if it is not there.

    A cached file is used only if its sha256 is the pinned one (hashing 230 KB costs about a
    millisecond); a damaged one is downloaded again. Raises `WeightsUnavailableError` (exit 7)
    when the file cannot be downloaded or the download is not the pinned file; in both cases
    nothing is left in the cache.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    dest = folder / source.filename
    cached = _read_cached(dest)
    damaged = cached is not None and hashlib.sha256(cached).hexdigest() != source.sha256
    if cached is not None and not damaged:
        _LOADED[dest] = cached
        return dest
    if notify is not None:
        notify(f"downloading {source.filename} from {source.url} to {dest}" + (" (the cached copy is damaged)" if damaged else ""))
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        pass  # atomic_path says why in one sentence
    if folder.is_dir():
        check_cache_folder(folder)
    with atomic_path(dest) as tmp:
        digest, data = _download(source, tmp, dest, timeout)
        n_bytes = len(data)
        if digest != source.sha256:
            # Raised inside atomic_path: the temporary file is removed, `dest` is untouched.
            expected = f"{source.sha256} ({source.size} bytes)" if source.size else source.sha256
            raise WeightsUnavailableError(
                f"the file downloaded from {source.url} is not {source.filename} "
                f"(sha256 {digest}, {n_bytes} bytes; expected {expected}), so it was not kept; "
                f"download the file yourself from a source you trust, or pass --face-model PATH"
            )
    _LOADED[dest] = data
    return dest


def _download(source: ModelSource, tmp: Path, dest: Path, timeout: float) -> tuple[str, bytes]:
    """Stream `source.url` into `tmp`; the sha256 of what was written, and the bytes.

    At most MAX_DOWNLOAD_BYTES, within DOWNLOAD_DEADLINE_S (each read within `timeout`).
    Network errors become `WeightsUnavailableError` here, inside the caller's `atomic_path`:
    urllib's errors are `OSError`s, which `atomic_path` would otherwise report as a failure
    to write the file. Errors writing `tmp` itself stay `OSError` (full disk: exit 11).
    """
    import urllib.request  # here: it pulls in http and ssl, which `gclf-infer --help` need not load

    deadline = time.monotonic() + DOWNLOAD_DEADLINE_S
    digest = hashlib.sha256()
    data = bytearray()
    try:
        response = urllib.request.urlopen(source.url, timeout=timeout)  # noqa: S310 (the URL is pinned or the user's)
    except (OSError, ValueError) as exc:
        raise _unavailable(source, dest, exc) from None
    with response, open(tmp, "wb") as out:
        while True:
            if time.monotonic() > deadline:
                raise _unavailable(source, dest, f"not done within {DOWNLOAD_DEADLINE_S:.0f} s")
            try:
                block = response.read(_CHUNK)
            except OSError as exc:
                raise _unavailable(source, dest, exc) from None
            if not block:
                break
            if len(data) + len(block) > MAX_DOWNLOAD_BYTES:
                raise _unavailable(source, dest, f"larger than {MAX_DOWNLOAD_BYTES} bytes, far more than a face model")
            digest.update(block)
            data += block
            out.write(block)
    return digest.hexdigest(), bytes(data)


def check_cache_folder(folder: Path, *, what: str = "the face-model cache") -> None:
    """Refuse a folder that another user owns or may write to: they could replace a file in
    it between its sha256 check and its use (WeightsUnavailableError, exit 7). root's folders
    are fine (a device's models installed for a service user). `what` names the folder's role."""
    info = os.stat(folder)
    if info.st_uid not in (os.geteuid(), 0):
        problem = f"belongs to another user (uid {info.st_uid})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"may be written by other users (mode {stat.S_IMODE(info.st_mode):o}): chmod go-w {folder}"
    else:
        return
    advice = "use a folder of your own (set GCLF_HOME)" if what == "the face-model cache" else "keep the model and its detector in a folder only you can write"
    raise WeightsUnavailableError(f"{what} {folder} {problem}; {advice}")


def pinned_detector_file(path: Path, sha256: str, *, what: str) -> Path:
    """`path`, a detector file a model records, checked by the one trust rule every detector
    file gclf loads goes through (the cache's own files included): its folder private
    (check_cache_folder), the file itself no symbolic link and a regular file, and its sha256
    the recorded one. The bytes hashed are the bytes loaded later (model_bytes), so a file
    swapped after the check is never used. `what` names the folder's role in messages.
    Anything else is a WeightsUnavailableError (exit 7) naming the file."""
    path = Path(path)
    data = _read_cached(path, what=what)
    if data is None:
        raise WeightsUnavailableError(f"{path}: cannot be read as a face-model file (missing, unreadable, not a regular file, or over {MAX_DOWNLOAD_BYTES} bytes)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise WeightsUnavailableError(
            f"{path} is not the detector the model was trained with (sha256 {digest[:12]}..., the model records {sha256[:12]}...): "
            "put the recorded file there, or pass --face-model PATH to choose another detector on purpose"
        )
    _LOADED[path] = data
    return path


def _read_cached(dest: Path, *, what: str = "the face-model cache") -> bytes | None:
    """The bytes of a cached file, or None when there is none (or it is not a regular file, or
    too large: treated as damaged); its folder must be private and the file not a symbolic link.
    Opened without blocking: a FIFO put in the cache is refused, not waited on."""
    if not dest.parent.is_dir():
        return None
    check_cache_folder(dest.parent, what=what)
    try:
        fd = os.open(dest, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise WeightsUnavailableError(f"{dest} is a symbolic link; a face model is loaded only from a file, never through a link: copy the file there") from None
        return None  # unreadable: treated as damaged, downloaded again
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        os.set_blocking(fd, True)
        data = fh.read(MAX_DOWNLOAD_BYTES + 1)
    return data if len(data) <= MAX_DOWNLOAD_BYTES else None


def model_bytes(path: Path) -> bytes:
    """The bytes to load for the face-model file `path`: those that were hashed when it was
    checked against its pin (fetch_model, cached_model_path), else the file as read now."""
    path = Path(path)
    known = _LOADED.get(path)
    if known is not None:
        return known
    return read_regular_file(path, max_bytes=MAX_DOWNLOAD_BYTES, error=UsageError)


def _unavailable(source: ModelSource, dest: Path, exc: BaseException | str) -> WeightsUnavailableError:
    reason = getattr(exc, "reason", None) or exc
    return WeightsUnavailableError(
        f"the face model {source.filename} is not in the cache and could not be downloaded ({reason}): "
        f"download {source.url} (sha256 {source.sha256}) where there is a network and put it at {dest}, "
        f"or pass --face-model PATH with a YuNet ONNX file, or leave --face-model out for the bundled Haar cascade"
    )


def cached_model_path(source: ModelSource, *, cache: Path | None = None) -> Path | None:
    """`source`'s file if the cache already holds it with the pinned sha256, else None.
    Never downloads (for choosing a default: gclf.runtime.faces.default_face_model)."""
    dest = (Path(cache) if cache is not None else cache_dir()) / source.filename
    cached = _read_cached(dest)
    if cached is None or hashlib.sha256(cached).hexdigest() != source.sha256:
        return None
    _LOADED[dest] = cached
    return dest


def yunet_model_path(*, notify: Callable[[str], None] | None = _default_notify) -> Path:
    """The pinned YuNet file from the user cache, fetched on first use (see `fetch_model`)."""
    return fetch_model(yunet_source(), notify=notify)


# The detectors `--face-model` and `gclf-train --face-crop` name; anything else is a YuNet file.
DETECTOR_NAMES = ("haar", "yunet")
