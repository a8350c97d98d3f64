"""`gclf-train`: fine-tune GoogLeNet on a folder with one sub-folder per class."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from gclf.runtime.cli_support import report_errors
from gclf.runtime.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:
    from gclf.train.run import TrainConfig


class SplitParam(click.ParamType):
    name = "TRAIN,VAL,TEST"

    def convert(self, value, param, ctx):
        from gclf.train.split import SplitFractions
        from gclf.runtime.errors import UsageError

        if not isinstance(value, str):
            return value
        try:
            fractions = SplitFractions.parse(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)
        # NaN passes every comparison in SplitFractions' check, so refuse it here.
        if not all(math.isfinite(v) for v in dataclasses.astuple(fractions)):
            self.fail(f"--split fractions must be finite numbers, got {value!r}", param, ctx)
        return fractions


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (nan passes its min/max comparisons)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number.", param, ctx)
        return number


def require_training_extra() -> None:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
        import matplotlib  # noqa: F401  (run reports; checked here so it fails before training, not after)
    except ImportError as exc:
        raise MissingDependencyError(
            f"gclf-train needs the training extra ({exc.name} is not installed): pip install 'gclf[train]'"
        ) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder with one sub-folder per class (or train/ val/ test/ sub-folders). Repeat to combine folders. Required unless --resume.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, help="Continue the interrupted run in this folder after its last completed epoch, with the options and split it was started with (only --device and --verbose/--quiet may change).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run folder to create [default: runs/<data>-<time>].")
@click.option("--weights", default="imagenet", help="'imagenet' (torchvision's cache/download), 'none' (random init), or a path to a GoogLeNet state dict or gclf checkpoint.")
@click.option("--max-epochs", type=click.IntRange(min=1), default=6)
@click.option("--batch-size", "--mini-batch-size", "batch_size", type=click.IntRange(min=1), default=4)
@click.option("--learn-rate", "--initial-learn-rate", "learn_rate", type=FiniteFloatRange(min=0, min_open=True), default=1e-3)
@click.option("--momentum", type=FiniteFloatRange(0, 1, max_open=True), default=0.9)
@click.option("--optimizer", type=click.Choice(["sgdm", "adam", "adamw"]), default="sgdm", help="sgdm: SGD with momentum (the study's).")
@click.option("--lr-schedule", type=click.Choice(["none", "cosine", "onecycle", "piecewise"]), default="none", help="Learn-rate schedule, stepped every iteration; piecewise drops it by --lr-drop-factor every --lr-drop-period epochs.")
@click.option("--lr-drop-factor", type=FiniteFloatRange(0, 1, min_open=True), default=0.1, help="piecewise: factor the learn rate is multiplied by at each drop.")
@click.option("--lr-drop-period", type=click.IntRange(min=1), default=10, help="piecewise: epochs between drops.")
@click.option("--l2", type=FiniteFloatRange(min=0), default=1e-4, help="L2 regularisation (weight decay).")
@click.option("--shuffle", type=click.Choice(["every-epoch", "once", "never"]), default="every-epoch", help="Order of the training images: reshuffled every epoch, shuffled once, or never (folder order).")
@click.option("--split", type=SplitParam(), default="0.8,0.1,0.1", help="Train, validation and test fractions.")
@click.option("--max-train-per-class", type=click.IntRange(min=1), default=None, help="Train on at most this many images per class (drawn with --seed); validation and test stay those of the full split.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, help="Seed for the split, initialisation and shuffling.")
@click.option("--image-size", type=click.IntRange(32, 1024), default=224, help="Square input size the images are squashed to.")
@click.option("--freeze/--no-freeze", default=False, help="Train only the new head; the backbone (from --weights) stays fixed and its features are computed once, so each epoch costs almost nothing.")
@click.option("--validation-frequency", type=click.IntRange(min=1), default=1, help="Validate every N epochs (and after the last one). gclf validates at epoch ends, where every validation has a resumable checkpoint.")
@click.option("--validation-patience", type=click.IntRange(min=1), default=None, help="Stop early after N validations without a lower validation loss [default: never].")
@click.option("--keep", type=click.Choice(["best", "last"]), default="best", help="The network the run keeps in best.pt (and exports): lowest validation loss, or the last epoch's.")
@click.option("--augment", type=click.Choice(["none", "light", "standard"]), default="none", help="Augmentation preset on the decoded image: none (the study's), light (flip, crop), standard (flip, crop, rotation, brightness/contrast, 20% grey). The options below switch or tune single transforms on top of it.")
@click.option("--flip/--no-flip", "aug_flip", default=None, help="Random horizontal flip [default: the preset's].")
@click.option("--crop-scale", "aug_crop_scale", type=FiniteFloatRange(0.05, 1.0), default=None, help="Random crop keeping at least this share of the area; 1 turns it off [default: the preset's].")
@click.option("--rotate", "aug_rotate_deg", type=FiniteFloatRange(0, 180), default=None, help="Random rotation of up to this many degrees; 0 turns it off [default: the preset's].")
@click.option("--brightness", "aug_brightness", type=FiniteFloatRange(0, 1), default=None, help="Random brightness change of up to this share [default: the preset's].")
@click.option("--contrast", "aug_contrast", type=FiniteFloatRange(0, 1), default=None, help="Random contrast change of up to this share [default: the preset's].")
@click.option("--grey-p", "aug_grey_p", type=FiniteFloatRange(0, 1), default=None, help="Probability of turning a training image grey: the remedy for grey photos [default: the preset's].")
@click.option("--input-kind", type=click.Choice(["whole_image", "faces"]), default="whole_image", help="What the photos show: 'faces' (face crops; the live runtime then detects and crops faces first) or 'whole_image'.")
@click.option("--device", default="auto", help="'auto' (GPU when present), 'cpu' or 'cuda'.")
@click.option("--verbose/--quiet", default=None, help="--verbose: the study's table of iterations; --quiet: only a line per epoch [default: a progress bar per epoch on a terminal].")
@click.option("--verbose-frequency", type=click.IntRange(min=1), default=50, help="Iterations between verbose rows.")
@report_errors
def main(data: tuple[Path, ...], out: Path | None, resume: Path | None, **options) -> None:
    """Fine-tune torchvision's GoogLeNet on DATA and evaluate it on a held-out test split.

    Defaults are the study's training options: 6 epochs, mini-batch 4, learn rate 0.001,
    SGD with momentum, an 80/10/10 split. Then run `gclf-export RUN_DIR --quantize`.
    An interrupted run (Ctrl-C, kill, power loss) continues with `--resume RUN_DIR`.
    """
    require_training_extra()
    from gclf.train.metrics import format_report
    from gclf.train.run import TrainConfig, resume_training, run_training

    options["augment_options"] = augment_options(options)
    # Neither flag: a progress bar (shown only on a terminal) instead of the iteration table.
    options["progress_bar"] = options["verbose"] is None
    options["verbose"] = bool(options["verbose"])
    if resume is not None:
        given = {name: value for name, value in dict(options, data=data, out=out).items() if name not in ("augment_options", "progress_bar") and _given_on_command_line(name)}
        given["progress_bar"] = options["progress_bar"]
        if options["augment_options"]:
            given["augment_options"] = options["augment_options"]
        result = resume_training(resume_config(resume, given), log=click.echo)
    else:
        if not data:
            raise click.UsageError("Missing option '--data' (or --resume RUN_DIR to continue an interrupted run).")
        if out is None:
            out = Path("runs") / f"{data[0].resolve().name}-{datetime.now():%Y%m%d-%H%M%S}"
        config = TrainConfig(data=data, out=out, **options)
        result = run_training(config, log=click.echo)
    kept = "lowest validation loss" if result.kept == "best" else "the last epoch, --keep last"
    click.echo(f"\nkept epoch {result.best_epoch} ({kept}); init: {result.init_description}")
    if result.test_report:
        click.echo("test split: " + format_report(result.test_report))
    click.echo(f"run folder: {result.run_dir}  (next: gclf-export {result.run_dir} --quantize)")


def augment_options(options: dict[str, Any]) -> dict[str, Any]:
    """Pops the single-transform flags (aug_*) given on the command line into AugmentConfig
    overrides; flags left out keep the preset's value."""
    overrides = {}
    for name in [n for n in options if n.startswith("aug_")]:
        value = options.pop(name)
        if value is not None:
            overrides[name.removeprefix("aug_")] = value
    return overrides


