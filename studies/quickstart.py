"""`gclf-quickstart`: the whole job on a generated data set, in about a minute on a laptop CPU.

It makes a small two-class image set (no download, nothing shipped), then runs exactly what
a user runs on their own photos: train -> export fp32 -> quantize int8 -> classify, and ends
with a summary of what it made, how well it did and how long each stage took.

A demo, sized to be quick: small generated images and a 112 px input (a quarter of the
operations of the study's 224 px; the same size the recommended recipe starts at), so
training, export and calibration each take seconds. tools/arm_check.py (CI's emulated Pi)
runs the two models it writes; the model carries its input size, so nothing there assumes 224.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from gclf.runtime.cli.support import report_errors
from gclf.runtime.errors import UsageError


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("gclf-quickstart"), help="Folder for the generated data, the run and the models.")
@click.option("--per-class", type=click.IntRange(min=10), default=80, help="Generated images per class.")
@click.option("--max-epochs", type=click.IntRange(min=1), default=4)
@click.option("--image-size", type=click.IntRange(min=32), default=112, help="Model input size in pixels (gclf-train's default is the study's 224).")
@report_errors
def main(out: Path, per_class: int, max_epochs: int, image_size: int) -> None:
    """Generate a small image set, train, export, quantize and classify: gclf end to end."""
    from gclf.train.cli import require_training_extra

    require_training_extra()
    from gclf.train.distributed import refuse_torchrun

    refuse_torchrun("gclf-quickstart")
    from gclf.train.synthetic import CLASSES

    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} already exists and is not empty; remove it or pass another --out")
    started = time.monotonic()
    stages = _Stages()
    data = _generate(out, per_class)
    stages.done("generate")
    result = _train(data, out, image_size, max_epochs)
    stages.done("train")
    exported = _export(result.run_dir)
    stages.add("export", exported.fp32_s)
    stages.add("int8", exported.int8_s)
    stages.mark = time.monotonic()
    correct, total = _classify(exported)
    stages.done("classify")
    _summary(data, per_class, image_size, result, exported, correct, total)
    click.echo(f"  time         {time.monotonic() - started:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in stages.seconds.items()) + ")")
    click.echo(f"\nNext: gclf-infer {result.run_dir / 'model.int8.onnx'} {data / CLASSES[0]}")
    click.echo("Your own photos: gclf-train --data PHOTOS/  (one sub-folder per class), then gclf-export RUN --quantize")


class _Stages:
    """Seconds per stage, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.mark = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.add(name, now - self.mark)
        self.mark = now

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = seconds


def _generate(out: Path, per_class: int) -> Path:
    from gclf.train.synthetic import CLASSES, make_shapes_dataset

    # Small pictures (48-160 px a side): decoding and squashing them is not what a demo should wait for.
    data = make_shapes_dataset(out / "data", per_class=per_class, seed=0, min_side=48, max_side=160)
    click.echo(f"[1/4] generated {2 * per_class} images ({', '.join(CLASSES)}) in {data}")
    return data


def _train(data: Path, out: Path, image_size: int, max_epochs: int):
    from gclf.train.config import TrainConfig
    from gclf.train.run import run_training

    click.echo(f"[2/4] training GoogLeNet at {image_size} px from random initialisation (no ImageNet weights needed)")
    # The study's options (mini-batch 4, learn rate 0.001, SGD with momentum), fewer epochs.
    config = TrainConfig(data=(data,), out=out / "run", weights="none", max_epochs=max_epochs, image_size=image_size, verbose=False)
    return run_training(config, log=lambda line: click.echo("      " + line))


def _export(run_dir: Path):
    from gclf.export.pipeline import export_run

    click.echo("[3/4] exporting to ONNX (fp32) and int8")
    return export_run(run_dir, quantize=True, log=lambda line: click.echo("      " + line))


def _classify(exported) -> tuple[int, int]:
    """The int8 model on the run's test split, through the torch-free runtime: (right, photos)."""
    from gclf.runtime.classifier import Classifier

    click.echo("[4/4] classifying the held-out test images with the int8 model (torch-free runtime)")
    clf = Classifier(exported.int8_path)
    test = [(Path(p), label) for p, label in exported.run.manifest["splits"]["test"]]
    results = list(clf.predict_files([p for p, _ in test]))
    correct = sum(r.prediction is not None and r.prediction.best == label for r, (_, label) in zip(results, test))  # top-1, unsure or not
    for r in results[:4]:
        click.echo(f"      {r.path.name:<22} -> {r.prediction.label} ({r.prediction.confidence:.2f})")
    return correct, len(test)


def _summary(data: Path, per_class: int, image_size: int, result, exported, correct: int, total: int) -> None:
    fp32 = exported.fp32
    parity = exported.int8.parity if exported.int8 is not None else {}
    report = result.test_report or {}
    click.echo("\nSummary")
    click.echo(f"  data         {data} ({2 * per_class} generated images; split 80/10/10, seed 0; input {image_size} px)")
    click.echo(f"  run folder   {result.run_dir} (manifest, history, metrics, summary.md and plots, best.pt)")
    click.echo(f"  models       model.onnx ({fp32.fp32_path.stat().st_size / 1e6:.1f} MB), model.int8.onnx ({exported.int8_path.stat().st_size / 1e6:.1f} MB)")
    click.echo(f"  init         {result.init_description}, {len(result.history)} epochs, best epoch {result.best_epoch}")
    click.echo(f"  test split   PyTorch {report.get('accuracy', float('nan')) * 100:.1f}% | int8 runtime {correct}/{total} = {correct / max(total, 1) * 100:.1f}% (agreement with fp32 {parity.get('top1_agreement', float('nan')) * 100:.1f}%)")
    click.echo(f"  torch vs ONNX max |logit difference| {fp32.max_logit_diff:.1e}")


if __name__ == "__main__":
    main()
