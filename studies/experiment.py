"""The study's experiments, repeated over seeds: learn rate, grey photos, amount of training data.

An experiment is a list of *arms* (e.g. learn rate 0.1, 0.001, 1e-6), each trained once per
seed with otherwise identical options. The seed sets the split, the initialisation and the
shuffling, so the spread over seeds is the kind of range the study reported. Every run is an
ordinary gclf run folder under OUT/runs/, and its outcome is written beside it as it finishes:
an interrupted experiment started again with the same OUT reuses finished runs, continues an
unfinished one (--resume) and runs the rest.

Outputs in OUT: <experiment>.md (a Markdown table with init, data and options stated),
<experiment>.png (a plot), <experiment>.json (every run's outcome).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gclf.runtime.errors import TrainingDivergedError
from gclf.runtime.atomic import write_atomic_with, write_json_atomic, write_text_atomic
from gclf.runtime.log import Log
from gclf.train.augment import grey_copy
from gclf.train.checkpoint import load_gclf_checkpoint
from gclf.train.model import model_from_checkpoint
from gclf.train.dataset import ImageDataset
from gclf.train.epoch import EvalResult, evaluate
from gclf.train.config import TrainConfig
from gclf.train.run import resume_training, run_training
from gclf.train.run_folder import load_run_config, read_run_data

OUTCOME = "outcome.json"


@dataclass(frozen=True)
class Arm:
    name: str  # file-name safe: "lr-0.1", "grey-aug-off", "n-20"
    label: str  # for tables and plots: "0.1", "without grey augmentation", "20 per class"
    overrides: dict[str, Any]  # TrainConfig fields this arm changes


@dataclass
class Outcome:
    """One training run of one arm and seed."""

    arm: str
    seed: int
    run_dir: str
    diverged: bool = False
    diverged_message: str = ""
    test_accuracy: float | None = None
    mean_confidence: float | None = None
    predicted: dict[str, int] = field(default_factory=dict)  # test images per predicted class
    grey_accuracy: float | None = None  # the test split as grey copies (grey experiment only)
    grey_confidence: float | None = None
    train_images: int = 0
    wall_time_s: float = 0.0
    init: str = ""


def run_arms(base: TrainConfig, arms: Sequence[Arm], seeds: Sequence[int], out: Path, log: Log, *, grey_test: bool = False) -> list[Outcome]:
    """Train every arm once per seed into OUT/runs/<arm>-seed<seed>; reuse finished runs."""
    outcomes = []
    for arm in arms:
        for seed in seeds:
            run_dir = out / "runs" / f"{arm.name}-seed{seed}"
            config = dataclasses.replace(base, **arm.overrides, seed=seed, out=run_dir, verbose=False)
            outcome = _one_run(config, arm, seed, grey_test, log)
            outcomes.append(outcome)
            log(f"{arm.label}, seed {seed}: {describe(outcome)}")
    return outcomes


def describe(o: Outcome) -> str:
    if o.diverged:
        return f"diverged ({o.diverged_message.split(';')[0]})"
    text = f"test accuracy {o.test_accuracy * 100:.1f}%"
    if o.grey_accuracy is not None:
        text += f", grey copies {o.grey_accuracy * 100:.1f}%"
    return text + f" ({o.train_images} training images, {o.wall_time_s:.0f} s)"


def _one_run(config: TrainConfig, arm: Arm, seed: int, grey_test: bool, log: Log) -> Outcome:
    run_dir = config.out
    saved = run_dir / OUTCOME
    if saved.is_file():
        log(f"{arm.label}, seed {seed}: reusing the finished run in {run_dir}")
        return Outcome(**json.loads(saved.read_text(encoding="utf-8")))
    run_log = run_dir.parent / f"{run_dir.name}.log"
    run_log.parent.mkdir(parents=True, exist_ok=True)
    log(f"{arm.label}, seed {seed}: training into {run_dir} (log: {run_log.name})")
    started = time.monotonic()
    outcome = Outcome(arm.name, seed, str(run_dir))
    with run_log.open("a", encoding="utf-8") as stream:
        def file_log(line: str) -> None:
            stream.write(line + "\n")
            stream.flush()

        try:
            if (run_dir / "config.json").is_file() and not (run_dir / "metrics.json").is_file():
                resume_training(dataclasses.replace(load_run_config(run_dir), verbose=False), log=file_log)
            elif not (run_dir / "metrics.json").is_file():
                run_training(config, log=file_log)
        except TrainingDivergedError as exc:
            file_log(f"error: {exc}")
            outcome.diverged, outcome.diverged_message = True, str(exc)
    outcome.wall_time_s = round(time.monotonic() - started, 1)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    outcome.train_images = len(manifest["splits"]["train"])
    if not outcome.diverged:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        test = metrics["test"]
        outcome.init = metrics["init"]["description"]
        outcome.wall_time_s = metrics["wall_time_s"]
        outcome.test_accuracy, outcome.mean_confidence = test["accuracy"], test["mean_confidence"]
        matrix = np.asarray(test["confusion_matrix"]["rows_true_cols_predicted"])
        outcome.predicted = dict(zip(test["confusion_matrix"]["labels"], (int(v) for v in matrix.sum(0))))
        if grey_test:
            grey = evaluate_test_split(run_dir, grey=True)
            outcome.grey_accuracy, outcome.grey_confidence = grey.accuracy, float(grey.probabilities.max(1).mean())
    else:
        outcome.init = _init_of(config)
    write_json_atomic(saved, dataclasses.asdict(outcome))
    return outcome


def _init_of(config: TrainConfig) -> str:
    return {"none": "random initialisation (from scratch)", "imagenet": "ImageNet weights"}.get(config.weights, f"checkpoint {config.weights}")


def evaluate_test_split(run_dir: Path, *, grey: bool = False) -> EvalResult:
    """The run's kept network (best.pt) on its test split, through the preprocessing contract;
    `grey` feeds grey copies of the test photos."""
    config = load_run_config(run_dir)
    data = read_run_data(run_dir, config, lambda _: None, only=("test",))
    model = model_from_checkpoint(load_gclf_checkpoint(run_dir / "best.pt"))
    dataset = ImageDataset(data.splits["test"], data.store, data.spec, augment=(lambda rgb, rng: grey_copy(rgb)) if grey else None)
    loader = torch.utils.data.DataLoader(dataset, batch_size=max(config.batch_size, 32))
    return evaluate(model, loader, torch.device("cpu"))


# --- the three experiments --------------------------------------------------------------------


def learn_rate_arms(rates: Sequence[float]) -> list[Arm]:
    return [Arm(f"lr-{r:g}", f"{r:g}", {"learn_rate": r}) for r in rates]


def grey_arms(grey_p: float) -> list[Arm]:
    return [
        Arm("grey-aug-off", "without grey augmentation", {"augment_options_grey_p": 0.0}),
        Arm(f"grey-aug-{grey_p:g}", f"with grey augmentation (p={grey_p:g})", {"augment_options_grey_p": grey_p}),
    ]


def data_size_arms(sizes: Sequence[int | None]) -> list[Arm]:
    return [Arm(f"n-{n or 'all'}", f"{n} per class" if n else "all", {"max_train_per_class": n}) for n in sizes]


def resolve_overrides(base: TrainConfig, arms: Sequence[Arm]) -> list[Arm]:
    """Turns the grey arms' `augment_options_grey_p` into a full augment_options dict."""
    resolved = []
    for arm in arms:
        overrides = dict(arm.overrides)
        if "augment_options_grey_p" in overrides:
            overrides["augment_options"] = {**base.augment_options, "grey_p": overrides.pop("augment_options_grey_p")}
        resolved.append(Arm(arm.name, arm.label, overrides))
    return resolved


