"""gclf-train's trainingOptions: --freeze (cached features), validation frequency and patience,
--keep best|last, --shuffle, the piecewise schedule, --max-train-per-class and single
augmentation flags. Tiny runs: 64x64 generated shapes, random init, CPU."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from gclf.runtime.errors import EXIT_USAGE
from gclf.train import loop as loop_module
from gclf.train.augment import augment, augment_config
from gclf.train.cli import main
from gclf.train.epoch import EvalResult
from gclf.train.config import TrainConfig
from gclf.train.optim import make_scheduler, make_train_loader
from gclf.train.split import limit_per_class
from gclf.train.synthetic import make_shapes_dataset

BASE = ["--weights", "none", "--image-size", "64", "--batch-size", "4", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("options") / "data", per_class=10, min_side=32, max_side=64)


def _train(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


# --- --freeze ------------------------------------------------------------------------------


def test_freeze_trains_only_the_head_and_computes_features_once(data: Path, tiny_run, tmp_path: Path) -> None:
    start = tiny_run.run_dir / "best.pt"
    out = tmp_path / "frozen"
    result = _train("--data", data, "--out", out, *BASE, "--weights", start, "--freeze", "--max-epochs", "3", "--learn-rate", "0.01")
    assert result.exit_code == 0, result.output

    before, after = _state(start), _state(out / "best.pt")
    backbone = [k for k in after if not k.startswith("fc.")]
    # Every backbone tensor, batch-norm running statistics included, is exactly as loaded.
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    # No augmentation: one feature pass for 3 epochs.
    assert result.output.count("backbone features of the") == 1


def test_freeze_validates_on_cached_features_exactly_as_the_whole_model(data: Path, tiny_run, tmp_path: Path) -> None:
    out = tmp_path / "frozen"
    result = _train("--data", data, "--out", out, *BASE, "--weights", tiny_run.run_dir / "best.pt", "--freeze", "--max-epochs", "2", "--keep", "last")
    assert result.exit_code == 0, result.output

    from gclf.train.checkpoint import load_gclf_checkpoint
    from gclf.train.model import model_from_checkpoint
    from gclf.train.epoch import evaluate
    from gclf.train.loop import eval_loader as _eval_loader
    from gclf.train.run_folder import load_run_config, read_run_data

    config = load_run_config(out)
    run_data = read_run_data(out, config, lambda _: None)
    model = model_from_checkpoint(load_gclf_checkpoint(out / "best.pt"))
    full = evaluate(model, _eval_loader(config, run_data, "val"), torch.device("cpu"))
    last_row = (out / "history.csv").read_text().strip().splitlines()[-1].split(",")
    assert float(last_row[5]) == pytest.approx(full.loss, abs=1e-5)


def test_freeze_with_augmentation_recomputes_features_every_epoch(data: Path, tiny_run, tmp_path: Path) -> None:
    result = _train("--data", data, "--out", tmp_path / "r", *BASE, "--weights", tiny_run.run_dir / "best.pt", "--freeze", "--max-epochs", "2", "--augment", "light")
    assert result.exit_code == 0, result.output
    assert result.output.count("backbone features of this epoch's augmented") == 2


# --- validation frequency, patience, keep ------------------------------------------------


def _scripted_validation(monkeypatch: pytest.MonkeyPatch, losses: list[float]) -> list[int]:
    """Trainer.validate returns the given losses in turn; returns the list of calls made."""
    calls: list[int] = []

    def validate(self) -> EvalResult:
        loss = losses[len(calls)]
        calls.append(len(calls))
        n = len(self.val_loader.dataset)
        return EvalResult(loss, 0.5, np.zeros(n, dtype=np.int64), np.full((n, 2), 0.5))

    monkeypatch.setattr(loop_module.Trainer, "validate", validate)
    return calls


def _epoch_in(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])


def test_validation_patience_stops_early_and_keeps_the_best(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_validation(monkeypatch, [1.0, 0.8, 0.9, 0.85, 0.7, 0.6])
    out = tmp_path / "r"
    result = _train("--data", data, "--out", out, *BASE, "--max-epochs", "6", "--validation-patience", "2")
    assert result.exit_code == 0, result.output

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 4 and metrics["stopped_early"]  # epochs 3 and 4 did not beat 0.8
    assert metrics["best_epoch"] == 2 and _epoch_in(out / "best.pt") == 2
    assert "stopping early" in result.output


def test_keep_last_keeps_the_last_epoch_even_when_validation_got_worse(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_validation(monkeypatch, [1.0, 2.0, 3.0])
    out = tmp_path / "last"
    assert _train("--data", data, "--out", out, *BASE, "--max-epochs", "3", "--keep", "last").exit_code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert _epoch_in(out / "best.pt") == 3 and metrics["kept_epoch"] == 3 and metrics["best_epoch"] == 1

    _scripted_validation(monkeypatch, [1.0, 2.0, 3.0])
    out = tmp_path / "best"
    assert _train("--data", data, "--out", out, *BASE, "--max-epochs", "3").exit_code == 0
    assert _epoch_in(out / "best.pt") == 1


def test_validation_frequency_validates_every_nth_epoch_and_the_last(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _scripted_validation(monkeypatch, [1.0, 0.5, 0.4])
    out = tmp_path / "r"
    result = _train("--data", data, "--out", out, *BASE, "--max-epochs", "5", "--validation-frequency", "2")
    assert result.exit_code == 0, result.output
    assert len(calls) == 3  # epochs 2, 4 and 5
    rows = (out / "history.csv").read_text().strip().splitlines()[1:]
    val_losses = [float(r.split(",")[5]) for r in rows]
    assert [math.isnan(v) for v in val_losses] == [True, False, True, False, False]
    assert _epoch_in(out / "best.pt") == 5


# --- shuffle, schedule, subsets, augmentation flags ----------------------------------------


def _orders(shuffle: str, n: int = 12, epochs: int = 2) -> list[list[int]]:
    ds = list(range(n))
    config = TrainConfig(data=(), out=Path("x"), batch_size=n, shuffle=shuffle, seed=5)
    loader = make_train_loader(ds, config, torch.Generator().manual_seed(5))  # type: ignore[arg-type]
    return [[int(i) for i in next(iter(loader))] for _ in range(epochs)]


def test_shuffle_every_epoch_once_and_never() -> None:
    every, once, never = _orders("every-epoch"), _orders("once"), _orders("never")
    assert never == [list(range(12))] * 2
    assert once[0] == once[1] and once[0] != list(range(12)) and sorted(once[0]) == list(range(12))
    assert every[0] != every[1] and sorted(every[1]) == list(range(12))


def test_piecewise_schedule_drops_the_learn_rate_every_period() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    config = TrainConfig(data=(), out=Path("x"), lr_schedule="piecewise", lr_drop_factor=0.5, lr_drop_period=2, max_epochs=6)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=3)
    rates = []
    for _ in range(18):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[::3] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_max_train_per_class_shrinks_only_the_training_split(data: Path, tmp_path: Path) -> None:
    full, small = tmp_path / "full", tmp_path / "small"
    assert _train("--data", data, "--out", full, *BASE, "--max-epochs", "1").exit_code == 0
    result = _train("--data", data, "--out", small, *BASE, "--max-epochs", "1", "--max-train-per-class", "3")
    assert result.exit_code == 0, result.output
    m_full, m_small = (json.loads((d / "manifest.json").read_text())["splits"] for d in (full, small))
    labels = [label for _, label in m_small["train"]]
    assert sorted(labels.count(c) for c in set(labels)) == [3, 3]
    assert {f for f, _ in m_small["train"]} <= {f for f, _ in m_full["train"]}
    assert m_small["val"] == m_full["val"] and m_small["test"] == m_full["test"]


def test_limit_per_class_keeps_small_classes_whole() -> None:
    from gclf.train.scan import Sample

    samples = [Sample(Path(f"{c}{i}"), c, str(i)) for c in (0, 1) for i in range(5 if c == 0 else 2)]
    kept = limit_per_class(samples, 3, seed=1)
    assert [s.label for s in kept].count(0) == 3 and [s.label for s in kept].count(1) == 2
    assert kept == [s for s in samples if s in kept]  # original order


def test_single_augmentation_flags_override_the_preset(data: Path, tmp_path: Path) -> None:
    cfg = augment_config("standard", {"grey_p": 0.0, "flip": False})
    assert cfg.grey_p == 0.0 and not cfg.flip and cfg.rotate_deg == 10  # the rest stays the preset's
    rng = np.random.default_rng(0)
    colour = np.zeros((40, 40, 3), dtype=np.uint8)
    colour[..., 0] = 200
    outputs = [augment(colour, rng, augment_config("none", {"grey_p": 1.0})) for _ in range(3)]
    assert all(np.array_equal(o[..., 0], o[..., 1]) for o in outputs)  # always grey

    out = tmp_path / "r"
    result = _train("--data", data, "--out", out, *BASE, "--max-epochs", "1", "--augment", "standard", "--no-flip", "--grey-p", "0.5")
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["augment"] == "standard" and config["augment_options"] == {"flip": False, "grey_p": 0.5}


def test_resume_refuses_other_augmentation_flags(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert _train("--data", data, "--out", out, *BASE, "--max-epochs", "1", "--grey-p", "0.5").exit_code == 0
    (out / "metrics.json").unlink()
    result = _train("--resume", out, "--grey-p", "0.1")
    assert result.exit_code == EXIT_USAGE and "augmentation options" in result.output
    assert _train("--resume", out, "--grey-p", "0.5").exit_code == 0  # the same value is fine


# --- on screen -----------------------------------------------------------------------------


class _Terminal:
    """A stream that says it is a terminal, recording what is written."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_a_progress_bar_per_epoch_on_a_terminal_and_none_in_a_pipe() -> None:
    import io

    from gclf.train.epoch import StepInfo
    from gclf.train.progress import EpochProgressBar

    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = EpochProgressBar(iters_per_epoch=3, max_epochs=2, stream=stream)
        for epoch in (1, 2):
            for it in range(3):
                bar.step(StepInfo(epoch, (epoch - 1) * 3 + it + 1, 0.5, 1.0, 0.001, 0.0))
            bar.close()
    assert "epoch 1/2" in terminal.text and "epoch 2/2" in terminal.text and "/3 [" in terminal.text  # one bar per epoch, 3 batches
    assert pipe.getvalue() == ""


