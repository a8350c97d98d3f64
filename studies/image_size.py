"""Edge-sized models, measured: accuracy and speed of the same recipe at several input sizes.

Input size is the biggest speed lever on a small CPU (about 4x fewer operations at 112 px
than at 224). For each size, every seed's run is trained as in the other experiments
(OUT/runs/px-<size>-seed<seed>, finished runs reused), then exported to fp32 and int8 ONNX
with gclf.export's own functions, and measured through the runtime:
  - accuracy fp32 and int8 on the run's test split, and on an extra held-out folder of
    class sub-folders that no run ever trained on (--extra-test);
  - batch-1 latency fp32 and int8 on this machine (gclf.runtime.bench's onnxruntime row).
The measurement is saved beside each run (edge.json) and reused while its inputs stay the same.

Outputs in OUT: image-size.md (table with data, split, init and options stated),
image-size.json, image-size.png (accuracy against latency).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from gclf.runtime.cpu_class import cpu_model_name as cpu_name
from gclf.export.quantize import CALIBRATION_SIZE
from gclf.runtime.errors import BadDataError
from gclf.runtime.atomic import write_atomic_with, write_json_atomic, write_text_atomic
from gclf.runtime.listing import list_images
from gclf.runtime.log import Log
from gclf.train.config import TrainConfig
from gclf.studies.experiment import Arm, Outcome, header, run_arms

KIND = "image-size"
MEASURED = "edge.json"


def image_size_arms(sizes: Sequence[int]) -> list[Arm]:
    return [Arm(f"px-{s}", f"{s} px", {"image_size": s}) for s in sizes]


@dataclass(frozen=True)
class ExtraTest:
    """The extra held-out folder: (file, class name) pairs, at most `max_per_class` per class."""

    root: Path
    items: tuple[tuple[Path, str], ...]
    max_per_class: int | None

    def describe(self) -> str:
        counts = {c: sum(1 for _, k in self.items if k == c) for c in sorted({k for _, k in self.items})}
        limit = f", at most {self.max_per_class} per class drawn with seed 0" if self.max_per_class else ""
        return f"{self.root} ({', '.join(f'{c} {n}' for c, n in counts.items())}{limit})"


def read_extra_test(root: Path, max_per_class: int | None) -> ExtraTest:
    """A folder with one sub-folder per class, as gclf-train's DATA (nested images count)."""
    import random

    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items: list[tuple[Path, str]] = []
    for folder in folders:
        files = list_images(folder)
        if max_per_class is not None and len(files) > max_per_class:
            files = sorted(random.Random(0).sample(files, max_per_class))
        items += [(p, folder.name) for p in files]
    if len(folders) < 2 or not items:
        raise BadDataError(f"{root}: an extra test folder needs one sub-folder of images per class (at least 2)")
    return ExtraTest(root.resolve(), tuple(items), max_per_class)


@dataclass
class Measurement:
    """One trained run of one size, exported and measured."""

    arm: str
    seed: int
    image_size: int
    test_fp32: float
    test_int8: float
    test_images: int
    latency_fp32_ms: float  # batch-1 median
    latency_int8_ms: float
    int8_gate_passed: bool  # whether int8 passed gclf-export's parity gate (written anyway here)
    extra_fp32: float | None = None
    extra_int8: float | None = None
    extra_images: int = 0
    extra_unreadable: int = 0
    extra_key: str = ""  # what extra test it was measured on (reused only for the same)
    threads: int = 0
    repeats: int = 0


def _accuracy(model: Path, items: Sequence[tuple[Path, str]]) -> tuple[float, int, int]:
    """(accuracy, images classified, images unreadable) through the runtime, file -> label."""
    from gclf.runtime.classifier import Classifier

    clf = Classifier(model)
    correct = done = failed = 0
    for result, (_, label) in zip(clf.predict_files([p for p, _ in items], batch_size=32), items):
        if result.prediction is None:
            failed += 1
            continue
        done += 1
        correct += result.prediction.best == label
    return (correct / done if done else float("nan")), done, failed


def _latency_ms(model: Path, batch1: np.ndarray, threads: int, repeats: int) -> float:
    from gclf.runtime.bench import bench_onnxruntime

    row = bench_onnxruntime(model.name, model, batch1, batch1, threads, repeats)
    return float(row.median_ms)


