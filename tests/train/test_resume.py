"""gclf-train --resume: an interrupted run continues to the same weights as an uninterrupted one.

Every run here is the same tiny one (3 epochs, 64x64, random init, one-cycle schedule, so the
optimizer, scheduler and RNG states all matter) on one CPU thread, where training is
deterministic. The uninterrupted run is the reference; each test interrupts a copy (SIGKILL
from outside, Ctrl-C inside), resumes it, and compares the final last.pt tensor by tensor.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from gclf.runtime.errors import EXIT_INTERRUPTED, EXIT_USAGE, EXIT_WRITE_FAILED, OutputWriteError
from gclf.train import loop as loop_module, run_folder as run_folder_module
from gclf.train.cli import main, resume_config
from gclf.train.config import TrainConfig
from gclf.train.synthetic import make_shapes_dataset

EPOCHS = 3
TRAIN_ARGS = ["--weights", "none", "--image-size", "64", "--max-epochs", str(EPOCHS), "--batch-size", "4",
              "--device", "cpu", "--quiet", "--lr-schedule", "onecycle", "--seed", "3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("resume") / "data", per_class=8, min_side=32, max_side=64)




def _train(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    out = tmp_path_factory.mktemp("resume-reference") / "run"
    result = _train("--data", data, "--out", out, *TRAIN_ARGS)
    assert result.exit_code == 0, result.output
    return out


def _last(run_dir: Path) -> dict:
    return torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)


def _assert_same_training(resumed: Path, reference: Path) -> None:
    got, want = _last(resumed), _last(reference)
    assert got["epoch"] == want["epoch"] == EPOCHS
    assert got["state_dict"].keys() == want["state_dict"].keys()
    for key, tensor in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], tensor), key
    got_momentum = got["resume"]["optimizer"]["state"]
    for index, state in want["resume"]["optimizer"]["state"].items():
        assert torch.equal(got_momentum[index]["momentum_buffer"], state["momentum_buffer"]), index
    assert got["resume"]["scheduler"] == want["resume"]["scheduler"]
    assert got["resume"]["best_epoch"] == want["resume"]["best_epoch"]

    def losses(run_dir: Path) -> list[tuple]:
        rows = _last(run_dir)["resume"]["history"]
        return [(r["epoch"], r["train_loss"], r["val_loss"], r["learn_rate"]) for r in rows]

    assert losses(resumed) == losses(reference)
    assert (resumed / "history.csv").read_text().count("\n") == EPOCHS + 1
    for name in ("best.pt", "metrics.json", "summary.md", "training_progress.png"):
        assert (resumed / name).is_file(), name
    assert not list(resumed.glob(".*.tmp"))  # no partial file is left behind


@pytest.mark.slow
def test_a_run_killed_after_its_first_epoch_resumes_to_the_same_weights(data: Path, reference: Path, tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    log = tmp_path / "train.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(log, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "gclf.train.cli", "--data", str(data), "--out", str(out), *TRAIN_ARGS],
                                stdout=log_file, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while not (out / "last.pt").exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no epoch completed within 5 minutes"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # as a power loss would: no cleanup at all
        proc.wait()
    killed_after = _last(out)["resume"]["epoch"]
    assert 1 <= killed_after < EPOCHS, "the run finished before it could be killed"
    assert not (out / "metrics.json").exists()
    stale = out / ".last.pt.0a1b2c3d.tmp"  # what a kill in the middle of a checkpoint write leaves
    stale.write_bytes(b"half a checkpoint")

    result = _train("--resume", out)

    assert result.exit_code == 0, result.output
    assert f"resuming {out} after epoch {killed_after} of {EPOCHS}" in result.output
    assert "removed .last.pt.0a1b2c3d.tmp" in result.output
    _assert_same_training(out, reference)


@pytest.mark.slow
def test_a_run_interrupted_by_ctrl_c_in_its_first_epoch_resumes_to_the_same_weights(
    data: Path, reference: Path, tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    real_run_epoch = loop_module.run_epoch

    def interrupted_at_step_2(ctx, batches):
        def step(info):
            if info.iteration == 2:
                raise KeyboardInterrupt
        return real_run_epoch(dataclasses.replace(ctx, on_step=step), batches)

    monkeypatch.setattr(loop_module, "run_epoch", interrupted_at_step_2)
    interrupted = _train("--data", data, "--out", out, *TRAIN_ARGS)
    monkeypatch.undo()

    assert interrupted.exit_code == EXIT_INTERRUPTED, interrupted.output
    assert f"--resume {out}" in interrupted.output
    assert not (out / "last.pt").exists()  # no epoch was completed
    assert "--resume" in _train("--data", data, "--out", out, *TRAIN_ARGS).output  # a new run there is refused, with the hint

    resumed = _train("--resume", out)

    assert resumed.exit_code == 0, resumed.output
    assert "no epoch was completed, starting at epoch 1" in resumed.output
    _assert_same_training(out, reference)

    # Resuming a finished run trains nothing more: it only redoes the final evaluation.
    before = (out / "last.pt").read_bytes()
    again = _train("--resume", out)
    assert again.exit_code == 0, again.output
    assert "epoch 1/" not in again.output and (out / "last.pt").read_bytes() == before


def test_a_full_disk_during_training_keeps_the_last_checkpoint_and_says_how_to_resume(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    out = tmp_path / "run"
    real_save = run_folder_module.save_checkpoint

    def disk_full_in_epoch_2(path: Path, checkpoint: dict) -> None:
        if checkpoint["epoch"] == 2:
            raise OutputWriteError(f"cannot write {path}: No space left on device; any previous {path.name} is unchanged")
        real_save(path, checkpoint)

    monkeypatch.setattr(run_folder_module, "save_checkpoint", disk_full_in_epoch_2)
    result = _train("--data", data, "--out", out, "--weights", "none", "--image-size", "32", "--max-epochs", "2", "--batch-size", "8", "--device", "cpu", "--quiet")

    assert result.exit_code == EXIT_WRITE_FAILED, result.output
    assert "No space left on device" in result.output and f"gclf-train --resume {out}" in result.output
    assert _last(out)["resume"]["epoch"] == 1  # the last good checkpoint is intact


# --- refusals: fast, no training ------------------------------------------------------------


def _fake_run(tmp_path: Path, **options) -> Path:
    """A run folder as gclf-train leaves it before its first epoch: config.json, manifest.json."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = TrainConfig(data=(tmp_path / "data",), out=run_dir, weights="none", max_epochs=3, **options)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    (run_dir / "manifest.json").write_text(json.dumps({"class_names": ["a", "b"], "presplit": False, "data": [], "splits": {"train": [], "val": [], "test": []}}))
    return run_dir


