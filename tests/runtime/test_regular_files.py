"""Only regular files are read: a FIFO, a socket or a device, named or found in a folder, is
refused by name at once, never waited on, and the other files are still processed.

A FIFO with no writer blocks a plain `open()` forever (Ctrl-C included), `/dev/zero` never
ends, a socket cannot be opened. Each case runs with a deadline: a refusal that blocks fails
the test instead of hanging it (and a blocked reader is released by opening the FIFO's other
end).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from gclf.runtime.classifier import Classifier
from gclf.runtime.decode import decode_image
from gclf.runtime.errors import EXIT_PARTIAL, BadModelError, ImageDecodeError, UsageError
from gclf.runtime.files import open_regular_file, read_regular_file, sha256_file
from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.scan import ImageStore, scan_folders
from gclf_testutil import solid_bgr, write_image_file

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and UNIX sockets are POSIX")
DEADLINE_S = 1.0


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _release(fifo: Path) -> None:
    """Open the FIFO's writing end (non-blocking: fails if nobody reads), so a reader stuck
    in open() returns."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def _within_deadline(call: Callable[[], object], fifo: Path | None = None) -> tuple[object, BaseException | None]:
    """(what `call` returned, what it raised), which it must do within DEADLINE_S."""
    outcome: list[tuple[object, BaseException | None]] = []

    def run() -> None:
        try:
            outcome.append((call(), None))
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome.append((None, exc))

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(DEADLINE_S)
    if worker.is_alive():
        if fifo is not None:
            _release(fifo)
        worker.join(5)
        pytest.fail(f"still blocked after {DEADLINE_S} s")
    assert time.monotonic() - started < DEADLINE_S
    return outcome[0]


def _refused(call: Callable[[], object], fifo: Path | None = None) -> BaseException:
    """The exception `call` raises within DEADLINE_S."""
    _, error = _within_deadline(call, fifo)
    assert error is not None, "it was read as if it were a file"
    return error


@pytest.fixture
def unix_socket(tmp_path: Path):
    path = tmp_path / "socket.jpg"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    yield path
    server.close()


def test_a_fifo_image_is_refused_by_name_at_once(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "pipe.jpg")

    error = _refused(lambda: decode_image(fifo), fifo)

    assert isinstance(error, ImageDecodeError)
    assert str(error) == f"{fifo}: a named pipe (FIFO), not a regular file (gclf reads only regular files)"


def test_dev_zero_is_refused_without_reading_it() -> None:
    error = _refused(lambda: decode_image("/dev/zero"))

    assert isinstance(error, ImageDecodeError) and str(error).startswith("/dev/zero: a character device, not a regular file")


def test_a_socket_is_refused_by_name(unix_socket: Path) -> None:
    error = _refused(lambda: decode_image(unix_socket))

    assert isinstance(error, ImageDecodeError) and str(error).startswith(f"{unix_socket}: a socket, not a regular file")


def test_a_fifo_model_is_a_bad_model_named_at_once(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "model.onnx")

    error = _refused(lambda: Classifier(fifo), fifo)

    assert isinstance(error, BadModelError) and str(error).startswith(f"{fifo}: a named pipe (FIFO), not a regular file")


def test_the_helpers_for_other_files_refuse_the_same_way(tmp_path: Path) -> None:
    """What --token-file, --face-model, configuration and credential files use."""
    fifo = _fifo(tmp_path / "token")
    for call in (lambda: open_regular_file(fifo), lambda: read_regular_file(fifo, max_bytes=4096), lambda: sha256_file(fifo)):
        error = _refused(call, fifo)
        assert isinstance(error, UsageError) and str(error).startswith(f"{fifo}: a named pipe (FIFO), not a regular file")
    error = _refused(lambda: read_regular_file("/dev/zero", max_bytes=4096))
    assert str(error).startswith("/dev/zero: a character device, not a regular file")
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(UsageError, match=rf"^{big}: file too large \(5000 bytes; gclf reads at most 4096 here\)"):
        read_regular_file(big, max_bytes=4096)
    assert read_regular_file(big, max_bytes=5000) == b"x" * 5000


def test_trainings_scan_skips_a_fifo_in_a_class_folder_by_name(tmp_path: Path) -> None:
    for cls, colour in (("red", (250, 0, 0)), ("blue", (0, 0, 250))):
        for i in range(2):
            write_image_file(tmp_path / cls / f"{i}.png", solid_bgr(colour))
    fifo = _fifo(tmp_path / "red" / "pipe.png")

    scan, error = _within_deadline(lambda: scan_folders([tmp_path], ImageStore(PreprocessSpec(input_height=16, input_width=16))), fifo)

    assert error is None
    assert scan.class_counts() == {"blue": 2, "red": 2}
    assert dict(scan.skipped) == {str(fifo): "a named pipe (FIFO), not a regular file (gclf reads only regular files)"}


def _gclf_infer(*args: str) -> subprocess.CompletedProcess:
    # A deadline well above start-up (imports take a few seconds on a busy machine); a FIFO
    # that blocks would hold the command until it.
    return subprocess.run([sys.executable, "-m", "gclf.runtime.cli", *args], capture_output=True, text=True, timeout=60)


def test_gclf_infer_names_a_fifo_given_on_the_command_line_and_classifies_the_rest(tmp_path: Path, tiny_onnx) -> None:
    fifo = _fifo(tmp_path / "pipe.jpg")
    good = write_image_file(tmp_path / "red.png", solid_bgr((250, 0, 0)))

    try:
        run = _gclf_infer(str(tiny_onnx()), str(fifo), str(good))
    finally:
        _release(fifo)

    assert run.returncode == EXIT_PARTIAL, run.stderr
    assert f"skipped: {fifo}: a named pipe (FIFO), not a regular file" in run.stderr
    assert str(good) in run.stdout and "1 classified, 1 skipped" in run.stderr


def test_gclf_infer_names_a_fifo_and_a_socket_inside_a_folder_and_classifies_the_rest(tmp_path: Path, tiny_onnx, unix_socket: Path) -> None:
    photos = unix_socket.parent
    fifo = _fifo(photos / "pipe.jpg")
    good = [write_image_file(photos / f"{name}.png", solid_bgr(colour)) for name, colour in (("a", (250, 0, 0)), ("z", (0, 0, 250)))]

    try:
        run = _gclf_infer(str(tiny_onnx()), str(photos))
    finally:
        _release(fifo)

    assert run.returncode == EXIT_PARTIAL, run.stderr
    assert f"skipped: {fifo}: a named pipe (FIFO), not a regular file" in run.stderr
    assert f"skipped: {unix_socket}: a socket, not a regular file" in run.stderr
    assert all(str(path) in run.stdout for path in good) and "2 classified, 2 skipped" in run.stderr
