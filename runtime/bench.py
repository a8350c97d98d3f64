"""Side-by-side speed of the ways to run one gclf model, measured in one process and one run.

Rows (each skipped with a reason when it cannot run here):
- every engine installed (gclf.runtime.engine) on the fp32 and int8 files, on pre-decoded
  tensors (the bare engine call): onnxruntime (on an AMX CPU also without the AMX weight
  layout, the path gclf took before), OpenVINO at fp32 and at bf16, and on the int8 file;
  each after its parity check against the model's reference outputs (a refused engine's row
  says why, and is never recommended); these rows take turns call by call, so the
  recommendation among them holds on a machine whose load comes and goes
- OpenCV DNN on the same ONNX file
- gclf end to end, JPEG file -> label, fp32 and int8 (`Classifier.predict_files`), per engine

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

from gclf.runtime.classifier import Classifier
from gclf.runtime import cpu_class
from gclf.runtime.engine import DEFAULT_ENGINE, DEFAULT_PRECISION, ENGINES, describe, open_engine
from gclf.runtime.errors import EngineRefusedError, GclfError, MissingDependencyError, install_hint
from gclf.runtime.decode import decode_image
from gclf.runtime.preprocess import preprocess_batch, resize_to_input, to_model_input


@dataclass
class Row:
    name: str
    latency_ms: list[float] | None = None  # batch-1 samples
    throughput_ips: float | None = None  # images per second at the batch size
    rss_mb: float | None = None  # process resident memory after this row
    note: str = ""
    # An engine row (gclf.runtime.engine): what to pass to gclf-infer to get it, and whether it
    # passed its parity check here (None: not an engine row).
    engine: str | None = None
    precision: str = "fp32"
    variant: str | None = None  # "fp32" or "int8": which file
    passed: bool | None = None
    one_thread_ms: float | None = None  # batch-1 median on one thread, when the run uses more

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
    return bench_engine(name, model, batch1, batch, threads, repeats)


def bench_engine(name: str, model: Path, batch1: np.ndarray, batch: np.ndarray, threads: int, repeats: int, *,
                 engine: str = DEFAULT_ENGINE, precision: str = DEFAULT_PRECISION, amx_layout: bool | None = None,
                 one_thread: bool = False) -> Row:
    """Batch-1 latency and batch throughput of one engine on `model`, after its parity check
    (load_engine_row, then time_engine_rows)."""
    loaded = load_engine_row(name, model, threads, engine=engine, precision=precision, amx_layout=amx_layout, one_thread=one_thread)
    time_engine_rows([loaded], batch1, batch, repeats)
    return loaded.row


@dataclass
class LoadedRow:
    """An engine row made ready to time: `run` and `single` (one thread) are None where it cannot run."""

    row: Row
    run: Callable[[np.ndarray], np.ndarray] | None = None
    single: Callable[[np.ndarray], np.ndarray] | None = None


def load_engine_row(name: str, model: Path, threads: int, *, engine: str = DEFAULT_ENGINE, precision: str = DEFAULT_PRECISION,
                    amx_layout: bool | None = None, one_thread: bool = False) -> LoadedRow:
    """One engine on `model`, loaded and parity-checked (a row that says why when it cannot run).

    `amx_layout=False`: onnxruntime without the AMX weight layout (gclf before it), run on the
    bare engine since a Classifier always lays int8 out for AMX where it can. `one_thread`:
    also a one-thread copy, for the batch-1 median on one thread."""
    try:
        clf = Classifier(model, threads=threads, engine=engine, precision=precision)
    except MissingDependencyError:
        return LoadedRow(Row(name, note=f"not installed: {install_hint(engine)}", engine=engine, precision=precision))
    except EngineRefusedError as exc:
        return LoadedRow(Row(name, note=f"refused: {exc}", engine=engine, precision=precision, passed=False))
    except GclfError as exc:
        return LoadedRow(Row(name, note=f"could not run: {exc}", engine=engine, precision=precision, passed=False))
    run, described = clf.logits, describe(clf.engine)
    if amx_layout is False:
        bare = open_engine(model, model.read_bytes(), engine=engine, threads=threads, amx_layout=False)
        run, described = bare.run, describe(bare)
    single = None
    if one_thread:
        single = Classifier(model, threads=1, engine=engine, precision=precision).logits
        if amx_layout is False:
            single = open_engine(model, model.read_bytes(), engine=engine, threads=1, amx_layout=False).run
    p = clf.parity
    note = "parity not checked (no reference outputs in the model)" if p.max_prob_diff is None else f"parity {p.max_prob_diff:.1g} ({p.against})"
    row = Row(name, note=f"{described}; {note}", engine=engine, precision=precision, variant=clf.metadata.variant, passed=True)
    return LoadedRow(row, run, single)


BLOCK = 4  # timed calls in a row per engine and turn


def _block(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> list[float]:
    run(x)  # untimed: the previous engine's threads may still be spinning
    samples = []
    for _ in range(BLOCK):
        start = time.perf_counter()
        run(x)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def time_engine_rows(loaded: Sequence[LoadedRow], batch1: np.ndarray, batch: np.ndarray, repeats: int) -> None:
    """Fill in each row's batch-1 samples, one-thread median and throughput. The rows take
    turns in short blocks (BLOCK timed calls after one untimed: onnxruntime's threads spin on
    after a call and would slow whichever engine came next), so that a load that comes and goes
    on the machine hits them alike and the recommendation compares like with like."""
    ready = [item for item in loaded if item.run is not None]
    for item in ready:
        item.row.latency_ms = []
        for _ in range(3):
            item.run(batch1)
    for _ in range(-(-repeats // BLOCK)):
        for item in ready:
            item.row.latency_ms.extend(_block(item.run, batch1))
    singles = [item for item in ready if item.single is not None]
    samples: dict[int, list[float]] = {id(item): [] for item in singles}
    for _ in range(-(-max(5, repeats // 2) // BLOCK)):
        for item in singles:
            samples[id(item)].extend(_block(item.single, batch1))
    for item in singles:
        item.row.one_thread_ms = statistics.median(samples[id(item)])
    for item in ready:
        item.row.throughput_ips = throughput(lambda: item.run(batch), len(batch), repeats=max(3, repeats // 4), warmup=1)
        item.row.rss_mb = rss_mb()


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


def bench_end_to_end(name: str, model: Path, files: Sequence[Path], batch_size: int, threads: int, repeats: int, *,
                     engine: str = DEFAULT_ENGINE, precision: str = DEFAULT_PRECISION) -> Row:
    """JPEG on disk -> label, batch 1 latency per file and folder throughput, through gclf's own path."""
    try:
        clf = Classifier(model, threads=threads, engine=engine, precision=precision)
    except GclfError as exc:
        return Row(name, note=f"could not run: {exc}")
    one = [files[0]]
    lat = time_calls(lambda: list(clf.predict_files(one, batch_size=1)), repeats=repeats, warmup=3)
    ips = throughput(lambda: list(clf.predict_files(files, batch_size=batch_size)), len(files), repeats=3, warmup=1)
    return Row(name, lat, ips, rss_mb(), note=describe(clf.engine))


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
        clf.prediction(clf.probabilities(logits)[0])
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


