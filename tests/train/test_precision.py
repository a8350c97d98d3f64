"""gclf-train --precision fp32|bf16|fp16 and --channels-last, as far as a CPU can test them.

bf16 autocast runs on a CPU; fp16 is CUDA's (refused here with a usage error), but its
GradScaler path through the training step and last.pt is exercised with a CPU scaler.
Tiny runs: 32x32 generated shapes, random init.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from gclf.runtime.errors import EXIT_USAGE, UsageError
from gclf.train.cli import main
from gclf.train.config import TrainConfig
from gclf.train.synthetic import make_shapes_dataset

BASE = ["--weights", "none", "--image-size", "32", "--batch-size", "4", "--device", "cpu", "--quiet", "--seed", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("precision") / "data", per_class=6, min_side=32, max_side=48)




def _train(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_bf16_trains_on_cpu_and_exports_an_fp32_onnx_the_runtime_runs(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _train("--data", data, "--out", out, *BASE, "--max-epochs", "2", "--precision", "bf16")
    assert result.exit_code == 0, result.output
    assert "precision bf16" in result.output

    config = json.loads((out / "config.json").read_text())
    assert (config["precision"], config["channels_last"]) == ("bf16", False)
    assert json.loads((out / "metrics.json").read_text())["precision"] == "bf16"
    history = _checkpoint(out / "last.pt")["resume"]["history"]
    assert len(history) == 2
    assert all(math.isfinite(row[k]) for row in history for k in ("train_loss", "val_loss"))

    # Autocast computes in bf16 but never stores it: the weights are fp32.
    ckpt = _checkpoint(out / "best.pt")
    floats = [t for t in ckpt["state_dict"].values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 for t in floats)

    _assert_exports_faithfully(out, data, tmp_path)


def _images(data: Path, count: int) -> list[Path]:
    return sorted(p for p in data.rglob("*") if p.suffix in (".jpg", ".png"))[:count]


def _assert_exports_faithfully(run: Path, data: Path, tmp_path: Path) -> None:
    """gclf-export's fp32 ONNX of the run loads in the runtime and computes what best.pt does."""
    from gclf.export.pipeline import export_fp32, load_batch, locate_run
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.preprocess import PreprocessSpec
    from gclf.train.model import model_from_checkpoint

    onnx_path = tmp_path / f"{run.name}.onnx"
    export_fp32(locate_run(run), onnx_path, lambda _: None)
    ckpt = _checkpoint(run / "best.pt")
    batch = load_batch(_images(data, 4), PreprocessSpec.from_dict(ckpt["spec"]))
    got = Classifier(onnx_path).logits(batch)
    with torch.no_grad():
        expected = model_from_checkpoint(ckpt).eval()(torch.from_numpy(batch)).numpy()
    assert got.dtype == np.float32 and np.abs(got - expected).max() <= 1e-4


