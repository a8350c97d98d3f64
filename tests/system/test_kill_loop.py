"""Kill gclf-export and gclf-train at random moments, again and again: every file at its
destination is always either the previous complete file or a new complete one."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gclf.runtime.classifier import Classifier

ROUNDS = 4


def _start(module: str, args: list[str], *, keep_stderr: bool = False) -> subprocess.Popen:
    code = f"import sys; from {module} import main; sys.argv = ['gclf'] + sys.argv[1:]; main()"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stderr = subprocess.PIPE if keep_stderr else subprocess.DEVNULL  # the final run's, for the failure message
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=stderr, env=env, text=True)


def _kill_after(proc: subprocess.Popen, seconds: float) -> None:
    try:
        proc.wait(timeout=seconds)  # it may finish first: then there is nothing to kill
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_export_killed_at_random_moments_never_leaves_a_broken_model(tiny_run, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    rng = random.Random(0)
    seen_new = False
    for _ in range(ROUNDS):
        # export is deterministic (same bytes), so a replacement shows as a new inode (rename)
        before = {name: (run / name).stat().st_ino for name in ("model.onnx", "model.int8.onnx")}
        proc = _start("gclf.export.cli", [str(run), "--quantize", "--force", "--calibration-size", "8"])
        _kill_after(proc, rng.uniform(0.5, 60.0))
        for name in ("model.onnx", "model.int8.onnx"):
            Classifier(run / name)  # loads, with valid metadata: complete
            seen_new |= (run / name).stat().st_ino != before[name]
    # the kills landed at different moments; at least one export got a file replaced
    assert seen_new or proc.returncode == 0


@pytest.mark.slow
def test_training_killed_at_random_moments_leaves_complete_files_and_resumes(tmp_path: Path) -> None:
    from gclf.train.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "data", per_class=8, min_side=40, max_side=80)
    out = tmp_path / "run"
    rng = random.Random(1)
    args = ["--data", str(data), "--out", str(out), "--weights", "none", "--image-size", "64", "--max-epochs", "4", "--batch-size", "4", "--device", "cpu", "--quiet"]
    proc = _start("gclf.train.cli", args)
    _kill_after(proc, rng.uniform(2.0, 8.0))
    for _ in range(ROUNDS):
        for name in ("best.pt", "last.pt"):
            if (out / name).exists():
                torch.load(out / name, weights_only=True)  # complete, never half-written
        for name in ("manifest.json", "config.json"):
            if (out / name).exists():
                json.loads((out / name).read_text())
        if not (out / "last.pt").exists():
            shutil.rmtree(out, ignore_errors=True)  # killed before the first epoch: start again
            proc = _start("gclf.train.cli", args)
        else:
            proc = _start("gclf.train.cli", ["--resume", str(out), "--quiet"])
        _kill_after(proc, rng.uniform(2.0, 8.0))
    final_args = ["--resume", str(out), "--quiet"] if (out / "last.pt").exists() else args
    final = _start("gclf.train.cli", final_args, keep_stderr=True)
    _, stderr = final.communicate(timeout=600)
    assert final.returncode == 0, f"{final_args[0]} ended with {final.returncode}: {stderr[-3000:]}"
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 4