@dataclass(frozen=True)
class EngineChoice:
    """One way to run a model file: an engine at a precision; timed by time_engine_choices."""

    engine: str
    precision: str = DEFAULT_PRECISION
    ms: float | None = None  # batch-1 median; None: it did not run (problem says why)
    problem: str = ""

    @property
    def label(self) -> str:
        return self.engine + (" at bf16" if self.precision == "bf16" else "")

    @property
    def flags(self) -> str:
        return f"--engine {self.engine}" + (f" --precision {self.precision}" if self.precision != DEFAULT_PRECISION else "")


def engine_choices(variant: str) -> list[EngineChoice]:
    """Every engine and precision worth trying on a file of `variant` on this CPU (bf16 only
    for fp32 files, on a CPU with bf16 instructions)."""
    choices = [EngineChoice(engine) for engine in ENGINES]
    if variant == "fp32" and cpu_class.has_bf16():
        choices.append(EngineChoice("openvino", "bf16"))
    return choices


def time_engine_choices(model: Path, choices: Sequence[EngineChoice], *, threads: int | None = None, runs: int = 10) -> list[EngineChoice]:
    """Each choice loaded (its parity checked) and timed at batch 1 on a generated input, the
    choices taking turns run by run so that a load that comes and goes hits them alike."""
    from dataclasses import replace

    from gclf.runtime.parity import pattern_inputs

    loaded, out = [], {}
    for choice in choices:
        try:
            loaded.append((choice, Classifier(model, threads=threads, engine=choice.engine, precision=choice.precision, spin=False)))
        except MissingDependencyError:
            out[choice] = replace(choice, problem=f"not installed ({install_hint(choice.engine)})")
        except GclfError as exc:  # refused by its parity check, or cannot load the model
            out[choice] = replace(choice, problem=f"not usable here: {exc}")
    if loaded:
        x = pattern_inputs(loaded[0][1].spec, [0])
        samples: dict[EngineChoice, list[float]] = {c: [] for c, _ in loaded}
        for c, clf in loaded:
            clf.logits(x)  # warm-up
        for _ in range(runs):
            for c, clf in loaded:
                start = time.perf_counter()
                clf.logits(x)
                samples[c].append((time.perf_counter() - start) * 1000)
        out.update({c: replace(c, ms=statistics.median(v)) for c, v in samples.items()})
    return [out[c] for c in choices]