def measure_run(outcome: Outcome, extra: ExtraTest | None, *, threads: int, repeats: int, log: Log) -> Measurement:
    """Export (once) and measure one finished run."""
    from gclf.export.pipeline import FP32_NAME, INT8_NAME, export_run, locate_run
    from gclf.runtime.decode import decode_image
    from gclf.runtime.preprocess import preprocess_batch

    run_dir = Path(outcome.run_dir)
    extra_key = "" if extra is None else f"{extra.root}|{extra.max_per_class}|{len(extra.items)}"
    saved = run_dir / MEASURED
    if saved.is_file():
        previous = Measurement(**json.loads(saved.read_text(encoding="utf-8")))
        if previous.extra_key == extra_key and previous.repeats == repeats and previous.threads == threads:
            log(f"{outcome.arm}, seed {outcome.seed}: reusing its measurement ({saved.name})")
            return previous
    run = locate_run(run_dir)
    if extra is not None:  # before the export: a wrong folder fails in seconds
        classes = set(run.manifest["class_names"])
        strangers = sorted({c for _, c in extra.items} - classes)
        if strangers:
            raise BadDataError(f"--extra-test {extra.root}: class folder(s) {strangers} are not among the model's classes {sorted(classes)}")
    fp32, int8 = run_dir / FP32_NAME, run_dir / INT8_NAME
    if not (fp32.is_file() and int8.is_file()):
        log(f"{outcome.arm}, seed {outcome.seed}: exporting {fp32.name} and {int8.name}")
        # force: the experiment measures what int8 gives; whether it passed the gate is a column.
        # quiet: the export's own lines would drown the table.
        export_run(run_dir, quantize=True, force=True, log=lambda _line: None)
    from gclf.runtime.classifier import Classifier

    meta8 = Classifier(int8).metadata
    gate = bool(((meta8.quantization or {}).get("gate") or {}).get("passed", False))
    spec = meta8.spec
    test = [(Path(p), label) for p, label in run.manifest["splits"]["test"]]
    t32, n_test, _ = _accuracy(fp32, test)
    t8, _, _ = _accuracy(int8, test)
    batch1 = preprocess_batch([decode_image(test[0][0] if test else next(iter(extra.items))[0])], spec)
    m = Measurement(
        outcome.arm, outcome.seed, spec.input_height, t32, t8, n_test,
        _latency_ms(fp32, batch1, threads, repeats), _latency_ms(int8, batch1, threads, repeats), gate,
        extra_key=extra_key, threads=threads, repeats=repeats,
    )
    if extra is not None:
        m.extra_fp32, m.extra_images, m.extra_unreadable = _accuracy(fp32, extra.items)
        m.extra_int8, _, _ = _accuracy(int8, extra.items)
    write_json_atomic(saved, dataclasses.asdict(m))
    return m


def run_image_size(base: TrainConfig, sizes: Sequence[int], seeds: Sequence[int], out: Path, log: Log, *, extra: ExtraTest | None, threads: int, repeats: int) -> Path:
    """Train (or reuse) every size x seed, export and measure each; write the report."""
    arms = image_size_arms(sizes)
    outcomes = run_arms(base, arms, seeds, out, log)
    threads = threads or os.cpu_count() or 1
    measurements = []
    for o in outcomes:
        if o.diverged:
            log(f"{o.arm}, seed {o.seed}: diverged, nothing to export")
            continue
        m = measure_run(o, extra, threads=threads, repeats=repeats, log=log)
        log(f"{o.arm}, seed {o.seed}: test fp32 {m.test_fp32 * 100:.1f}% int8 {m.test_int8 * 100:.1f}%; batch-1 fp32 {m.latency_fp32_ms:.1f} ms int8 {m.latency_int8_ms:.1f} ms")
        measurements.append(m)
    return write_image_size_report(base, seeds, arms, outcomes, measurements, extra, out, threads=threads, repeats=repeats)


# --- table and plot ---------------------------------------------------------------------------


def _cell(values: Sequence[float | None], scale: float = 100.0, unit: str = "%", digits: int = 1) -> str:
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return "n/a"
    mean = f"{statistics.fmean(vals) * scale:.{digits}f}{unit}"
    if len(vals) == 1:
        return mean
    return f"{mean} ({min(vals) * scale:.{digits}f}–{max(vals) * scale:.{digits}f})"