# --- tables and plots ---------------------------------------------------------------------


@dataclass(frozen=True)
class ArmSummary:
    arm: Arm
    runs: int
    diverged: int
    accuracies: list[float]  # finished runs only
    confidences: list[float]
    grey_accuracies: list[float]
    grey_confidences: list[float]
    predicted: dict[str, int]  # summed over finished runs
    train_images: float
    wall_time_s: float


def summarise(arms: Sequence[Arm], outcomes: Sequence[Outcome]) -> list[ArmSummary]:
    summaries = []
    for arm in arms:
        mine = [o for o in outcomes if o.arm == arm.name]
        done = [o for o in mine if not o.diverged]
        predicted: dict[str, int] = {}
        for o in done:
            for k, v in o.predicted.items():
                predicted[k] = predicted.get(k, 0) + v
        summaries.append(ArmSummary(
            arm, len(mine), len(mine) - len(done),
            [o.test_accuracy for o in done if o.test_accuracy is not None],
            [o.mean_confidence for o in done if o.mean_confidence is not None],
            [o.grey_accuracy for o in done if o.grey_accuracy is not None],
            [o.grey_confidence for o in done if o.grey_confidence is not None],
            predicted,
            statistics.fmean([o.train_images for o in mine]) if mine else 0.0,
            statistics.fmean([o.wall_time_s for o in mine]) if mine else 0.0,
        ))
    return summaries


