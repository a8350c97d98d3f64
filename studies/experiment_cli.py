"""`gclf-experiment`: the study's three experiments, one command each, over several seeds.

    gclf-experiment learn-rate --data DIR --out OUT        # 0.1, 0.001, 1e-6: accuracy, NaN
    gclf-experiment grey --data DIR --out OUT              # colour vs grey test photos, +/- grey augmentation
    gclf-experiment data-size --data DIR --out OUT         # 20+20, 100+100, all: accuracy and time

Every training option of gclf-train that the experiment does not vary can be given (the same
declaration, gclf.train.options), but --seed (--seeds N runs seeds 0..N-1) and the display
options (each run's log goes to a file); the defaults are the study's (6 epochs, mini-batch 4,
learn rate 0.001, SGD with momentum, 224).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from gclf.runtime.cli.support import report_errors
from gclf.train.cli import require_training_extra
from gclf.train.config import TrainConfig
from gclf.train.options import DISPLAY_OPTIONS, FiniteFloatRange, config_values, training_options


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


def experiment_options(varies: str) -> Callable:
    """An experiment's own --data, --out and --seeds, then every gclf-train option but the
    one the experiment varies, --seed (--seeds sets them) and the display ones (each run's
    log goes to a file)."""
    own = [
        click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder with one sub-folder per class; repeat to combine."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Experiment folder; run again with the same folder to continue an interrupted experiment."),
        click.option("--seeds", type=click.IntRange(1, 100), default=3, help="Runs per setting (seeds 0..N-1)."),
    ]
    shared = training_options(leave_out={varies, "seed", *DISPLAY_OPTIONS})

    def decorate(fn: Callable) -> Callable:
        fn = shared(fn)
        for option in reversed(own):
            fn = option(fn)
        return fn

    return decorate


def _base(data: tuple[Path, ...], out: Path, options: dict[str, Any]) -> TrainConfig:
    """The options every run of the experiment shares; checks --weights before any training."""
    require_training_extra()
    from gclf.train.distributed import refuse_torchrun
    from gclf.train.model import resolve_weights

    refuse_torchrun("gclf-experiment")

    base = TrainConfig(data=data, out=out, **config_values(options))
    resolve_weights(base.weights)  # a missing file or download fails now, not after the first run
    out.mkdir(parents=True, exist_ok=True)
    return base


def _show(report: Path) -> None:
    click.echo("")
    click.echo(report.read_text(encoding="utf-8"))
    click.echo(f"written: {report}, {report.with_suffix('.png')}, {report.with_suffix('.json')}")


def _run(kind: str, arms: list, grey_test: bool, data: tuple[Path, ...], out: Path, seeds: int, **options: Any) -> None:
    base = _base(data, out, options)
    from gclf.studies.experiment import resolve_overrides, run_arms, write_report

    arms = resolve_overrides(base, arms)
    seed_list = list(range(seeds))
    outcomes = run_arms(base, arms, seed_list, out, click.echo, grey_test=grey_test)
    _show(write_report(kind, base, seed_list, arms, outcomes, out))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """The study's experiments (learn rate, grey photos, amount of data) and edge-sized
    models (input size: accuracy and speed), each over several seeds."""


@main.command("learn-rate")
@click.option("--rates", default="0.1,0.001,0.000001", callback=lambda ctx, param, v: _float_list(v), help="Initial learn rates to compare (the study's three).")
@experiment_options("learn_rate")
@report_errors
def learn_rate(rates: list[float], **options: Any) -> None:
    """Accuracy and divergence (NaN loss) per initial learn rate: the study's Table 1."""
    from gclf.studies.experiment import learn_rate_arms

    _run("learn-rate", learn_rate_arms(rates), False, **options)


@main.command("grey")
@click.option("--grey-p", type=FiniteFloatRange(0, 1, min_open=True), default=0.2, help="Grey augmentation probability of the second model.")
@experiment_options("aug_grey_p")
@report_errors
def grey(grey_p: float, **options: Any) -> None:
    """Colour vs grey test photos, for a model trained without and one with grey augmentation."""
    from gclf.studies.experiment import grey_arms

    _run("grey", grey_arms(grey_p), True, **options)


@main.command("data-size")
@click.option("--sizes", default="20,100,all", callback=lambda ctx, param, v: _size_list(v), help="Training images per class, comma-separated; 'all' for the whole training split.")
@experiment_options("max_train_per_class")
@report_errors
def data_size(sizes: list[int | None], **options: Any) -> None:
    """Accuracy and training time for fewer and more training images (same validation and test)."""
    from gclf.studies.experiment import data_size_arms

    _run("data-size", data_size_arms(sizes), False, **options)


def _pixel_list(text: str) -> list[int]:
    sizes = []
    for v in (v.strip() for v in text.split(",") if v.strip()):
        if not v.isdigit() or not 32 <= int(v) <= 1024:
            raise click.BadParameter(f"expected image sizes from 32 to 1024 pixels, got {v!r}")
        sizes.append(int(v))
    if not sizes or len(set(sizes)) != len(sizes):
        raise click.BadParameter(f"expected distinct image sizes, got {text!r}")
    return sizes


@main.command("image-size")
@click.option("--sizes", default="112,160,224", callback=lambda ctx, param, v: _pixel_list(v), help="Square input sizes to compare, comma-separated.")
@click.option("--extra-test", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, help="A held-out folder with one sub-folder per class (the model's classes), never trained on, e.g. photos from another source.")
@click.option("--extra-test-max", type=click.IntRange(min=1), default=None, help="Use at most this many images per class of --extra-test (drawn with seed 0) [default: all].", show_default=False)
@click.option("--repeats", type=click.IntRange(min=3), default=30, help="Timed batch-1 runs per model (after warm-up).")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="onnxruntime threads for the latency; 0: one per CPU.")
@experiment_options("image_size")
@report_errors
def image_size(sizes: list[int], extra_test: Path | None, extra_test_max: int | None, repeats: int, threads: int, data: tuple[Path, ...], out: Path, seeds: int, **options: Any) -> None:
    """Accuracy fp32/int8 (test split and --extra-test) and batch-1 latency fp32/int8 on this
    machine, per input size: each run is exported with gclf-export's own code."""
    base = _base(data, out, options)
    from gclf.studies.image_size import read_extra_test, run_image_size

    extra = read_extra_test(extra_test, extra_test_max) if extra_test is not None else None
    _show(run_image_size(base, sizes, list(range(seeds)), out, click.echo, extra=extra, threads=threads, repeats=repeats))


if __name__ == "__main__":
    main()