def size_table(arms: Sequence[Arm], measurements: Sequence[Measurement], outcomes: Sequence[Outcome], extra: ExtraTest | None) -> list[str]:
    extra_cols = " extra fp32 | extra int8 |" if extra else ""
    lines = [
        f"| input size | test fp32 | test int8 |{extra_cols} batch-1 fp32 | batch-1 int8 | int8 gate passed | training time |",
        "|---|---|---|" + ("---|---|" if extra else "") + "---|---|---|---|",
    ]
    for arm in arms:
        mine = [m for m in measurements if m.arm == arm.name]
        runs = [o for o in outcomes if o.arm == arm.name]
        extra_cells = f" {_cell([m.extra_fp32 for m in mine])} | {_cell([m.extra_int8 for m in mine])} |" if extra else ""
        train_s = statistics.fmean([o.wall_time_s for o in runs]) if runs else 0.0
        lines.append(
            f"| {arm.label} | {_cell([m.test_fp32 for m in mine])} | {_cell([m.test_int8 for m in mine])} |{extra_cells} "
            f"{_cell([m.latency_fp32_ms for m in mine], 1.0, ' ms')} | {_cell([m.latency_int8_ms for m in mine], 1.0, ' ms')} | "
            f"{sum(m.int8_gate_passed for m in mine)}/{len(mine)} | {train_s:.0f} s |"
        )
    return lines


def plot(arms: Sequence[Arm], measurements: Sequence[Measurement], dest: Path, title: str, extra: bool) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    series = [("test_fp32", "latency_fp32_ms", "test split, fp32", "o", "#1f77b4"), ("test_int8", "latency_int8_ms", "test split, int8", "s", "#1f77b4")]
    if extra:
        series += [("extra_fp32", "latency_fp32_ms", "extra test, fp32", "o", "#ff7f0e"), ("extra_int8", "latency_int8_ms", "extra test, int8", "s", "#ff7f0e")]
    for acc_key, lat_key, name, marker, colour in series:
        xs, ys = [], []
        for arm in arms:
            mine = [m for m in measurements if m.arm == arm.name and getattr(m, acc_key) is not None]
            if not mine:
                continue
            x = statistics.median(getattr(m, lat_key) for m in mine)
            y = statistics.fmean(getattr(m, acc_key) for m in mine) * 100
            xs.append(x)
            ys.append(y)
            ax.annotate(arm.label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.plot(xs, ys, marker=marker, linestyle="-" if "fp32" in name else "--", color=colour, label=name,
                markerfacecolor=colour if "fp32" in name else "white")
    ax.set_xlabel("batch-1 latency on this machine (ms, median)")
    ax.set_ylabel("accuracy (%), mean over seeds")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    write_atomic_with(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def write_image_size_report(base: TrainConfig, seeds: Sequence[int], arms: Sequence[Arm], outcomes: Sequence[Outcome], measurements: Sequence[Measurement], extra: ExtraTest | None, out: Path, *, threads: int, repeats: int) -> Path:
    title = "Input size: accuracy and speed, fp32 and int8"
    note = (
        f"latency: batch 1, median of {repeats} timed onnxruntime runs after warm-up (gclf.runtime.bench), "
        f"{threads} thread(s), on {cpu_name()} ({os.cpu_count()} CPUs); int8: QDQ, calibrated on at most {CALIBRATION_SIZE} class-balanced training-split images, "
        "written even where it misses gclf-export's parity gate (see the gate column); extra test: "
        + (extra.describe() + ", never trained on" if extra else "none")
    )
    lines = header(title, base, seeds, arms, outcomes, note) + size_table(arms, measurements, outcomes, extra)
    lines += ["", "Cells: mean over seeds (min–max when more than one).", "", f"![{title}]({KIND}.png)", "",
              "Runs: " + ", ".join(f"`runs/{Path(o.run_dir).name}`" for o in outcomes), ""]
    md = out / f"{KIND}.md"
    write_text_atomic(md, "\n".join(lines))
    plot(arms, measurements, out / f"{KIND}.png", title, extra is not None)
    write_json_atomic(out / f"{KIND}.json", {
        "experiment": KIND, "seeds": list(seeds), "options": base.to_dict(), "cpu": cpu_name(), "threads": threads, "repeats": repeats,
        "extra_test": None if extra is None else {"root": str(extra.root), "images": len(extra.items), "max_per_class": extra.max_per_class},
        "runs": [dataclasses.asdict(o) for o in outcomes], "measurements": [dataclasses.asdict(m) for m in measurements],
    })
    return md