def _pct_range(values: Sequence[float]) -> tuple[str, str]:
    if not values:
        return "n/a", "n/a"
    return f"{statistics.fmean(values) * 100:.1f}%", f"{min(values) * 100:.1f}–{max(values) * 100:.1f}%"


def _predictions(s: ArmSummary) -> str:
    if not s.predicted:
        return "none (NaN loss)" if s.diverged else "n/a"
    total = sum(s.predicted.values())
    text = " / ".join(f"{k} {v * 100 / total:.0f}%" for k, v in s.predicted.items())
    return text + (f"; {s.diverged} run(s) none (NaN loss)" if s.diverged else "")


def header(title: str, base: TrainConfig, seeds: Sequence[int], arms: Sequence[Arm], outcomes: Sequence[Outcome], note: str) -> list[str]:
    inits = sorted({o.init for o in outcomes if o.init}) or [_init_of(base)]
    opts = base.to_dict()
    varied = {k for arm in arms for k in arm.overrides}  # shown per row instead
    shown = [k for k in ("max_epochs", "batch_size", "learn_rate", "optimizer", "lr_schedule", "l2", "image_size", "augment", "augment_options", "max_train_per_class", "freeze") if k not in varied]
    return [
        f"# {title}", "",
        f"- data: {', '.join(str(d) for d in base.data)}; split {base.split.train:g}/{base.split.val:g}/{base.split.test:g} (train/validation/test), drawn per seed",
        f"- initialisation: {', '.join(inits)}",
        f"- seeds: {', '.join(str(s) for s in seeds)} (each seed sets the split, the initialisation and the shuffling)",
        "- options: " + ", ".join(f"{k} {opts[k]}" for k in shown if k in opts),
        f"- {note}", "",
    ]


def learn_rate_table(summaries: Sequence[ArmSummary]) -> list[str]:
    lines = ["| learn rate | test accuracy, mean | min–max | diverged (NaN loss) | predictions on the test split |", "|---|---|---|---|---|"]
    for s in summaries:
        mean, span = _pct_range(s.accuracies)
        lines.append(f"| {s.arm.label} | {mean} | {span} | {s.diverged}/{s.runs} | {_predictions(s)} |")
    return lines


def grey_table(summaries: Sequence[ArmSummary]) -> list[str]:
    lines = ["| model | colour accuracy (min–max) | colour confidence | grey accuracy (min–max) | grey confidence | grey − colour |", "|---|---|---|---|---|---|"]
    for s in summaries:
        cm, cr = _pct_range(s.accuracies)
        gm, gr = _pct_range(s.grey_accuracies)
        gap = (statistics.fmean(s.grey_accuracies) - statistics.fmean(s.accuracies)) * 100 if s.accuracies and s.grey_accuracies else math.nan
        conf = lambda v: f"{statistics.fmean(v):.3f}" if v else "n/a"  # noqa: E731
        lines.append(f"| {s.arm.label} | {cm} ({cr}) | {conf(s.confidences)} | {gm} ({gr}) | {conf(s.grey_confidences)} | {gap:+.1f} pt |")
    return lines


