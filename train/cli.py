"""`gclf-train`: fine-tune GoogLeNet on a folder with one sub-folder per class."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from gclf.runtime.cli.support import report_errors
from gclf.runtime.errors import GclfError, MissingDependencyError, UsageError, install_hint
from gclf.train.config import TrainConfig
from gclf.train.options import config_values, training_options
from gclf.train.recipes import RECIPES, run_recipe


def require_training_extra() -> None:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
        import matplotlib  # noqa: F401  (run reports; checked here so it fails before training, not after)
    except ImportError as exc:
        raise MissingDependencyError(
            f"gclf-train needs the training extra ({exc.name} is not installed): {install_hint('train')}"
        ) from None


def _name_the_rank(fn):
    """Under torchrun, a rank other than 0 says which it is in its error line: every rank
    prints its own, and the one that failed first is the one to read."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GclfError as exc:
            from gclf.train.distributed import Distributed

            dist = Distributed.from_env()
            if dist is not None and not dist.is_main and exc.args:
                exc.args = (f"(rank {dist.rank} of {dist.world_size}) {exc.args[0]}", *exc.args[1:])
            raise

    return wrapper


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder with one sub-folder per class (or train/ val/ test/ sub-folders). Repeat to combine folders. Required unless --resume.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, help="Continue the interrupted run in this folder after its last completed epoch, with the options and split it was started with (only --device and --verbose/--quiet may change).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run folder to create [default: runs/<data>-<time>].")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=None, help="Run a named recipe in one command: faces (photos of people: YuNet face crops, from scratch at 112 px then 224 px) or whole (whole images, the same two sizes). Its earlier stage trains into OUT-112px, the final one into OUT; options given here win over the recipe's; the same command again goes on where it stopped.")
@training_options()
@report_errors
@_name_the_rank
def main(data: tuple[Path, ...], out: Path | None, resume: Path | None, recipe: str | None, **options) -> None:
    """Fine-tune torchvision's GoogLeNet on DATA and evaluate it on a held-out test split.

    Defaults are the study's training options: 6 epochs, mini-batch 4, learn rate 0.001,
    SGD with momentum, an 80/10/10 split. Then run `gclf-export RUN_DIR --quantize`.
    An interrupted run (Ctrl-C, kill, power loss) continues with `--resume RUN_DIR`.

    Several processes or machines: `torchrun --nproc_per_node N gclf-train --out RUN ...`
    trains with DistributedDataParallel; --mini-batch-size is then per process (global batch
    = mini-batch-size x N) and rank 0 alone writes RUN.
    """
    require_training_extra()
    from gclf.train.metrics import format_report
    from gclf.train.run import resume_training, run_training

    values = config_values(options)
    if recipe is not None and resume is not None:
        raise UsageError("--recipe goes on by itself where it stopped: give the same --recipe command again instead of --resume")
    if resume is not None:
        given = {name: value for name, value in dict(values, data=data, out=out).items() if name not in ("augment_options", "progress_bar") and _given_on_command_line(name)}
        given["progress_bar"] = values["progress_bar"]
        if values["augment_options"]:
            given["augment_options"] = values["augment_options"]
        result = resume_training(resume_config(resume, given), log=click.echo)
    else:
        if not data:
            raise UsageError("--data is required: a folder with one sub-folder per class (or --resume RUN_DIR to continue an interrupted run)")
        if out is None and _under_torchrun():
            # Each process would make up its own folder name from its own clock.
            raise UsageError("--out is required under torchrun: every process must name the same run folder")
        if out is None:
            if recipe is not None:
                raise UsageError("--recipe needs --out: running the same command again goes on in that folder")
            out = Path("runs") / f"{data[0].resolve().name}-{datetime.now():%Y%m%d-%H%M%S}"
        if recipe is not None:
            given = {name for name in values if name not in ("augment_options", "progress_bar") and _given_on_command_line(name)}
            result = run_recipe(
                RECIPES[recipe], dict(values, out=out), given,
                make_config=lambda stage: TrainConfig(data=data, **stage),
                train=lambda config: run_training(config, log=click.echo),
                resume=lambda run_dir: resume_training(resume_config(run_dir, {"progress_bar": values["progress_bar"]}), log=click.echo),
                log=click.echo,
            )
        else:
            result = run_training(TrainConfig(data=data, out=out, **values), log=click.echo)
    if result is None:
        return  # a torchrun rank other than 0: rank 0 prints the summary
    kept = "lowest validation loss" if result.kept == "best" else "the last epoch, --keep last"
    click.echo(f"\nkept epoch {result.best_epoch} ({kept}); init: {result.init_description}")
    if result.test_report:
        click.echo("test split: " + format_report(result.test_report))
    click.echo(f"run folder: {result.run_dir}  (next: gclf-export {result.run_dir} --quantize)")


def _under_torchrun() -> bool:
    from gclf.train.distributed import Distributed

    return Distributed.from_env() is not None


# What --resume may change: where the run computes, where its decoded images are cached, and
# how much it prints. Everything else
# would make the resumed run differ from the one it continues.
RESUME_MAY_CHANGE = frozenset({"device", "verbose", "verbose_frequency", "progress_bar", "workers", "image_cache"})


def _given_on_command_line(name: str) -> bool:
    source = click.get_current_context().get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _option_flag(name: str) -> str:
    if name == "augment_options":
        return "the augmentation options"
    params = {p.name: p for p in click.get_current_context().command.params}
    return params[name].opts[0] if name in params else name


def _same_option(name: str, asked: Any, config: TrainConfig) -> bool:
    if name == "data":
        return [Path(p).resolve() for p in asked] == [Path(p).resolve() for p in config.data]
    if name == "out":
        return Path(asked).resolve() == Path(config.out).resolve()
    if name == "augment_options":
        return {**config.augment_options, **asked} == config.augment_options
    return dataclasses.replace(config, **{name: asked}).to_dict()[name] == config.to_dict()[name]


def resume_config(run_dir: Path, given: dict[str, Any]) -> TrainConfig:
    """The run's own options (config.json), with the few that --resume may change. An option
    given with another value than the run's is refused, naming it: never silently ignored."""
    from gclf.train.run_folder import load_run_config

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