def engine_rows(fp32: Path, int8: Path | None) -> list[tuple[str, Path, str, str, bool | None]]:
    """(row name, file, engine, precision, amx_layout) for every engine row this machine can show."""
    rows: list[tuple[str, Path, str, str, bool | None]] = [("onnxruntime fp32", fp32, "onnxruntime", "fp32", None)]
    if int8:
        rows.append(("onnxruntime int8", int8, "onnxruntime", "fp32", None))
        if cpu_class.has_amx_int8():
            rows.append((f"{ORT_INT8_WITHOUT_AMX}", int8, "onnxruntime", "fp32", False))
    rows.append(("OpenVINO fp32", fp32, "openvino", "fp32", None))
    rows.append(("OpenVINO fp32 at bf16", fp32, "openvino", "bf16", None))
    if int8:
        rows.append(("OpenVINO int8", int8, "openvino", "fp32", None))
    return rows


ORT_INT8_WITHOUT_AMX = "onnxruntime int8, no AMX"  # gclf's int8 before the AMX weight layout: the symmetric VNNI kernels


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
    loaded = []
    for name, model, engine, precision, amx_layout in engine_rows(fp32, int8):
        if precision == "bf16" and not cpu_class.has_bf16():
            loaded.append(LoadedRow(Row(name, note="skipped: this CPU has no bf16 instructions (AMX-BF16, AVX512-BF16)", engine=engine, precision=precision)))
            continue
        loaded.append(load_engine_row(name, model, threads, engine=engine, precision=precision, amx_layout=amx_layout, one_thread=threads > 1))
    time_engine_rows(loaded, batch1, batch, repeats)
    rows = [item.row for item in loaded]
    rows.append(bench_opencv_dnn(fp32, batch1, batch, threads, repeats))
    if reference_row is not None:
        rows.append(reference_row(fp32, batch1, batch, threads, repeats))
    installed = [e for e in ENGINES if any(r.engine == e and r.passed for r in rows)]
    for engine in installed:
        suffix = "" if engine == DEFAULT_ENGINE else f" ({engine})"
        for variant, model in (("fp32", fp32), ("int8", int8)):
            if model is not None and any(r.engine == engine and r.variant == variant and r.passed for r in rows):
                rows.append(bench_end_to_end(f"gclf file->label {variant}{suffix}", model, images, batch_size, threads, repeats, engine=engine))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    base = rows[0].median_ms
    one_base = rows[0].one_thread_ms
    show_one = any(r.one_thread_ms for r in rows)
    head = f"{'engine':<30} {'b1 median ms':>12} {'b1 p90 ms':>10} {'speed vs ORT fp32 b1':>21}"
    head += f" {'b1 ms, 1 thread':>16} {'vs ORT fp32':>11}" if show_one else ""
    lines = [head + f" {'images/s (batch)':>17} {'RSS MB':>7}  note"]
    fmt = lambda v, spec: format(v, spec) if v is not None else "-"
    for r in rows:
        ratio = f"{base / r.median_ms:.2f}x" if r.median_ms and base else "-"
        line = f"{r.name:<30} {fmt(r.median_ms, '12.2f')} {fmt(r.p90_ms, '10.2f')} {ratio:>21}"
        if show_one:
            one_ratio = f"{one_base / r.one_thread_ms:.2f}x" if r.one_thread_ms and one_base else "-"
            line += f" {fmt(r.one_thread_ms, '16.2f')} {one_ratio:>11}"
        lines.append(line + f" {fmt(r.throughput_ips, '17.1f')} {fmt(r.rss_mb, '7.0f')}  {r.note}")
    return "\n".join(lines)


