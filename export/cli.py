"""`gclf-export`: write a trained run as a self-describing ONNX model, optionally int8 too."""

from __future__ import annotations

from pathlib import Path

import click

from gclf.export.quantize import CALIBRATION_SIZE
from gclf.runtime.cli.support import report_errors
from gclf.runtime.errors import QualityGateError
from gclf.train.cli import require_training_extra


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Folder for model.onnx / model.int8.onnx, MODEL_CARD.md and a faces model's detector [default: the run folder].")
@click.option("--quantize", is_flag=True, help="Also write model.int8.onnx (static QDQ int8, calibrated on training images).")
@click.option("--calibration-size", type=click.IntRange(min=1), default=CALIBRATION_SIZE, help="Training images used to calibrate int8 (class-balanced).")
@click.option("--calibration-method", type=click.Choice(["MinMax", "Entropy", "Percentile"]), default="MinMax")
@click.option("--per-channel/--per-tensor", default=True, help="Per-channel weight quantization.")
@click.option(
    "--int8-weights", type=click.Choice(["7bit", "8bit"]), default="7bit",
    help="7bit: weights in [-64, 64], so x86 AVX2 CPUs (no VNNI) give the same int8 answers as VNNI and ARM ones (docs/int8.md). "
    "8bit: full range; its parity then holds only on CPUs like the exporting one.",
)
@click.option("--no-calibrate", "no_calibrate", is_flag=True, help="Record no confidence calibration and no default decision threshold: the runtime then answers with the raw softmax (by default each file records a temperature and a threshold fitted on the run's validation split).")
@click.option("--force", is_flag=True, help="Write the int8 model even if it fails the parity gate (agreement >= 99%, accuracy drop <= 0.5 points).")
@report_errors
def main(source: Path, out: Path | None, quantize: bool, calibration_size: int, calibration_method: str, per_channel: bool, int8_weights: str, no_calibrate: bool, force: bool) -> None:
    """Export SOURCE (a gclf run folder or checkpoint) to ONNX.

    The model file carries its preprocessing and class names; beside it go MODEL_CARD.md and,
    for a model trained on YuNet face crops, that detector's file. The folder is all a device
    needs: `gclf-infer RUN_DIR/model.onnx photos/`.
    """
    require_training_extra()
    from gclf.export.pipeline import export_run
    from gclf.export.quantize import QuantizeOptions

    try:
        export_run(source, out=out, quantize=quantize, calibration_size=calibration_size, options=QuantizeOptions(calibration_method, per_channel, reduce_range=int8_weights == "7bit"), force=force, calibrate=not no_calibrate, log=click.echo)
    except QualityGateError as exc:
        raise QualityGateError(f"{exc}, or pass --force to write the best attempt anyway") from None


if __name__ == "__main__":
    main()
