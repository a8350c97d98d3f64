"""`gclf-experiment`: the study's three experiments, one command each, over several seeds.

    gclf-experiment learn-rate --data DIR --out OUT        # 0.1, 0.001, 1e-6: accuracy, NaN
    gclf-experiment grey --data DIR --out OUT              # colour vs grey test photos, +/- grey augmentation
    gclf-experiment data-size --data DIR --out OUT         # 20+20, 100+100, all: accuracy and time

Every training option of gclf-train that the experiment does not vary can be given; the
defaults are the study's (6 epochs, mini-batch 4, learn rate 0.001, SGD with momentum, 224).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from gclf.runtime.cli_support import report_errors
from gclf.train.cli import FiniteFloatRange, require_training_extra


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not (v > 0 and v < float("inf")) for v in values):
        raise click.BadParameter(f"expected positive finite numbers, got {text!r}")
    return values


def _size_list(text: str) -> list[int | None]:
    sizes: list[int | None] = []
    for v in (v.strip() for v in text.split(",") if v.strip()):
        if v == "all":
            sizes.append(None)
        elif v.isdigit() and int(v) > 0:
            sizes.append(int(v))
        else:
            raise click.BadParameter(f"expected image counts per class or 'all', got {v!r}")
    if not sizes:
        raise click.BadParameter("no sizes given")
    return sizes


def training_options(varies: str) -> Callable:
    """The gclf-train options an experiment passes through (all but the one it varies)."""
    options = [
        click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder with one sub-folder per class; repeat to combine."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Experiment folder; run again with the same folder to continue an interrupted experiment."),
        click.option("--seeds", type=click.IntRange(1, 100), default=3, help="Runs per setting (seeds 0..N-1)."),
        click.option("--weights", default="imagenet", help="'imagenet', 'none' (from scratch) or a checkpoint/state dict path (as gclf-train)."),
        click.option("--max-epochs", type=click.IntRange(min=1), default=6),
        click.option("--batch-size", "--mini-batch-size", "batch_size", type=click.IntRange(min=1), default=4),
        click.option("--optimizer", type=click.Choice(["sgdm", "adam", "adamw"]), default="sgdm"),
        click.option("--lr-schedule", type=click.Choice(["none", "cosine", "onecycle", "piecewise"]), default="none"),
        click.option("--l2", type=FiniteFloatRange(min=0), default=1e-4),
        click.option("--image-size", type=click.IntRange(32, 1024), default=224),
        click.option("--augment", type=click.Choice(["none", "light", "standard"]), default="none"),
        click.option("--freeze/--no-freeze", default=False),
        click.option("--input-kind", type=click.Choice(["whole_image", "faces"]), default="whole_image"),
        click.option("--device", default="auto"),
    ]
    if varies != "learn_rate":
        options.append(click.option("--learn-rate", "--initial-learn-rate", "learn_rate", type=FiniteFloatRange(min=0, min_open=True), default=1e-3))
    if varies != "max_train_per_class":
        options.append(click.option("--max-train-per-class", type=click.IntRange(min=1), default=None))

    def decorate(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _run(kind: str, arms: list, grey_test: bool, data: tuple[Path, ...], out: Path, seeds: int, **train_options: Any) -> None:
    require_training_extra()
    from gclf.train.experiment import resolve_overrides, run_arms, write_report
    from gclf.train.model import resolve_weights
    from gclf.train.run import TrainConfig

    resolve_weights(train_options["weights"])  # a missing file or download fails now, not after the first run
    base = TrainConfig(data=data, out=out, **train_options)
    arms = resolve_overrides(base, arms)
    seed_list = list(range(seeds))
    out.mkdir(parents=True, exist_ok=True)
    outcomes = run_arms(base, arms, seed_list, out, click.echo, grey_test=grey_test)
    report = write_report(kind, base, seed_list, arms, outcomes, out)
    click.echo("")
    click.echo(report.read_text(encoding="utf-8"))
    click.echo(f"written: {report}, {report.with_suffix('.png')}, {report.with_suffix('.json')}")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """The study's experiments (learn rate, grey photos, amount of data), each over several seeds."""


@main.command("learn-rate")
@click.option("--rates", default="0.1,0.001,0.000001", callback=lambda ctx, param, v: _float_list(v), help="Initial learn rates to compare (the study's three).")
@training_options("learn_rate")
@report_errors
def learn_rate(rates: list[float], **options: Any) -> None:
    """Accuracy and divergence (NaN loss) per initial learn rate: the study's Table 1."""
    from gclf.train.experiment import learn_rate_arms

    _run("learn-rate", learn_rate_arms(rates), False, **options)


@main.command("grey")
@click.option("--grey-p", type=FiniteFloatRange(0, 1, min_open=True), default=0.2, help="Grey augmentation probability of the second model.")
@training_options("grey")
@report_errors
def grey(grey_p: float, **options: Any) -> None:
    """Colour vs grey test photos, for a model trained without and one with grey augmentation."""
    from gclf.train.experiment import grey_arms

    _run("grey", grey_arms(grey_p), True, **options)


@main.command("data-size")
@click.option("--sizes", default="20,100,all", callback=lambda ctx, param, v: _size_list(v), help="Training images per class, comma-separated; 'all' for the whole training split.")
@training_options("max_train_per_class")
@report_errors
def data_size(sizes: list[int | None], **options: Any) -> None:
    """Accuracy and training time for fewer and more training images (same validation and test)."""
    from gclf.train.experiment import data_size_arms

    _run("data-size", data_size_arms(sizes), False, **options)


if __name__ == "__main__":
    main()
