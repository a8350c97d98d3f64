"""The inference engines side by side on one exported model pair: batch-1 speed per CPU class
this machine can stand in for, agreement with fp32 on an outside set, and the two jobs users
run (files -> labels with face detection, and the live loop's FPS with detection).

    python -m benchmarks.engines_bench MODEL_DIR [--outside DIR] [--images N] [--classes native,vnni,avx2]
        [--files N] [--video-frames N] [--rounds R] [--work DIR]

MODEL_DIR holds model.onnx and model.int8.onnx (gclf-export --quantize) and, for a faces
model, its YuNet file. Rows: onnxruntime fp32; onnxruntime int8 as gclf runs it (on an AMX
CPU with the AMX weight layout, gclf.runtime.int8_amx) and without that layout (gclf before
it: the symmetric VNNI kernels); OpenVINO fp32 at f32 and at bf16; OpenVINO int8.

CPU classes (each timed in a process of its own, all rows taking turns in every round, so a
load that comes and goes on a shared machine hits them alike):
- native: this CPU as it is.
- vnni: as an AVX-512 VNNI CPU without AMX or bf16 (Ice Lake): benchmarks/no_amx.py has the
  process refused AMX tile data, so onnxruntime's MLAS and OpenVINO's oneDNN take their VNNI
  paths, and ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI keeps oneDNN off bf16. gclf then applies no
  AMX layout.
- avx2: onnxruntime through benchmarks/ort_avx2.py's copy (MLAS's AVX2 kernels), OpenVINO
  with ONEDNN_MAX_CPU_ISA=AVX2.
These run the other classes' code paths on this machine's cores: speed ratios of that code,
not another chip's speed. Prints tables and writes RESULTS.json in --work; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
# (row, file, engine, precision, amx layout: None = as gclf does on this class, False = never)
ROWS = [
    ("onnxruntime fp32", "fp32", "onnxruntime", "fp32", None),
    ("onnxruntime int8 (gclf)", "int8", "onnxruntime", "fp32", None),
    ("onnxruntime int8, no AMX layout", "int8", "onnxruntime", "fp32", False),
    ("OpenVINO fp32", "fp32", "openvino", "fp32", None),
    ("OpenVINO fp32 at bf16", "fp32", "openvino", "bf16", None),
    ("OpenVINO int8", "int8", "openvino", "fp32", None),
]
TODAY = "onnxruntime int8, no AMX layout"  # gclf's int8 path before this benchmark's findings


def class_environment(cpu: str, work: Path) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if cpu == "vnni":
        from benchmarks.no_amx import environment as without_amx

        env = without_amx(env)
        env.update(ONEDNN_MAX_CPU_ISA="AVX512_CORE_VNNI", GCLF_BENCH_CLASS="vnni")
    elif cpu == "avx2":
        from benchmarks.ort_avx2 import build, default_dest, environment

        env.update(environment(build(default_dest())), ONEDNN_MAX_CPU_ISA="AVX2", GCLF_BENCH_CLASS="avx2", OMP_NUM_THREADS="1")
    return env


# --- the child processes: speed and probabilities under one CPU class ----------------------------


def _engine(model: Path, engine: str, precision: str, threads: int, amx_layout: bool | None):
    from gclf.runtime.engine import open_engine

    if os.environ.get("GCLF_BENCH_CLASS"):
        amx_layout = False  # a CPU of that class has no AMX: gclf lays nothing out
    return open_engine(model, model.read_bytes(), engine=engine, precision=precision, threads=threads, amx_layout=amx_layout)


def child_speed(model_dir: Path, threads: int, rounds: int, calls: int) -> dict:
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.parity import pattern_inputs

    x = pattern_inputs(Classifier(model_dir / "model.onnx").spec, [0])
    bf16 = not os.environ.get("GCLF_BENCH_CLASS")  # the stand-in classes have no bf16 units
    runners = {}
    for name, variant, engine, precision, layout in ROWS:
        if precision == "bf16" and not bf16:
            continue
        try:
            runners[name] = _engine(model_dir / ("model.int8.onnx" if variant == "int8" else "model.onnx"), engine, precision, threads, layout).run
        except Exception as exc:  # noqa: BLE001 - a row that cannot run is reported, not fatal
            print(f"{name}: {exc}", file=sys.stderr)
    for run in runners.values():
        for _ in range(3):
            run(x)
    ms: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}  # the process's CPU time: less moved by other jobs than wall time
    for _ in range(rounds):
        for name, run in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                run(x)
            ms[name].append((time.perf_counter() - start) / calls * 1000)
            cpu[name].append((time.process_time() - start_cpu) / calls * 1000)
    out = {}
    for name, samples in ms.items():
        out[name] = {"ms": statistics.median(samples),
                     "vs_fp32": statistics.median(a / b for a, b in zip(ms["onnxruntime fp32"], samples)),
                     "vs_today": statistics.median(a / b for a, b in zip(ms[TODAY], samples)) if TODAY in ms else None,
                     "cpu_ms": statistics.median(cpu[name]),
                     "cpu_vs_fp32": statistics.median(a / b for a, b in zip(cpu["onnxruntime fp32"], cpu[name])),
                     "cpu_vs_today": statistics.median(a / b for a, b in zip(cpu[TODAY], cpu[name])) if TODAY in cpu else None}
    return out


def child_predict(model: Path, engine: str, precision: str, inputs: Path, out: Path) -> None:
    from gclf.runtime.classifier import softmax

    run = _engine(model, engine, precision, 1, None).run
    x = np.load(inputs)
    np.save(out, np.concatenate([softmax(run(x[s : s + 16])) for s in range(0, len(x), 16)]))


def in_child(cpu: str, work: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "benchmarks.engines_bench", "--child", *args], capture_output=True, text=True,
                          env=class_environment(cpu, work), cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise SystemExit(f"{cpu}: {done.stderr.strip()[-800:]}")
    return done.stdout


# --- files and live, natively -----------------------------------------------------------------


def files_throughput(model_dir: Path, files: list[Path], choices: list[tuple[str, str, str]], rounds: int) -> dict[str, float]:
    """Images/s of gclf-infer's files job (decode, faces, classify), the choices taking turns."""
    from gclf.runtime.classifier import Classifier

    clfs = {name: Classifier(model_dir / f, engine=e, precision=p) for name, f, e, p in choices}
    rates: dict[str, list[float]] = {k: [] for k in clfs}
    for clf in clfs.values():
        list(clf.predict_files(files[:8], faces=True))  # warm-up, and the detector loaded
    for _ in range(rounds):
        for name, clf in clfs.items():
            start = time.perf_counter()
            n = sum(1 for _ in clf.predict_files(files, faces=True, batch_size=16))
            rates[name].append(n / (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in rates.items()}


def live_fps(model_dir: Path, video: Path, choices: list[tuple[str, str, str]], rounds: int, detect_every: int) -> dict[str, float]:
    """The live loop's FPS on every frame of `video` with YuNet detection, the choices taking turns."""
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.faces import YuNetFaceDetector
    from gclf.runtime.live.loop import run_live
    from gclf.runtime.live.sinks import JsonLinesSink
    from gclf.runtime.live.sources import CaptureSource, OrderedFrameReader

    yunet = next(model_dir.glob("face_detection_yunet*.onnx"))
    clfs = {name: Classifier(model_dir / f, engine=e, precision=p, spin=False) for name, f, e, p in choices}
    fps: dict[str, list[float]] = {k: [] for k in clfs}
    for _ in range(rounds):
        for name, clf in clfs.items():
            feed = OrderedFrameReader(CaptureSource.video(video)).start()
            summary = run_live(feed, clf, detector=YuNetFaceDetector(yunet), sinks=[JsonLinesSink(io.StringIO())], detect_every=detect_every)
            fps[name].append(summary.mean_fps)
    return {k: statistics.median(v) for k, v in fps.items()}


def faces_video(photos: list[Path], path: Path) -> Path:
    import cv2

    from benchmarks.common import write_video
    from benchmarks.live_bench import in_frame
    from gclf.runtime.decode import decode_image

    frames = (in_frame(cv2.cvtColor(decode_image(p), cv2.COLOR_RGB2BGR), x_offset=(i * 37) % 200 - 100) for i, p in enumerate(photos))
    return write_video(frames, path)


# --- the report -----------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "speed":
            print(json.dumps(child_speed(Path(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]))))
        else:
            child_predict(Path(rest[0]), rest[1], rest[2], Path(rest[3]), Path(rest[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--outside", type=Path, default=SHARED / "datasets" / "utkface-dev")
    parser.add_argument("--images", type=int, default=2000, help="outside images for agreement (0: skip)")
    parser.add_argument("--classes", default="native,vnni,avx2", help="CPU classes for the speed part ('' to skip it)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--files", type=int, default=200, help="photos for the files job (0: skip)")
    parser.add_argument("--video-frames", type=int, default=150, help="frames for the live loop (0: skip)")
    parser.add_argument("--job-rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    from benchmarks.int8_variants import outside_inputs
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.cpu_class import cpu_class_label, cpu_model_name
    from gclf.export.pipeline import measure_parity

    work = args.work or Path(tempfile.mkdtemp(prefix="gclf-engines-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"cpu": f"{cpu_model_name()} ({cpu_class_label()}), {os.cpu_count()} CPUs", "load_before": os.getloadavg()}
    print(f"CPU: {results['cpu']}; load average {os.getloadavg()[0]:.1f}", flush=True)

    results["speed"] = {}
    for cpu in filter(None, args.classes.split(",")):
        for threads in map(int, args.threads.split(",")):
            load = os.getloadavg()[0]
            speed = json.loads(in_child(cpu, work, "speed", str(args.model_dir), str(threads), str(args.rounds), str(args.calls)))
            results["speed"][f"{cpu}/{threads}"] = {"load": load, "rows": speed}
            print(f"\n{cpu}, {threads} thread(s), batch 1, {args.rounds} paired rounds (load average {load:.1f} before):")
            for name, r in speed.items():
                today = f"{r['vs_today']:.2f}x" if r["vs_today"] else "-"
                cpu_today = f"{r['cpu_vs_today']:.2f}x" if r["cpu_vs_today"] else "-"
                print(f"  {name:<34} {r['ms']:7.2f} ms  {r['vs_fp32']:5.2f}x ORT fp32  {today:>6} ORT int8 before"
                      f"   | CPU time {r['cpu_ms']:7.2f} ms  {r['cpu_vs_fp32']:5.2f}x  {cpu_today:>6}", flush=True)

    if args.images:
        clf = Classifier(args.model_dir / "model.onnx")
        paths, x, labels = outside_inputs(args.outside, clf.class_names, clf.spec, args.images)
        np.save(work / "outside.npy", x)
        probs = {}
        for cpu, name, variant, engine, precision in [("native", *r[:4]) for r in ROWS if r[4] is None] + [
                ("vnni", "OpenVINO int8", "int8", "openvino", "fp32"), ("avx2", "OpenVINO int8", "int8", "openvino", "fp32"),
                ("avx2", "onnxruntime int8 (gclf)", "int8", "onnxruntime", "fp32")]:
            if cpu not in args.classes.split(","):
                continue
            out = work / f"p-{cpu}-{name.replace(' ', '_')}.npy"
            in_child(cpu, work, "predict", str(args.model_dir / ("model.int8.onnx" if variant == "int8" else "model.onnx")), engine, precision, str(work / "outside.npy"), str(out))
            probs[(cpu, name)] = np.load(out)
        p32 = probs[("native", "onnxruntime fp32")]
        results["agreement"] = {}
        print(f"\nagreement with onnxruntime fp32 on {len(paths)} outside images ({args.outside.name}, whole images resized as gclf-infer does):")
        for (cpu, name), p in probs.items():
            m = measure_parity(p32, p, labels)
            same = probs.get(("native", name))
            m["max_abs_prob_diff_vs_native_same_row"] = float(np.abs(p - same).max()) if same is not None else None
            results["agreement"][f"{cpu}/{name}"] = m
            print(f"  {cpu:<6} {name:<26} agree {m['top1_agreement'] * 100:6.2f}%  accuracy {m['fp32_accuracy'] * 100:.2f} -> {m['int8_accuracy'] * 100:.2f}  "
                  f"max shift {m['max_abs_top_prob_diff']:.4f}" + (f"  vs native: {m['max_abs_prob_diff_vs_native_same_row']:.2g}" if cpu != "native" else ""), flush=True)

    choices = [("onnxruntime fp32", "model.onnx", "onnxruntime", "fp32"), ("onnxruntime int8", "model.int8.onnx", "onnxruntime", "fp32"),
               ("OpenVINO bf16", "model.onnx", "openvino", "bf16"), ("OpenVINO int8", "model.int8.onnx", "openvino", "fp32")]
    photos = sorted((args.outside / "man").iterdir())[: args.files // 2] + sorted((args.outside / "woman").iterdir())[: args.files // 2]
    if args.files:
        load = os.getloadavg()[0]
        rates = files_throughput(args.model_dir, photos, choices, args.job_rounds)
        results["files"] = {"load": load, "images_per_s": rates, "photos": len(photos)}
        print(f"\nfiles -> labels with YuNet face detection, {len(photos)} photos, all cores, turns taken (load {load:.1f}):")
        for name, rate in rates.items():
            print(f"  {name:<20} {rate:7.1f} images/s  {rate / rates['onnxruntime fp32']:.2f}x", flush=True)
    if args.video_frames:
        video = faces_video(photos[: args.video_frames] if photos else [], work / "faces.avi")
        results["live"] = {}
        for every in (1, 3):
            load = os.getloadavg()[0]
            fps = live_fps(args.model_dir, video, choices, args.job_rounds, every)
            results["live"][f"detect_every_{every}"] = {"load": load, "fps": fps}
            print(f"\nlive loop, {args.video_frames} frames 640x480, YuNet on every {every}. frame, spin off (load {load:.1f}):")
            for name, rate in fps.items():
                print(f"  {name:<20} {rate:6.1f} FPS  {rate / fps['onnxruntime fp32']:.2f}x", flush=True)
    results["load_after"] = os.getloadavg()
    (work / "RESULTS.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {work / 'RESULTS.json'}")


if __name__ == "__main__":
    main()
