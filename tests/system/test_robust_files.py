"""Writing never leaves a broken file, and folders that fight back give clear messages.

Covers: a process killed in the middle of a write, a full disk, a read-only output folder,
unreadable folders and files, symlink loops. Tests run as root, which may read and write
anything, so "unreadable" and "read-only" are simulated by making the system call fail.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gclf.runtime import atomic
from gclf.runtime.cli.infer import main as infer_main
from gclf.runtime.errors import EXIT_BAD_DATA, EXIT_PARTIAL, EXIT_WRITE_FAILED, OutputWriteError
from gclf.runtime.atomic import remove_stale_temp_files, write_bytes_atomic, write_json_atomic
from gclf.runtime.listing import expand_inputs, list_images
from gclf.train.checkpoint import save_checkpoint
from gclf.train.cli import main as train_main
from gclf.train.scan import ImageStore, scan_folders
from gclf.runtime.preprocess import PreprocessSpec
from gclf_testutil import noise_bgr, solid_bgr, write_image_file

SPEC = PreprocessSpec(input_height=16, input_width=16)
# Should a refusal test ever get as far as training, let it be short.
QUICK = ["--weights", "none", "--device", "cpu", "--image-size", "32", "--max-epochs", "1", "--quiet"]


# --- a kill in the middle of a write ----------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gclf.runtime.atomic import write_atomic_with

    def slow_writer(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(b"new but incomplete")
            fh.flush()
            Path(sys.argv[2]).touch()  # tell the test the write is under way
            time.sleep(60)

    write_atomic_with(Path(sys.argv[1]), slow_writer)
    """
)


def test_a_process_killed_while_writing_leaves_the_previous_file_intact(tmp_path: Path) -> None:
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"the previous good model")
    started = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(dest), str(started)])
    deadline = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)

    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert dest.read_bytes() == b"the previous good model"
    leftovers = [p for p in tmp_path.iterdir() if p.name not in ("model.onnx", "started")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".model.onnx.") and leftovers[0].name.endswith(".tmp")
    assert remove_stale_temp_files(tmp_path) == leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "started"]


def test_remove_stale_temp_files_leaves_other_hidden_files_alone(tmp_path: Path) -> None:
    keep = [tmp_path / ".notes.tmp", tmp_path / ".config", tmp_path / "x.tmp"]
    for path in keep:
        path.write_text("mine")

    assert remove_stale_temp_files(tmp_path) == []
    assert all(path.exists() for path in keep)


# --- full disk, read-only folder ---------------------------------------------------------------


def test_a_full_disk_is_an_error_naming_the_file_and_the_previous_file_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "metrics.json"
    write_json_atomic(dest, {"accuracy": 0.9})
    before = dest.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OutputWriteError, match="No space left on device") as info:
        write_json_atomic(dest, {"accuracy": 0.95})
    monkeypatch.undo()

    assert str(dest) in str(info.value) and "unchanged" in str(info.value)
    assert dest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no partial file left


def test_a_read_only_folder_is_an_error_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(dest: Path) -> Path:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dest))

    monkeypatch.setattr(atomic, "_create_temp", read_only)

    with pytest.raises(OutputWriteError, match=r"cannot write .*summary\.md: Read-only file system"):
        write_bytes_atomic(tmp_path / "summary.md", b"text")


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "last.pt"
    save_checkpoint(dest, {"epoch": 1})

    def failing_save(obj, path) -> None:  # how torch.save reports a full disk
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OutputWriteError, match="cannot write .*last.pt: .*file write failed"):
        save_checkpoint(dest, {"epoch": 2})
    monkeypatch.undo()

    assert torch.load(dest, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_gclf_train_with_a_read_only_out_folder_fails_before_reading_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in ("a", "b"):
        for i in range(3):
            write_image_file(tmp_path / "data" / cls / f"{i}.png", noise_bgr(i + 10 * len(cls)))

    def read_only(dest: Path) -> Path:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dest))

    monkeypatch.setattr(atomic, "_create_temp", read_only)
    result = CliRunner().invoke(train_main, ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *QUICK])

    assert result.exit_code == EXIT_WRITE_FAILED, result.output
    assert f"cannot write in {tmp_path / 'run'}: Read-only file system" in result.output
    assert "found" not in result.output and "Traceback" not in result.output