@pytest.mark.parametrize("option, value", [("--max-epochs", "4"), ("--learn-rate", "0.1"), ("--seed", "7"), ("--split", "0.6,0.2,0.2"), ("--weights", "imagenet")])
def test_resume_refuses_options_that_conflict_with_the_run(tmp_path: Path, option: str, value: str) -> None:
    run_dir = _fake_run(tmp_path)

    result = _train("--resume", run_dir, option, value)

    assert result.exit_code == EXIT_USAGE, result.output
    assert option in result.output and "config.json" in result.output
    assert "Traceback" not in result.output


def test_resume_accepts_repeated_options_and_device_changes(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path, device="cuda")

    config = resume_config(run_dir, {"max_epochs": 3, "split": TrainConfig(data=(), out=run_dir).split, "device": "cpu", "verbose": False})

    assert config.max_epochs == 3 and config.device == "cpu" and config.verbose is False
    assert config.out == run_dir


def test_resume_of_a_folder_that_is_not_a_run_exits_2(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()

    result = _train("--resume", tmp_path / "photos")

    assert result.exit_code == EXIT_USAGE
    assert "not a gclf run folder" in result.output and "Traceback" not in result.output


def test_resume_refuses_a_last_pt_without_training_state(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path)
    torch.save({"format": "gclf-checkpoint", "version": 1, "state_dict": {}}, run_dir / "last.pt")

    result = _train("--resume", run_dir)

    assert result.exit_code == EXIT_USAGE, result.output
    assert "no training state" in result.output


def test_data_is_required_without_resume(tmp_path: Path) -> None:
    result = _train("--out", tmp_path / "run")

    assert result.exit_code == EXIT_USAGE
    assert "--data" in result.output and "--resume" in result.output