# What --resume may change: where the run computes and how much it prints. Everything else
# would make the resumed run differ from the one it continues.
RESUME_MAY_CHANGE = frozenset({"device", "verbose", "verbose_frequency", "progress_bar"})


def _given_on_command_line(name: str) -> bool:
    source = click.get_current_context().get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _option_flag(name: str) -> str:
    if name == "augment_options":
        return "the augmentation options"
    params = {p.name: p for p in click.get_current_context().command.params}
    return params[name].opts[0] if name in params else name


def _same_option(name: str, asked: Any, config: "TrainConfig") -> bool:
    if name == "data":
        return [Path(p).resolve() for p in asked] == [Path(p).resolve() for p in config.data]
    if name == "out":
        return Path(asked).resolve() == Path(config.out).resolve()
    if name == "augment_options":
        return {**config.augment_options, **asked} == config.augment_options
    return dataclasses.replace(config, **{name: asked}).to_dict()[name] == config.to_dict()[name]


def resume_config(run_dir: Path, given: dict[str, Any]) -> "TrainConfig":
    """The run's own options (config.json), with the few that --resume may change. An option
    given with another value than the run's is refused, naming it: never silently ignored."""
    from gclf.train.run import load_run_config

    config = load_run_config(run_dir)
    for name, value in given.items():
        if name not in RESUME_MAY_CHANGE and not _same_option(name, value, config):
            stored = config.to_dict()[name]
            raise UsageError(
                f"--resume continues {run_dir} with the options it was started with: {_option_flag(name)} "
                f"conflicts with the run's {stored!r} (config.json); leave it out, or start a new run"
            )
    return dataclasses.replace(config, **{k: v for k, v in given.items() if k in RESUME_MAY_CHANGE})


if __name__ == "__main__":
    main()