def test_verbose_prints_the_study_table_and_the_default_does_not(data: Path, tmp_path: Path) -> None:
    base = [a for a in BASE if a != "--quiet"]
    verbose = _train("--data", data, "--out", tmp_path / "v", *base, "--max-epochs", "1", "--verbose", "--verbose-frequency", "1")
    default = _train("--data", data, "--out", tmp_path / "d", *base, "--max-epochs", "1")
    assert verbose.exit_code == 0 and default.exit_code == 0
    assert "batch loss" in verbose.output and verbose.output.count("\n    1 ") >= 4  # a row per iteration
    assert "batch loss" not in default.output and "epoch 1/1: train loss" in default.output
    assert json.loads((tmp_path / "d" / "config.json").read_text())["progress_bar"] is True


def test_a_run_from_before_these_options_still_resumes_with_its_old_behaviour(tmp_path: Path) -> None:
    from gclf.train.config import OPTIONS_ADDED_LATER

    new = TrainConfig(data=(tmp_path,), out=tmp_path / "run")
    old = {k: v for k, v in new.to_dict().items() if k not in OPTIONS_ADDED_LATER}
    assert TrainConfig.from_dict(old) == new
    with pytest.raises(Exception, match="missing"):
        TrainConfig.from_dict({k: v for k, v in old.items() if k != "max_epochs"})  # any other gap is refused