def data_size_table(summaries: Sequence[ArmSummary]) -> list[str]:
    lines = ["| training images | per run (mean) | test accuracy, mean | min–max | training time (mean) |", "|---|---|---|---|---|"]
    for s in summaries:
        mean, span = _pct_range(s.accuracies)
        lines.append(f"| {s.arm.label} | {s.train_images:.0f} | {mean} | {span} | {s.wall_time_s:.0f} s |")
    return lines


def plot(kind: str, summaries: Sequence[ArmSummary], dest: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(summaries))
    labels = [s.arm.label for s in summaries]

    def bars(values_per_arm: list[list[float]], offset: float, width: float, name: str, colour: str) -> None:
        means = [statistics.fmean(v) * 100 if v else 0.0 for v in values_per_arm]
        lo = [m - min(v) * 100 if v else 0.0 for m, v in zip(means, values_per_arm)]
        hi = [max(v) * 100 - m if v else 0.0 for m, v in zip(means, values_per_arm)]
        ax.bar(x + offset, means, width, yerr=[lo, hi], capsize=4, label=name, color=colour, alpha=0.85)
        for i, v in enumerate(values_per_arm):
            ax.scatter(np.full(len(v), x[i] + offset), np.asarray(v) * 100, color="black", s=10, zorder=3)

    if kind == "grey":
        bars([s.accuracies for s in summaries], -0.2, 0.4, "colour test photos", "#1f77b4")
        bars([s.grey_accuracies for s in summaries], 0.2, 0.4, "grey copies", "#7f7f7f")
        ax.legend(loc="lower right", fontsize=8)
    else:
        bars([s.accuracies for s in summaries], 0.0, 0.6, "test accuracy", "#1f77b4")
        for i, s in enumerate(summaries):
            if s.diverged:
                ax.text(x[i], 3, f"NaN loss\n{s.diverged}/{s.runs} runs", ha="center", color="#d62728", fontsize=9)
    if kind == "data-size":
        twin = ax.twinx()
        twin.plot(x, [s.wall_time_s / 60 for s in summaries], "o--", color="#ff7f0e", label="training time")
        twin.set_ylabel("training time (min)", color="#ff7f0e")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%), bars: mean, whiskers: min–max")
    ax.set_xlabel({"learn-rate": "initial learn rate", "grey": "model", "data-size": "training images per class"}[kind])
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    write_atomic_with(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


EXPERIMENTS = {
    "learn-rate": ("Learn rate (the study's Table 1)", learn_rate_table, "accuracy over finished runs; a run whose loss became NaN stops and makes no prediction"),
    "grey": ("Grey photos, without and with grey augmentation", grey_table, "grey: every test photo turned grey (luminance replicated to RGB, as grey files reach the model)"),
    "data-size": ("Amount of training data", data_size_table, "validation and test splits are those of the full split in every arm; time is training wall time"),
}


def write_report(kind: str, base: TrainConfig, seeds: Sequence[int], arms: Sequence[Arm], outcomes: Sequence[Outcome], out: Path) -> Path:
    title, table, note = EXPERIMENTS[kind]
    summaries = summarise(arms, outcomes)
    lines = header(title, base, seeds, arms, outcomes, note) + table(summaries)
    lines += ["", f"![{title}]({kind}.png)", "", "Runs: " + ", ".join(f"`runs/{Path(o.run_dir).name}`" for o in outcomes), ""]
    md = out / f"{kind}.md"
    write_text_atomic(md, "\n".join(lines))
    plot(kind, summaries, out / f"{kind}.png", title)
    write_json_atomic(out / f"{kind}.json", {"experiment": kind, "seeds": list(seeds), "options": base.to_dict(), "runs": [dataclasses.asdict(o) for o in outcomes]})
    return md
