"""gclf-train under torchrun: DistributedDataParallel over 2 CPU processes (gloo).

The ranks are real processes started by `python -m torch.distributed.run` (torchrun), one
thread each. A 2-process run with --mini-batch-size 4 is compared with a 1-process run with
--mini-batch-size 8 (the same global batch); a torchrun run is killed after its first epoch
and resumed under torchrun.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gclf_testutil import write_image_file
from gclf.runtime.errors import EXIT_USAGE
from gclf.train.cli import main
from gclf.train.distributed import Distributed, ShardSampler

PER_CLASS = 24
# Half for training, a quarter each for validation and test: 24 train, 12 val, 12 test images.
COMMON = ["--weights", "none", "--image-size", "32", "--split", "0.5,0.25,0.25", "--seed", "1",
          "--learn-rate", "0.01", "--device", "cpu", "--quiet"]
EPOCHS = 3
# The tolerance of the 1- vs 2-process comparison. The runs are not identical by design:
# batch-norm statistics come from each process's 4 images instead of all 8, and the shuffled
# order and dropout masks are drawn differently. What is compared is what stays stable on a
# from-scratch network after 9 steps: both start from the same initialisation (DDP broadcasts
# rank 0's), so the first validation, over the whole validation split, agrees closely
# (measured: 0.69344 vs 0.69336); the training loss falls alike (mean over the 3 epochs,
# measured 0.64 vs 0.74), and both learn the colour cue (final-epoch training accuracy,
# measured 0.875 and 0.833; chance is 0.5). The validation and test figures of later epochs
# are not compared: in eval mode a from-scratch GoogLeNet's running batch-norm statistics lag
# far behind its weights after so few steps, and its validation loss swings from one epoch to
# the next (0.45 vs 3.48 at epoch 3 here; 0.41, 8.5, 31 in consecutive epochs of one
# single-process run), so a bound on them would measure that noise, not DDP.
MAX_FIRST_VAL_LOSS_GAP = 0.01
MAX_MEAN_TRAIN_LOSS_GAP = 0.3
MIN_FINAL_TRAIN_ACCURACY = 0.6

def _colour_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls, channel in (("blue", 0), ("red", 2)):  # BGR channel that dominates the class
        for i in range(PER_CLASS):
            img = rng.integers(0, 90, size=(24, 24, 3), dtype=np.uint8)
            img[..., channel] = rng.integers(150, 256, size=(24, 24), dtype=np.uint8)
            write_image_file(root / cls / f"{i:02d}.png", img)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _colour_data(tmp_path_factory.mktemp("ddp") / "data")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return dict(env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _torchrun(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
            "-m", "gclf.train.cli", *(str(a) for a in args)]


def _history(run_dir: Path) -> list[dict]:
    lines = (run_dir / "history.csv").read_text().splitlines()
    names = lines[0].split(",")
    return [{k: round(float(v), 5) for k, v in zip(names, line.split(",")) if k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")} for line in lines[1:]]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(data: Path, tmp_path: Path) -> None:
    single, double = tmp_path / "single", tmp_path / "double"
    args = [*COMMON, "--max-epochs", str(EPOCHS)]
    one = subprocess.run([sys.executable, "-m", "gclf.train.cli", "--data", str(data), "--out", str(single), *args, "--mini-batch-size", "8"],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    two = subprocess.run(_torchrun("--data", data, "--out", double, *args, "--mini-batch-size", "4"),
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr

    # Rank 0 alone prints: one summary, not two.
    assert two.stdout.count("run folder:") == 1 and "2 processes" in two.stdout
    # The same split, recorded once.
    assert _json(single / "manifest.json") == _json(double / "manifest.json")
    config1, config2 = _json(single / "config.json"), _json(double / "config.json")
    assert (config1["world_size"], config1["global_batch_size"]) == (1, 8)
    assert (config2["world_size"], config2["global_batch_size"], config2["batch_size"]) == (2, 8, 4)
    metrics1, metrics2 = _json(single / "metrics.json"), _json(double / "metrics.json")
    assert (metrics2["world_size"], metrics2["global_batch_size"]) == (2, 8)
    # The test split is evaluated whole, by rank 0.
    assert metrics1["test"]["n"] == metrics2["test"]["n"] == PER_CLASS // 2
    acc1, acc2 = metrics1["test"]["accuracy"], metrics2["test"]["accuracy"]
    h1, h2 = _history(single), _history(double)
    print(f"\n1 process: test acc {acc1:.3f} {h1}\n2 processes: test acc {acc2:.3f} {h2}")
    assert len(h1) == len(h2) == EPOCHS
    assert abs(h1[0]["val_loss"] - h2[0]["val_loss"]) <= MAX_FIRST_VAL_LOSS_GAP
    mean_loss1, mean_loss2 = (sum(row["train_loss"] for row in h) / EPOCHS for h in (h1, h2))
    assert abs(mean_loss1 - mean_loss2) <= MAX_MEAN_TRAIN_LOSS_GAP
    assert min(h1[-1]["train_accuracy"], h2[-1]["train_accuracy"]) >= MIN_FINAL_TRAIN_ACCURACY

    # The checkpoint is the bare network's: gclf-export reads it as any other run's.
    checkpoint = torch.load(double / "best.pt", map_location="cpu", weights_only=True)
    assert not [k for k in checkpoint["state_dict"] if k.startswith("module.")]
    from gclf.export.cli import main as export_main

    exported = CliRunner().invoke(export_main, [str(double)])
    assert exported.exit_code == 0, exported.output
    assert (double / "model.onnx").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's ranks through Linux /proc")
def test_a_torchrun_run_killed_after_its_first_epoch_resumes_under_torchrun(data: Path, tmp_path: Path) -> None:
    out, epochs = tmp_path / "run", 4
    log = tmp_path / "train.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(_torchrun("--data", data, "--out", out, *COMMON, "--max-epochs", str(epochs), "--mini-batch-size", "4"),
                                stdout=log_file, stderr=subprocess.STDOUT, env=_env())
        try:
            deadline = time.monotonic() + 240
            while not (out / "last.pt").exists():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "no epoch completed within 4 minutes"
                time.sleep(0.01)
        finally:
            # torchrun starts each rank in a session of its own: kill the ranks by their ids,
            # then torchrun, as a power loss would (no cleanup anywhere).
            for pid in [*_children(proc.pid), proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
    killed_after = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["resume"]["epoch"]
    assert 1 <= killed_after < epochs, "the run finished before it could be killed"
    assert not (out / "metrics.json").exists()

    # A plain gclf-train cannot continue it: its global batch needs 2 processes.
    plain = CliRunner().invoke(main, ["--resume", str(out)], env={"WORLD_SIZE": None})
    assert plain.exit_code == EXIT_USAGE and "torchrun" in plain.output and "2 process" in plain.output, plain.output

    resumed = subprocess.run(_torchrun("--resume", out), env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"after epoch {killed_after} of {epochs}" in resumed.stdout, resumed.stdout
    history = (out / "history.csv").read_text().splitlines()
    assert [int(row.split(",")[0]) for row in history[1:]] == list(range(1, epochs + 1))
    assert _json(out / "metrics.json")["world_size"] == 2
    assert _json(out / "config.json")["world_size"] == 2
    assert not list(out.glob(".*.tmp"))


def test_freeze_is_refused_under_torchrun(data: Path, tmp_path: Path) -> None:
    # Before any process group is made: the refusal needs no other rank.
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    result = CliRunner().invoke(main, ["--data", str(data), "--out", str(tmp_path / "r"), "--freeze", *COMMON], env=env)
    assert result.exit_code == EXIT_USAGE and "--freeze is not supported under torchrun" in result.output
    no_out = CliRunner().invoke(main, ["--data", str(data), *COMMON], env=env)
    assert no_out.exit_code == EXIT_USAGE and "--out is required under torchrun" in no_out.output
    assert not (tmp_path / "r").exists()
    other = CliRunner().invoke(main, ["--data", str(data), "--out", str(tmp_path / "r"), "--freeze", *COMMON], env={**env, "RANK": "1", "LOCAL_RANK": "1"})
    assert other.exit_code == EXIT_USAGE and "error: (rank 1 of 2) --freeze is not supported" in other.output


def test_experiments_and_quickstart_are_refused_under_torchrun(data: Path, tmp_path: Path) -> None:
    # They run trainings one after another in one process: N copies would race on one folder.
    from gclf.studies.experiment_cli import main as experiment_main
    from gclf.studies.quickstart import main as quickstart_main

    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    exp = CliRunner().invoke(experiment_main, ["learn-rate", "--data", str(data), "--out", str(tmp_path / "e"), "--seeds", "1"], env=env)
    assert exp.exit_code == EXIT_USAGE and "gclf-experiment does not run under torchrun (2 processes" in exp.output
    quick = CliRunner().invoke(quickstart_main, ["--out", str(tmp_path / "q")], env=env)
    assert quick.exit_code == EXIT_USAGE and "gclf-quickstart does not run under torchrun" in quick.output
    assert not (tmp_path / "e").exists() and not (tmp_path / "q").exists()


def test_torchrun_environment_is_read() -> None:
    assert Distributed.from_env({}) is None
    assert Distributed.from_env({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) is None  # one process: the plain path
    got = Distributed.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert got == Distributed(4, 3, 1) and not got.is_main


@pytest.mark.parametrize("shuffle", ["every-epoch", "once", "never"])
@pytest.mark.parametrize("n, world", [(16, 2), (17, 2), (10, 3), (1, 2)])
def test_the_ranks_shards_cover_each_epochs_order(shuffle: str, n: int, world: int) -> None:
    def shards(epoch: int) -> list[list[int]]:
        samplers = [ShardSampler(n, shuffle=shuffle, seed=5, rank=r, world_size=world) for r in range(world)]
        for s in samplers:
            s.set_epoch(epoch)
        return [list(s) for s in samplers]

    first = shards(1)
    assert len({len(s) for s in first}) == 1 and len(first[0]) == math.ceil(n / world)  # same step count on every rank
    covered = [i for shard in first for i in shard]
    assert sorted(set(covered)) == list(range(n))  # every image, each once but the padding
    assert len(covered) - n < world
    order = ShardSampler(n, shuffle=shuffle, seed=5, rank=0, world_size=1)
    order.set_epoch(1)
    assert [first[r][k] for k in range(len(first[0])) for r in range(world)][:n] == list(order)  # interleaved epoch order
    if shuffle == "never":
        assert list(order) == list(range(n))
    if n >= 10:
        assert (shards(2) != first) == (shuffle == "every-epoch")  # reshuffled per epoch only for every-epoch