def test_gclf_train_without_options_is_train_configs_defaults(data: Path, tmp_path: Path) -> None:
    # One place for every default: what the command builds from no options is TrainConfig's own.
    from gclf.train.options import config_values

    ctx = main.make_context("gclf-train", ["--data", str(data)])
    options = dict(ctx.params)
    values = config_values({k: v for k, v in options.items() if k not in ("data", "out", "resume")})
    built = TrainConfig(data=(data,), out=tmp_path, **values)
    # Neither --verbose nor --quiet: a progress bar instead of the table (TrainConfig's own
    # verbose=True default is what config.json files from before the bar meant).
    assert (built.verbose, built.progress_bar) == (False, True)
    assert dataclasses.replace(built, verbose=True, progress_bar=False) == TrainConfig(data=(data,), out=tmp_path)


def test_option_choices_come_from_the_code_that_acts_on_them() -> None:
    from gclf.train.augment import PRESETS
    from gclf.train.optim import LR_SCHEDULES, OPTIMIZERS, SHUFFLES

    choices = {p.name: list(p.type.choices) for p in main.params if hasattr(p.type, "choices")}
    assert choices["optimizer"] == list(OPTIMIZERS) and choices["lr_schedule"] == list(LR_SCHEDULES)
    assert choices["shuffle"] == list(SHUFFLES) and choices["augment"] == list(PRESETS)
    with pytest.raises(Exception, match="optimizer must be one of"):
        from gclf.train.optim import make_optimizer

        make_optimizer(torch.nn.Linear(1, 1), TrainConfig(data=(), out=Path("x"), optimizer="lion"))