def recommend(rows: Sequence[Row]) -> str:
    """What to deploy on this machine, from the measured batch-1 latency: the fastest engine
    row that passed its parity check (gclf-infer's --engine and --precision for it), else the
    faster of the fp32 and int8 files on onnxruntime."""
    by_name = {r.name: r for r in rows}
    fp32, int8 = by_name.get("onnxruntime fp32"), by_name.get("onnxruntime int8")
    engines = [r for r in rows if r.engine is not None and r.passed and r.median_ms]
    if any(r.engine != DEFAULT_ENGINE for r in engines) and fp32 and fp32.median_ms:
        best = min(engines, key=lambda r: r.median_ms)
        file = "the int8 model" if best.variant == "int8" else "the fp32 model"
        flags = "" if best.engine == DEFAULT_ENGINE else f" with --engine {best.engine}"
        flags += " --precision bf16" if best.precision == "bf16" else ""
        text = (f"use {file}{flags} on this machine ({best.name}): {fp32.median_ms / best.median_ms:.2f}x onnxruntime fp32 at batch 1"
                + (f", {int8.median_ms / best.median_ms:.2f}x onnxruntime int8" if int8 and int8.median_ms and best is not int8 else ""))
        before = by_name.get(ORT_INT8_WITHOUT_AMX)
        if before is not None and before.median_ms:
            text += f", {before.median_ms / best.median_ms:.2f}x onnxruntime int8 without the AMX layout (gclf before it)"
            if before.one_thread_ms and best.one_thread_ms:
                text += f"; on one thread {before.one_thread_ms / best.one_thread_ms:.2f}x"
        return text
    if not int8 or not int8.median_ms or not fp32 or not fp32.median_ms:
        return "use the fp32 model (no int8 model measured)"
    speedup = fp32.median_ms / int8.median_ms
    if speedup >= 1.1:
        return f"use the int8 model on this machine: {speedup:.2f}x faster than fp32 at batch 1"
    return (
        f"use the fp32 model on this machine: int8 is only {speedup:.2f}x its speed here "
        "(int8 pays off with int8 dot-product instructions: x86 VNNI, ARMv8.2 dot product as on a Raspberry Pi 5)"
    )


# --- int8 across CPU classes --------------------------------------------------------------------
# Kept apart from the rows above: this section only reads the int8 file's metadata and this CPU.


def int8_cpu_lines(int8: Path | None, rows: Sequence[Row]) -> list[str]:
    """The CPU this run measured (name and int8 class), the int8 file's gate CPU class and
    saturation safety, and whether running it here matters (gclf.runtime.cpu_class)."""
    here = cpu_class.detect_cpu_class()
    units = cpu_class.cpu_accelerators()
    lines = [f"CPU: {cpu_class.cpu_model_name()}, {os.cpu_count()} CPUs; int8 class {here}: {cpu_class.DESCRIPTIONS.get(here, here)}; "
             + (f"matrix/bf16 units: {', '.join(units)}" if units else "no AMX or bf16 units")]
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
