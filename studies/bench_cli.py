"""`gclf-bench`: how fast each way of running a gclf model is on this machine, side by side.

The measuring is gclf.runtime.bench (torch-free, so a runtime-only install on a Pi measures
OpenCV and onnxruntime); the PyTorch eager row lives here, above both, because it needs the
training side's checkpoint loader and torch, which only the `train` extra installs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gclf.runtime.cli.support import report_errors
from gclf.runtime.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from gclf.runtime.bench import Row


def pytorch_row(model: Path, batch1: np.ndarray, batch: np.ndarray, threads: int, repeats: int) -> Row:
    """PyTorch eager on the run's best.pt beside `model`; a skipped row when either is missing."""
    from gclf.runtime.bench import Row, rss_mb, throughput, time_calls

    name = "PyTorch eager fp32"
    checkpoint = model.parent / "best.pt"
    if not checkpoint.is_file():
        return Row(name, note="skipped: no best.pt beside the model")
    try:
        import torch

        from gclf.train.checkpoint import load_gclf_checkpoint
        from gclf.train.model import model_from_checkpoint
    except ImportError as exc:
        return Row(name, note=f"skipped: {exc.name} not installed (the `train` extra)")
    torch.set_num_threads(threads)
    network = model_from_checkpoint(load_gclf_checkpoint(checkpoint)).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(x)).numpy()

    lat = time_calls(lambda: run(batch1), repeats=repeats, warmup=3)
    ips = throughput(lambda: run(batch), len(batch), repeats=max(3, repeats // 4), warmup=1)
    return Row(name, lat, ips, rss_mb())


def _default_images(model: Path) -> list[Path]:
    """The run's test split (JPEGs first), when the model sits in its run folder."""
    manifest = model.parent / "manifest.json"
    if not manifest.is_file():
        return []
    splits = json.loads(manifest.read_text())["splits"]
    files = [Path(p) for p, _ in splits.get("test", []) + splits.get("val", [])]
    return sorted(files, key=lambda p: p.suffix.lower() not in (".jpg", ".jpeg"))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--int8", "int8", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="int8 model to compare [default: model.int8.onnx beside MODEL, if present].")
@click.option("--images", type=click.Path(exists=True, path_type=Path), default=None, help="Folder of images for the file->label rows [default: the run's test split].")
@click.option("--batch-size", type=click.IntRange(min=1), default=8)
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Threads per engine (0: one per CPU).")
@click.option("--repeats", type=click.IntRange(min=5), default=30, help="Timed batch-1 runs per engine.")
@report_errors
def main(model: Path, int8: Path | None, images: Path | None, batch_size: int, threads: int, repeats: int) -> None:
    """Benchmark MODEL (and its int8 copy) on every installed engine (onnxruntime, OpenVINO), against PyTorch and OpenCV DNN; says which to use."""
    from gclf.runtime.bench import end_to_end_vs_bare, format_table, int8_cpu_lines, peak_rss_mb, recommend, run_benchmark, stage_breakdown, startup_seconds
    from gclf.runtime.listing import expand_inputs

    if int8 is None and (model.parent / "model.int8.onnx").is_file() and model.name != "model.int8.onnx":
        int8 = model.parent / "model.int8.onnx"
    files = expand_inputs([images]) if images else _default_images(model)
    if not files:
        raise UsageError("no images to benchmark with: pass --images DIR")
    files = files[: max(4 * batch_size, 32)]
    rows = run_benchmark(model, int8, files, batch_size=batch_size, threads=threads, repeats=repeats, reference_row=pytorch_row, log=click.echo)
    click.echo(format_table(rows))
    for line in int8_cpu_lines(int8, rows):
        click.echo(line)
    for name, path in (("fp32", model), ("int8", int8)):
        if path is not None:
            ratio = end_to_end_vs_bare(path, files, batch_size, threads)
            click.echo(f"gclf file->label {name} images/s vs bare session.run on pre-decoded tensors, batch {batch_size} (paired rounds): {ratio:.2f}x")
    stages = stage_breakdown(model, files[:16], threads or 0)
    total = sum(stages.values())
    click.echo("where the time goes, fp32, batch 1 (median ms per image): " + ", ".join(f"{k} {v:.2f} ({v / total * 100:.0f}%)" for k, v in stages.items()))
    click.echo(f"start-up: `gclf-infer --help` takes {startup_seconds():.2f} s; peak memory of this benchmark process {peak_rss_mb() or 0:.0f} MB")
    click.echo("recommendation: " + recommend(rows))


if __name__ == "__main__":
    main()
