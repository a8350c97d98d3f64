"""Side-by-side speed of the ways to run one gclf model, measured in one process and one run.

Rows (each skipped with a reason when it cannot run here):
- OpenCV DNN on the same ONNX file
- onnxruntime fp32 and int8 on pre-decoded tensors (bare `session.run`)
- gclf end to end, JPEG file -> label, fp32 and int8 (`Classifier.predict_files`)

Latency is batch 1 (median and p90); throughput is images/s at `batch_size`. Warm-up runs are
excluded. Ratios are against onnxruntime fp32 at batch 1, so they compare like with like on
whatever machine runs this; absolute numbers only describe that machine.

The PyTorch eager row needs torch, which this package never imports: the `gclf-bench`
command, which sits above the runtime, passes it in as `reference_row`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gclf.runtime.classifier import Classifier, softmax
from gclf.runtime import cpu_class
from gclf.runtime.decode import decode_image
from gclf.runtime.preprocess import preprocess_batch, resize_to_input, to_model_input


@dataclass
class Row:
    name: str
    latency_ms: list[float] | None = None  # batch-1 samples
    throughput_ips: float | None = None  # images per second at the batch size
    rss_mb: float | None = None  # process resident memory after this row
    note: str = ""

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.latency_ms) if self.latency_ms else None

    @property
    def p90_ms(self) -> float | None:
        return float(np.percentile(self.latency_ms, 90)) if self.latency_ms else None


def rss_mb() -> float | None:
    """Current resident set size of this process (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except (ImportError, OSError):
        return None


def time_calls(fn: Callable[[], object], *, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def throughput(fn: Callable[[], object], images_per_call: int, *, repeats: int, warmup: int) -> float:
    samples = time_calls(fn, repeats=repeats, warmup=warmup)
    return images_per_call / (statistics.median(samples) / 1000)


def bench_onnxruntime(name: str, model: Path, batch1: np.ndarray, batch: np.ndarray, threads: int, repeats: int) -> Row:
    clf = Classifier(model, threads=threads)
    lat = time_calls(lambda: clf.logits(batch1), repeats=repeats, warmup=3)
    ips = throughput(lambda: clf.logits(batch), len(batch), repeats=max(3, repeats // 4), warmup=1)
    return Row(name, lat, ips, rss_mb())


def bench_opencv_dnn(model: Path, batch1: np.ndarray, batch: np.ndarray, threads: int, repeats: int) -> Row:
    import cv2

    try:
        cv2.setNumThreads(threads)
        net = cv2.dnn.readNetFromONNX(str(model))

        def run(x: np.ndarray) -> np.ndarray:
            net.setInput(x)
            return net.forward()

        lat = time_calls(lambda: run(batch1), repeats=repeats, warmup=3)
        ips = throughput(lambda: run(batch), len(batch), repeats=max(3, repeats // 4), warmup=1)
        return Row("OpenCV DNN fp32", lat, ips, rss_mb())
    except cv2.error as exc:
        return Row("OpenCV DNN fp32", note=f"could not run: {str(exc).strip().splitlines()[-1][:80]}")


def bench_end_to_end(name: str, model: Path, files: Sequence[Path], batch_size: int, threads: int, repeats: int) -> Row:
    """JPEG on disk -> label, batch 1 latency per file and folder throughput, through gclf's own path."""
    clf = Classifier(model, threads=threads)
    one = [files[0]]
    lat = time_calls(lambda: list(clf.predict_files(one, batch_size=1)), repeats=repeats, warmup=3)
    ips = throughput(lambda: list(clf.predict_files(files, batch_size=batch_size)), len(files), repeats=3, warmup=1)
    return Row(name, lat, ips, rss_mb())


def paired_ratio(candidate: Callable[[], object], reference: Callable[[], object], *, rounds: int = 5) -> float:
    """Median over rounds of time(reference) / time(candidate), the two timed back to back in
    each round, so a load that comes and goes on the machine hits both alike."""
    candidate()
    reference()
    ratios = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        reference()
        t1 = time.perf_counter()
        candidate()
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(ratios)


def end_to_end_vs_bare(model: Path, files: Sequence[Path], batch_size: int, threads: int) -> float:
    """Images/s of gclf's file->label path over images/s of bare `session.run` on the same
    images already decoded, resized and normalised, at the same batch size."""
    clf = Classifier(model, threads=threads)
    n = len(files) - len(files) % batch_size or len(files)
    files = list(files[:n])
    tensors = [preprocess_batch([decode_image(p) for p in files[i : i + batch_size]], clf.spec) for i in range(0, n, batch_size)]
    return paired_ratio(
        lambda: list(clf.predict_files(files, batch_size=batch_size)),
        lambda: [clf.logits(t) for t in tensors],
    )


def stage_breakdown(model: Path, files: Sequence[Path], threads: int) -> dict[str, float]:
    """Median milliseconds per image of each step from JPEG file to label (batch 1)."""
    clf = Classifier(model, threads=threads)
    spec = clf.spec
    times: dict[str, list[float]] = {k: [] for k in ("read+decode", "resize", "normalise+layout", "inference", "postprocess")}
    for path in list(files) * 2:
        t0 = time.perf_counter()
        rgb = decode_image(path)
        t1 = time.perf_counter()
        small = resize_to_input(rgb, spec)
        t2 = time.perf_counter()
        x = to_model_input(small, spec)
        t3 = time.perf_counter()
        logits = clf.logits(x)
        t4 = time.perf_counter()
        clf.prediction(softmax(logits)[0])
        t5 = time.perf_counter()
        for key, a, b in zip(times, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
            times[key].append((b - a) * 1000)
    return {k: statistics.median(v[len(files):]) for k, v in times.items()}  # first pass is warm-up


def startup_seconds(repeats: int = 5) -> float:
    """Median wall time of `gclf-infer --help` in a fresh interpreter."""
    code = "import sys; from gclf.runtime.cli.infer import main; sys.argv=['gclf-infer','--help']; main()"
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


# A row measured outside the runtime (gclf-bench's PyTorch row):
# (model, batch-1 input, batch input, threads, repeats) -> Row.
RowMaker = Callable[[Path, np.ndarray, np.ndarray, int, int], Row]


def run_benchmark(fp32: Path, int8: Path | None, images: Sequence[Path], *, batch_size: int = 8, threads: int = 0, repeats: int = 30, reference_row: RowMaker | None = None, log: Callable[[str], None] = print) -> list[Row]:
    threads = threads or os.cpu_count() or 1
    clf = Classifier(fp32, threads=threads)
    spec = clf.spec
    decoded = [decode_image(p) for p in images[:batch_size]]
    while len(decoded) < batch_size:
        decoded += decoded[: batch_size - len(decoded)]
    batch = preprocess_batch(decoded, spec)
    batch1 = batch[:1].copy()
    log(f"machine: {os.cpu_count()} CPUs; threads per engine: {threads}; batch size {batch_size}; {repeats} timed batch-1 runs after warm-up")
    rows = [bench_onnxruntime("onnxruntime fp32", fp32, batch1, batch, threads, repeats)]
    if int8:
        rows.append(bench_onnxruntime("onnxruntime int8", int8, batch1, batch, threads, repeats))
    rows.append(bench_opencv_dnn(fp32, batch1, batch, threads, repeats))
    if reference_row is not None:
        rows.append(reference_row(fp32, batch1, batch, threads, repeats))
    rows.append(bench_end_to_end("gclf file->label fp32", fp32, images, batch_size, threads, repeats))
    if int8:
        rows.append(bench_end_to_end("gclf file->label int8", int8, images, batch_size, threads, repeats))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    base = rows[0].median_ms
    lines = [f"{'engine':<24} {'b1 median ms':>12} {'b1 p90 ms':>10} {'speed vs ORT fp32 b1':>21} {'images/s (batch)':>17} {'RSS MB':>7}  note"]
    for r in rows:
        ratio = f"{base / r.median_ms:.2f}x" if r.median_ms and base else "-"
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"
        lines.append(f"{r.name:<24} {fmt(r.median_ms, '12.2f')} {fmt(r.p90_ms, '10.2f')} {ratio:>21} {fmt(r.throughput_ips, '17.1f')} {fmt(r.rss_mb, '7.0f')}  {r.note}")
    return "\n".join(lines)


def recommend(rows: Sequence[Row]) -> str:
    """Which of the two files to deploy on this machine, from the measured batch-1 latency."""
    by_name = {r.name: r for r in rows}
    fp32, int8 = by_name.get("onnxruntime fp32"), by_name.get("onnxruntime int8")
    if not int8 or not int8.median_ms or not fp32 or not fp32.median_ms:
        return "use the fp32 model (no int8 model measured)"
    speedup = fp32.median_ms / int8.median_ms
    if speedup >= 1.1:
        return f"use the int8 model on this machine: {speedup:.2f}x faster than fp32 at batch 1"
    return (
        f"use the fp32 model on this machine: int8 is only {speedup:.2f}x its speed here "
        "(int8 pays off with int8 dot-product instructions: x86 VNNI, ARMv8.2 dot product as on a Raspberry Pi 5)"
    )


# --- int8 across CPU classes (issue 22) --------------------------------------------------------
# Kept apart from the rows above: this section only reads the int8 file's metadata and this CPU.


def int8_cpu_lines(int8: Path | None, rows: Sequence[Row]) -> list[str]:
    """The CPU this run measured (name and int8 class), the int8 file's gate CPU class and
    saturation safety, and whether running it here matters (gclf.runtime.cpu_class)."""
    here = cpu_class.detect_cpu_class()
    lines = [f"CPU: {cpu_class.cpu_model_name()}, {os.cpu_count()} CPUs; int8 class {here}: {cpu_class.DESCRIPTIONS.get(here, here)}"]
    if int8 is None:
        return lines
    quant = Classifier(int8, threads=1).metadata.quantization or {}
    by_name = {r.name: r for r in rows}
    fp32_row, int8_row = by_name.get("onnxruntime fp32"), by_name.get("onnxruntime int8")
    if fp32_row and int8_row and fp32_row.median_ms and int8_row.median_ms:
        lines.append(f"int8 vs fp32 at batch 1 on this {here} CPU: {fp32_row.median_ms / int8_row.median_ms:.2f}x ({int8_row.median_ms:.2f} vs {fp32_row.median_ms:.2f} ms)")
    safe = quant.get("saturation_safe")
    lines.append(
        f"int8 file: parity gate measured on {quant.get('parity_cpu_class', 'an unrecorded CPU class')}; "
        + {True: "saturation-safe (7-bit or u8 weights: the same int8 sums on every CPU class)",
           False: "8-bit weights (its int8 sums saturate on AVX2 CPUs without VNNI)",
           None: "saturation safety not recorded"}[safe]
    )
    note = cpu_class.int8_cpu_note(quant, here)
    if note:
        lines.append("note: " + note)
    return lines