def test_fp16_on_a_cpu_is_a_usage_error_naming_bf16(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _train("--data", data, "--out", out, *BASE, "--precision", "fp16")
    assert result.exit_code == EXIT_USAGE, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--precision bf16" in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()  # refused before the run folder is made


def test_a_bad_precision_is_refused_by_the_option(data: Path, tmp_path: Path) -> None:
    result = _train("--data", data, "--out", tmp_path / "r", *BASE, "--precision", "fp8")
    assert result.exit_code == EXIT_USAGE and "fp8" in result.output


def test_channels_last_trains_computes_what_the_default_layout_does_and_exports(data: Path, tmp_path: Path, one_thread) -> None:
    from gclf.export.pipeline import load_batch
    from gclf.runtime.preprocess import PreprocessSpec
    from gclf.train.model import model_from_checkpoint

    runs = {}
    for name, flags in (("plain", []), ("cl", ["--channels-last"])):
        runs[name] = tmp_path / name
        result = _train("--data", data, "--out", runs[name], *BASE, "--max-epochs", "1", *flags)
        assert result.exit_code == 0, result.output
    assert json.loads((runs["cl"] / "config.json").read_text())["channels_last"] is True
    assert "channels-last" in result.output

    ckpt = _checkpoint(runs["cl"] / "best.pt")
    # Stored in the default layout, so export and every reader see ordinary tensors.
    assert all(t.is_contiguous() for t in ckpt["state_dict"].values())
    # The layout changes the kernels, not the network: the same logits within float rounding.
    # (Trained weights are not compared: a random-init GoogLeNet on 32 px images with batch
    # norm over 4 images amplifies rounding differences of the gradients to percents.)
    model = model_from_checkpoint(ckpt).eval()
    batch = torch.from_numpy(load_batch(_images(data, 8), PreprocessSpec.from_dict(ckpt["spec"])))
    with torch.no_grad():
        plain = model(batch)
        cl = model.to(memory_format=torch.channels_last)(batch.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(plain, cl, atol=1e-4), float((plain - cl).abs().max())
    val = lambda run: json.loads((run / "metrics.json").read_text())["best_val_loss"]  # noqa: E731
    assert val(runs["cl"]) == pytest.approx(val(runs["plain"]), abs=1e-2)
    _assert_exports_faithfully(runs["cl"], data, tmp_path)


def test_a_run_from_before_the_options_resumes_in_fp32(data: Path, tmp_path: Path) -> None:
    from gclf.train.config import OPTIONS_ADDED_LATER

    assert {"precision", "channels_last"} <= OPTIONS_ADDED_LATER
    out = tmp_path / "run"
    assert _train("--data", data, "--out", out, *BASE, "--max-epochs", "1").exit_code == 0
    config_path = out / "config.json"
    old = {k: v for k, v in json.loads(config_path.read_text()).items() if k not in ("precision", "channels_last")}
    config_path.write_text(json.dumps(old))
    assert TrainConfig.from_dict(old).precision == "fp32" and TrainConfig.from_dict(old).channels_last is False

    result = _train("--resume", out)  # its epochs are done: resuming redoes the final evaluation
    assert result.exit_code == 0, result.output
    assert "precision" not in result.output.split("model: ")[1].splitlines()[0]


def test_resume_refuses_another_precision(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train("--data", data, "--out", out, *BASE, "--max-epochs", "1").exit_code == 0
    result = _train("--resume", out, "--precision", "bf16")
    assert result.exit_code == EXIT_USAGE and "--precision" in result.output


# --- the training step and last.pt with fp16's GradScaler ---------------------------------------


def _cpu_fp16(init_scale: float = 2.0**10):
    from gclf.train.precision import Precision

    # What Precision.of builds on CUDA, here on the CPU (check_precision would refuse it).
    return Precision("fp16", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=init_scale))


def test_the_training_step_scales_fp16_gradients_and_still_learns() -> None:
    from gclf.train.epoch import EpochContext, run_epoch

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    precision = _cpu_fp16()
    losses = [run_epoch(EpochContext(model, optimizer, epoch=e, first_iteration=1, started=0.0, precision=precision), [(x, y)] * 10)[0] for e in range(3)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert model.weight.dtype == torch.float32
    assert precision.scaler.get_scale() > 0


def test_last_pt_keeps_fp16s_loss_scale_and_refuses_a_mismatch() -> None:
    from gclf.train.loop import Progress
    from gclf.train.precision import FP32
    from gclf.train.resume import GRAD_SCALER_KEY, capture_state, restore_state

    def trainer(precision):
        model = torch.nn.Linear(2, 2)
        return SimpleNamespace(
            model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=None,
            generator=torch.Generator().manual_seed(0), device=torch.device("cpu"), precision=precision,
        )

    saved = trainer(_cpu_fp16(init_scale=123.0))
    state = capture_state(saved, Progress())
    assert state[GRAD_SCALER_KEY]["scale"] == 123.0
    assert GRAD_SCALER_KEY not in capture_state(trainer(FP32), Progress())  # fp32's last.pt as before

    restored = trainer(_cpu_fp16())
    restore_state(restored, state)
    assert restored.precision.scaler.get_scale() == 123.0
    with pytest.raises(UsageError, match="precision"):
        restore_state(trainer(FP32), state)


def test_check_precision() -> None:
    from gclf.train.precision import FP32, check_precision

    check_precision("bf16", torch.device("cpu"))
    check_precision("fp16", torch.device("cuda"))  # only the device type is looked at
    with pytest.raises(UsageError, match="bf16"):
        check_precision("fp16", torch.device("cpu"))
    assert FP32.scaler is None and not isinstance(FP32.autocast(), torch.autocast)  # fp32: no autocast at all


def test_bf16_and_channels_last_reach_the_training_and_evaluation_passes() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from gclf.train.epoch import EpochContext, device_batches, evaluate, run_epoch
    from gclf.train.precision import Precision

    seen = []

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            seen.append(x.is_contiguous(memory_format=torch.channels_last))
            logits = self.fc(self.conv(x).mean((2, 3)))
            seen.append(logits.dtype)
            return logits

    torch.manual_seed(0)
    net = Net().to(memory_format=torch.channels_last)
    loader = DataLoader(TensorDataset(torch.randn(8, 3, 8, 8), torch.tensor([0, 1] * 4)), batch_size=4)
    precision = Precision.of("bf16", torch.device("cpu"), channels_last=True)
    ctx = EpochContext(net, torch.optim.SGD(net.parameters(), lr=0.1), epoch=1, first_iteration=1, started=0.0, precision=precision)
    loss, _ = run_epoch(ctx, device_batches(loader, torch.device("cpu"), precision))
    assert math.isfinite(loss) and seen == [True, torch.bfloat16] * 2
    assert all(p.dtype == torch.float32 for p in net.parameters())
    seen.clear()
    result = evaluate(net, loader, torch.device("cpu"), precision)
    assert seen == [True, torch.bfloat16] * 2 and result.probabilities.dtype == np.float32 and math.isfinite(result.loss)