# --- folders: unreadable, symlink loops, hidden, nested -----------------------------------------


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch):
    """`unreadable(path)`: listing that folder or reading that file fails with EACCES, as for a
    non-root user without permission."""
    blocked: set[str] = set()
    real_scandir, real_listdir, real_read_bytes = os.scandir, os.listdir, Path.read_bytes

    def check(path) -> None:
        if os.fspath(path) in blocked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    def scandir(path="."):  # os.walk
        check(path)
        return real_scandir(path)

    def listdir(path="."):  # Path.iterdir
        check(path)
        return real_listdir(path)

    def read_bytes(self: Path) -> bytes:
        if str(self) in blocked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_read_bytes(self)

    real_open = os.open

    def open_fd(file, *args, **kwargs):  # gclf.runtime.files opens every file gclf reads (regular files only, never blocking)
        check(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(os, "open", open_fd)
    return lambda path: blocked.add(str(path))


def _two_classes(root: Path, per_class: int = 3) -> None:
    for cls, colour in (("red", (250, 0, 0)), ("blue", (0, 0, 250))):
        for i in range(per_class):
            write_image_file(root / cls / f"{i}.png", solid_bgr(colour, 5 + i, 7))


def test_unreadable_folders_and_files_are_skipped_by_name_in_training(tmp_path: Path, unreadable) -> None:
    _two_classes(tmp_path)
    write_image_file(tmp_path / "red" / "2023" / "x.png", noise_bgr(1))
    unreadable(tmp_path / "red" / "2023")
    unreadable(tmp_path / "blue" / "1.png")
    reported: list[tuple[str, str]] = []

    scan = scan_folders([tmp_path], ImageStore(SPEC), on_skip=lambda p, r: reported.append((p, r)))

    assert scan.class_counts() == {"blue": 2, "red": 3}
    reasons = dict(scan.skipped)
    assert reasons[str(tmp_path / "red" / "2023")].startswith("cannot read folder (Permission denied)")
    assert reasons[str(tmp_path / "blue" / "1.png")] == "cannot read file (Permission denied)"
    assert sorted(reported) == sorted(scan.skipped)


def test_an_unreadable_data_folder_is_bad_data_not_a_traceback(tmp_path: Path, unreadable) -> None:
    _two_classes(tmp_path / "data")
    unreadable(tmp_path / "data")

    result = CliRunner().invoke(train_main, ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *QUICK])

    assert result.exit_code == EXIT_BAD_DATA, result.output
    assert "cannot read folder (Permission denied)" in result.output and "Traceback" not in result.output


def test_gclf_infer_warns_about_unreadable_folders_and_goes_on(tmp_path: Path, unreadable, tiny_onnx, capsys) -> None:
    write_image_file(tmp_path / "photos" / "red.png", solid_bgr((250, 0, 0)))
    write_image_file(tmp_path / "photos" / "locked" / "blue.png", solid_bgr((0, 0, 250)))
    unreadable(tmp_path / "photos" / "locked")

    found = expand_inputs([tmp_path / "photos"])

    assert found == [tmp_path / "photos" / "red.png"]
    assert f"warning: {tmp_path / 'photos' / 'locked'}: cannot read folder (Permission denied)" in capsys.readouterr().err


def test_symlink_loops_are_not_followed_and_broken_links_are_named(tmp_path: Path, tiny_onnx) -> None:
    _two_classes(tmp_path / "data")
    (tmp_path / "data" / "red" / "loop").symlink_to(tmp_path / "data", target_is_directory=True)
    (tmp_path / "data" / "blue" / "self.png").symlink_to(tmp_path / "data" / "blue" / "self.png")
    (tmp_path / "data" / "blue" / "gone.png").symlink_to(tmp_path / "nowhere.png")

    images = list_images(tmp_path / "data")
    scan = scan_folders([tmp_path / "data"], ImageStore(SPEC))
    infer = CliRunner().invoke(infer_main, [str(tiny_onnx()), str(tmp_path / "data")])

    assert scan.class_counts() == {"blue": 3, "red": 3}
    assert {Path(p).name for p, _ in scan.skipped} == {"self.png", "gone.png"}
    assert all("loop" not in p.parts for p in images)
    assert infer.exit_code == EXIT_PARTIAL, infer.output
    assert "self.png" in infer.stderr and "gone.png" in infer.stderr and "Traceback" not in infer.output


def test_images_directly_in_the_data_folder_get_a_hint(tmp_path: Path) -> None:
    for i in range(3):
        write_image_file(tmp_path / "data" / f"{i}.jpg", noise_bgr(i))

    result = CliRunner().invoke(train_main, ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *QUICK])

    assert result.exit_code == EXIT_BAD_DATA
    assert "put them in one sub-folder per class" in result.output


def test_hidden_files_and_folders_are_ignored(tmp_path: Path) -> None:
    _two_classes(tmp_path)
    (tmp_path / "red" / ".thumbnail.png").write_bytes(b"not even an image")
    write_image_file(tmp_path / ".trash" / "x.png", noise_bgr(3))
    write_image_file(tmp_path / "blue" / ".cache" / "y.png", noise_bgr(4))

    scan = scan_folders([tmp_path], ImageStore(SPEC))

    assert scan.class_names == ["blue", "red"]
    assert scan.class_counts() == {"blue": 3, "red": 3} and scan.skipped == []


# --- options that no range check catches --------------------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [("--learn-rate", "nan"), ("--learn-rate", "inf"), ("--momentum", "nan"), ("--l2", "nan"), ("--split", "nan,0.1,0.1"),
     ("--seed", "-1"), ("--device", "gpu0"), ("--max-epochs", "-3")],
)
def test_non_finite_and_nonsense_option_values_exit_2_naming_the_option(tmp_path: Path, option: str, value: str) -> None:
    _two_classes(tmp_path / "data")

    result = CliRunner().invoke(train_main, ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *QUICK, option, value])

    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output
