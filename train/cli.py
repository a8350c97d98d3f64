"""`gclf-train`: fine-tune GoogLeNet on a folder with one sub-folder per class."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from gclf.runtime.cli_support import report_errors
from gclf.runtime.errors import MissingDependencyError


class SplitParam(click.ParamType):
    name = "TRAIN,VAL,TEST"

    def convert(self, value, param, ctx):
        from gclf.train.split import SplitFractions
        from gclf.runtime.errors import UsageError

        if not isinstance(value, str):
            return value
        try:
            return SplitFractions.parse(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


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
@click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder with one sub-folder per class (or train/ val/ test/ sub-folders). Repeat to combine folders.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run folder to create [default: runs/<data>-<time>].")
@click.option("--weights", default="imagenet", help="'imagenet' (torchvision's cache/download), 'none' (random init), or a path to a GoogLeNet state dict or gclf checkpoint.")
@click.option("--max-epochs", type=click.IntRange(min=1), default=6)
@click.option("--batch-size", "--mini-batch-size", "batch_size", type=click.IntRange(min=1), default=4)
@click.option("--learn-rate", "--initial-learn-rate", "learn_rate", type=click.FloatRange(min=0, min_open=True), default=1e-3)
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.9)
@click.option("--optimizer", type=click.Choice(["sgdm", "adam", "adamw"]), default="sgdm", help="sgdm: SGD with momentum (the study's).")
@click.option("--lr-schedule", type=click.Choice(["none", "cosine", "onecycle"]), default="none", help="Learn-rate schedule, stepped every iteration.")
@click.option("--l2", type=click.FloatRange(min=0), default=1e-4, help="L2 regularisation (weight decay).")
@click.option("--split", type=SplitParam(), default="0.8,0.1,0.1", help="Train, validation and test fractions.")
@click.option("--seed", type=int, default=0, help="Seed for the split, initialisation and shuffling.")
@click.option("--image-size", type=click.IntRange(32, 1024), default=224, help="Square input size the images are squashed to.")
@click.option("--input-kind", type=click.Choice(["whole_image", "faces"]), default="whole_image", help="What the photos show: 'faces' (face crops; the live runtime then detects and crops faces first) or 'whole_image'.")
@click.option("--device", default="auto", help="'auto' (GPU when present), 'cpu' or 'cuda'.")
@click.option("--verbose/--quiet", default=True, help="Print the verbose table of iterations (as the study's verbose option).")
@click.option("--verbose-frequency", type=click.IntRange(min=1), default=50, help="Iterations between verbose rows.")
@report_errors
def main(data: tuple[Path, ...], out: Path | None, **options) -> None:
    """Fine-tune torchvision's GoogLeNet on DATA and evaluate it on a held-out test split.

    Defaults are the study's training options: 6 epochs, mini-batch 4, learn rate 0.001,
    SGD with momentum, an 80/10/10 split. Then run `gclf-export RUN_DIR --quantize`.
    """
    require_training_extra()
    from gclf.train.metrics import format_report
    from gclf.train.run import TrainConfig, run_training

    if out is None:
        out = Path("runs") / f"{data[0].resolve().name}-{datetime.now():%Y%m%d-%H%M%S}"
    config = TrainConfig(data=data, out=out, **options)
    result = run_training(config, log=click.echo)
    click.echo(f"\nbest epoch {result.best_epoch} (lowest validation loss); init: {result.init_description}")
    if result.test_report:
        click.echo("test split: " + format_report(result.test_report))
    click.echo(f"run folder: {result.run_dir}  (next: gclf-export {result.run_dir} --quantize)")


if __name__ == "__main__":
    main()
