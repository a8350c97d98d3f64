"""What onnxruntime's int8 options do to a gclf model, side by side: agreement with fp32 on an
outside set, natively and on an emulated AVX2-only x86 CPU, and speed at batch 1.

    python -m benchmarks.int8_variants RUN_DIR [--outside DIR] [--images N]
        [--emulate-images M --qemu PATH/qemu-x86_64 --emulate-cpu Haswell] [--avx2-kernels] [--work DIR] [--record]

RUN_DIR is an exported gclf run (model.onnx, manifest.json). Its own model.int8.onnx, when
there is one, is measured first as it is (row "exported"). Each variant is quantized from
model.onnx with static calibration on the same training-split images gclf-export uses (300,
class-balanced, seed 0):

- QDQ or QOperator format; per-channel or per-tensor weights;
- s8 weights, full 8-bit or 7-bit (`reduce_range`), or u8 weights (U8U8);
- with or without `quant_pre_process` (shape inference and Conv+BatchNorm fusion first);
- gclf's remedy: first convolution and classifier in float;
- each Concat's inputs on the Concat's own scale (gclf's default, all but one variant) or not;
- symmetric weights (zero point 0, gclf's) or asymmetric (per tensor: onnxruntime's QLinearConv
  takes one weight zero point per tensor), which onnxruntime runs on different MLAS kernels;
- gclf's default with its weights laid out for AMX (gclf.runtime.int8_amx: zero point 1), as
  the runtime does in memory on an AMX CPU, written to a file here to measure it everywhere;
- dynamic quantization (ConvInteger / MatMulInteger, u8 weights, activations quantized at run time).

For each: top-1 agreement with fp32 and both accuracies on the outside set (decoded and
resized as gclf-infer does for whole images), the largest shift in fp32's top-class
probability, whether the file is saturation-safe (gclf.export.quantize.saturation_safe), and the
batch-1 speed ratio int8/fp32 (paired rounds, one thread, this machine). With --emulate-images,
the first M outside images also run under qemu user-mode emulation of a CPU without VNNI
(default Haswell: AVX2, where onnxruntime's u8 x s8 kernels saturate): agreement there, and
the largest difference between the emulated and the native int8 probabilities (zero for a file
that means the same on every CPU). Speed under emulation means nothing and is not measured.
With --avx2-kernels (an x86 machine with AVX-512 or VNNI), every outside image and the b1
speed ratio are also run through a copy of onnxruntime that picks its AVX2 kernels, as an
AVX2-only CPU does (benchmarks/ort_avx2.py): that arithmetic at native speed, on this CPU's cores.
The graph optimisation levels are timed for gclf's default variant. Prints a table and writes
its results (JSON) in --work; asserts nothing. `--record` also writes two figures into
benchmarks/results/ (benchmarks.results): the variants side by side, and the exported file (or
gclf's default variant) on each CPU class reached.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CALIBRATION_IMAGES = 300  # as gclf-export's default --calibration-size


@dataclass(frozen=True)
class Variant:
    name: str
    quant_format: str = "QDQ"  # or "QOperator"
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit s8 weights
    weight_type: str = "QInt8"  # or "QUInt8" (U8U8)
    preprocess: bool = True  # quant_pre_process first
    ends_float: bool = False  # first Conv and classifier in float (gclf's first remedy)
    shared_concat: bool = True  # each Concat's inputs on its output scale (gclf.export.quantize.share_concat_scales)
    weight_symmetric: bool = True  # zero point 0 (gclf); False: onnxruntime picks one per tensor
    amx_layout: bool = False  # the weights moved to zero point 1, as gclf's runtime does on AMX CPUs
    dynamic: bool = False  # quantize_dynamic: ConvInteger/MatMulInteger instead of static QDQ


VARIANTS = [
    Variant("qdq-pc-8bit"),  # gclf-export's default before saturation-safe int8
    Variant("qdq-pc-7bit", reduce_range=True),  # gclf-export's default now
    Variant("qdq-pc-7bit-own-concat", reduce_range=True, shared_concat=False),  # QLinearConcat requantizes each input
    Variant("qdq-pt-8bit", per_channel=False),
    Variant("qdq-pt-7bit", per_channel=False, reduce_range=True),
    Variant("qdq-pc-u8u8", weight_type="QUInt8"),
    Variant("qop-pc-8bit", quant_format="QOperator"),
    Variant("qop-pc-7bit", quant_format="QOperator", reduce_range=True),
    Variant("qdq-pc-7bit-nopre", reduce_range=True, preprocess=False),
    Variant("qdq-pc-8bit-ends", ends_float=True),
    Variant("qdq-pc-7bit-ends", reduce_range=True, ends_float=True),
    Variant("qdq-pc-7bit-amx", reduce_range=True, amx_layout=True),  # the runtime's AMX layout, as a file
    Variant("qdq-pt-7bit-asym", per_channel=False, reduce_range=True, weight_symmetric=False),
    Variant("qdq-pt-8bit-asym", per_channel=False, weight_symmetric=False),
    Variant("qop-pt-7bit-asym", quant_format="QOperator", per_channel=False, reduce_range=True, weight_symmetric=False),
    Variant("dynamic-u8", weight_type="QUInt8", dynamic=True, shared_concat=False),  # ConvInteger, MatMulInteger
]
DEFAULT_VARIANT = "qdq-pc-7bit"
EXPORTED = "exported"  # RUN_DIR/model.int8.onnx as gclf-export wrote it, when there is one
EMULATED = ["qdq-pc-8bit", "qdq-pc-7bit", "qdq-pc-u8u8", "qdq-pc-8bit-ends"]


def quantize_variant(fp32: Path, dest: Path, v: Variant, calibration: list[Path], spec, input_name: str) -> None:
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from gclf.export.quantize import ImageCalibrationReader, end_nodes, share_concat_scales

    with tempfile.TemporaryDirectory(prefix="gclf-variant-") as tmp:
        source = fp32
        if v.preprocess:
            source = Path(tmp) / "pre.onnx"
            quant_pre_process(str(fp32), str(source), skip_symbolic_shape=False)
        if v.dynamic:
            from onnxruntime.quantization import quantize_dynamic

            quantize_dynamic(str(source), str(dest), per_channel=v.per_channel, reduce_range=v.reduce_range,
                             weight_type=getattr(QuantType, v.weight_type), op_types_to_quantize=["Conv", "MatMul", "Gemm"])
            return
        quantize_static(
            str(source), str(dest), ImageCalibrationReader(calibration, spec, input_name, 8),
            quant_format=getattr(QuantFormat, v.quant_format), per_channel=v.per_channel, reduce_range=v.reduce_range,
            activation_type=QuantType.QUInt8, weight_type=getattr(QuantType, v.weight_type),
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=end_nodes(source) if v.ends_float else [],
            extra_options={"WeightSymmetric": v.weight_type == "QInt8" and v.weight_symmetric, "ActivationSymmetric": False},
        )
    if v.shared_concat:
        share_concat_scales(dest)
    if v.amx_layout:
        from gclf.runtime.int8_amx import amx_weight_layout

        dest.write_bytes(amx_weight_layout(dest.read_bytes()))


def session(model: Path, threads: int = 1, level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])


def probabilities(model: Path, inputs: np.ndarray, threads: int = 1, batch: int = 16) -> np.ndarray:
    sess = session(model, threads)
    name = sess.get_inputs()[0].name
    out = []
    for start in range(0, len(inputs), batch):
        logits = sess.run(None, {name: inputs[start : start + batch]})[0].astype(np.float64)
        e = np.exp(logits - logits.max(1, keepdims=True))
        out.append(e / e.sum(1, keepdims=True))
    return np.concatenate(out)


def agreement(p32: np.ndarray, p8: np.ndarray, labels: np.ndarray) -> dict:
    from gclf.export.pipeline import measure_parity

    return measure_parity(p32, p8, labels)


def b1_ratio(fp32: Path, int8: Path, x1: np.ndarray, *, level: str = "ORT_ENABLE_ALL", rounds: int = 7, calls: int = 10) -> dict:
    """fp32 time / int8 time at batch 1, timed back to back in each round (median over
    rounds), so a load that comes and goes on a shared machine hits both alike."""
    a, b = session(fp32, 1, level), session(int8, 1, level)
    na, nb = a.get_inputs()[0].name, b.get_inputs()[0].name
    for _ in range(3):
        a.run(None, {na: x1}), b.run(None, {nb: x1})
    ratios, t32, t8 = [], [], []
    for _ in range(rounds):
        s0 = time.perf_counter()
        for _ in range(calls):
            a.run(None, {na: x1})
        s1 = time.perf_counter()
        for _ in range(calls):
            b.run(None, {nb: x1})
        s2 = time.perf_counter()
        ratios.append((s1 - s0) / (s2 - s1))
        t32.append((s1 - s0) / calls * 1000)
        t8.append((s2 - s1) / calls * 1000)
    return {"speedup_b1": statistics.median(ratios), "fp32_ms": statistics.median(t32), "int8_ms": statistics.median(t8)}


def op_profile(model: Path, x1: np.ndarray, runs: int = 20) -> dict[str, float]:
    """Milliseconds per batch-1 run spent in each operator type (onnxruntime's profiler, one
    thread): where int8's time goes, and so how much faster it can get."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.enable_profiling = True
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for _ in range(runs + 3):
        sess.run(None, {name: x1})
    trace = Path(sess.end_profiling())
    trace_events = json.loads(trace.read_text())
    trace.unlink()
    starts = sorted(e["ts"] for e in trace_events if e.get("name") == "model_run")
    after_warmup = starts[3] if len(starts) > 3 else 0  # the first runs allocate: left out
    totals: dict[str, float] = {}
    for e in trace_events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= after_warmup:
            op = e.get("args", {}).get("op_name", "?")
            totals[op] = totals.get(op, 0.0) + e["dur"] / 1000
    return {op: round(ms / runs, 3) for op, ms in sorted(totals.items(), key=lambda kv: -kv[1])}


def outside_inputs(folder: Path, class_names: tuple[str, ...], spec, count: int) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Up to `count` images of `folder`'s class sub-folders, classes interleaved, as model input."""
    from gclf.runtime.decode import decode_image
    from gclf.runtime.listing import list_images
    from gclf.runtime.preprocess import preprocess_batch

    per_class = [sorted(list_images(folder / c)) for c in class_names]
    items = [(p, i) for row in zip(*per_class) for i, p in enumerate(row)][:count]
    if not items:
        raise SystemExit(f"{folder}: no images in class folders {list(class_names)} (pass --outside)")
    x = np.concatenate([preprocess_batch([decode_image(p) for p, _ in items[s : s + 64]], spec) for s in range(0, len(items), 64)])
    return [p for p, _ in items], x, np.array([i for _, i in items])


def emulators(args) -> dict[str, tuple[list[str], dict[str, str]]]:
    """label -> (command prefix that runs this script's --predict, environment), per emulated CPU."""
    out = {}
    base = {**os.environ, "OMP_NUM_THREADS": "1"}
    if args.qemu:
        for cpu in args.emulate_cpu.split(","):
            out[f"x86 {cpu}"] = ([str(args.qemu), "-cpu", cpu, sys.executable], base)
    if args.arm_cache:
        # tools/arm_check.py's cache: qemu-aarch64, an arm64 Debian trixie and its aarch64 wheels.
        cache = args.arm_cache
        root = cache / "root-trixie"
        site = max(cache.glob("site-trixie-*/.complete"), key=lambda p: p.stat().st_mtime).parent
        for cpu in args.arm_cpus.split(","):
            out[f"arm {cpu}"] = ([str(cache / "qemu-aarch64"), "-cpu", cpu, "-L", str(root), str(root / "usr" / "bin" / "python3")],
                                 {**base, "PYTHONPATH": str(site), "LANG": "C.UTF-8"})
    return out


def emulated_probabilities(prefix: list[str], env: dict[str, str], model: Path, inputs: Path, out: Path) -> float:
    """Run this script's --predict under an emulator; returns its wall time in seconds."""
    start = time.monotonic()
    done = subprocess.run([*prefix, __file__, "--predict", str(model), str(inputs), str(out)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"emulated run failed: {done.stderr.strip()[-500:]}")
    return time.monotonic() - start


def avx2_kernels_run(dest: Path, mode: str, *args: Path) -> dict | None:
    """This script's --predict or --b1 in a process whose onnxruntime is `dest`'s AVX2 copy."""
    from benchmarks.ort_avx2 import environment

    env = {**environment(dest), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, __file__, mode, *map(str, args)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"run with the AVX2 kernels failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout) if mode == "--b1" else None


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--predict":  # the emulated side
        model, inputs, out = map(Path, sys.argv[2:])
        np.save(out, probabilities(model, np.load(inputs)))
        return
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--b1":  # the AVX2-kernels side
        fp32, int8, x1 = map(Path, sys.argv[2:])
        print(json.dumps(b1_ratio(fp32, int8, np.load(x1))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--outside", type=Path, default=SHARED / "utkface-dev")
    parser.add_argument("--images", type=int, default=2000, help="outside images, native")
    parser.add_argument("--emulate-images", type=int, default=0, help="of those, the first M also under qemu (0: none)")
    parser.add_argument("--qemu", type=Path, default=None, help="a qemu-x86_64 binary (user mode)")
    parser.add_argument("--emulate-cpu", default="Haswell", help="qemu x86 CPU models, comma-separated")
    parser.add_argument("--arm-cache", type=Path, default=None, help="tools/arm_check.py's cache: also run on emulated ARM")
    parser.add_argument("--arm-cpus", default="cortex-a72,cortex-a76")
    parser.add_argument("--arm-images", type=int, default=None, help="of the emulated images, the first K on ARM (ARM emulation is slower) [default: all]")
    parser.add_argument("--avx2-kernels", action="store_true", help="also run all images and b1 speed on onnxruntime's AVX2 kernels (benchmarks/ort_avx2.py)")
    parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS))
    parser.add_argument("--emulated-variants", default=",".join(EMULATED))
    parser.add_argument("--work", type=Path, default=None, help="where variants and the results go [default: RUN_DIR/int8-variants]")
    parser.add_argument("--results", default="RESULTS.json", help="results file name in --work")
    parser.add_argument("--no-levels", action="store_true", help="skip the optimisation levels and the operator profiles")
    parser.add_argument("--record", action="store_true", help="also write the figures into benchmarks/results/<this machine>.json and render docs/measurements.md again")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]

    from gclf.export.onnx_export import INPUT_NAME
    from gclf.export.pipeline import balanced_sample, split_files
    from gclf.export.quantize import saturation_safe
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.cpu_class import cpu_model_name, detect_cpu_class

    fp32 = args.run_dir / "model.onnx"
    work = args.work or args.run_dir / "int8-variants"
    work.mkdir(parents=True, exist_ok=True)
    clf = Classifier(fp32)
    manifest = json.loads((args.run_dir / "manifest.json").read_text())
    calib = [p for p, _ in balanced_sample(split_files(manifest, "train", clf.class_names), CALIBRATION_IMAGES, seed=0)]
    paths, x, labels = outside_inputs(args.outside, clf.class_names, clf.spec, args.images)
    here = f"{cpu_model_name()} ({detect_cpu_class()}), {os.cpu_count()} CPUs"
    print(f"{len(paths)} outside images from {args.outside}; calibration {len(calib)} training-split images; native CPU: {here}", flush=True)
    p32 = probabilities(fp32, x)
    m = min(args.emulate_images, len(paths))
    arm_m = min(m, args.arm_images if args.arm_images is not None else m)
    avx2 = None
    if args.avx2_kernels:
        from benchmarks.ort_avx2 import NotRecognised, build, default_dest

        try:
            avx2 = build(default_dest())
        except NotRecognised as e:
            raise SystemExit(f"--avx2-kernels: {e}") from None
        np.save(work / "all-inputs.npy", x)
        np.save(work / "b1-input.npy", x[:1])
        avx2_p32 = work / "fp32.avx2-kernels.npy"
        avx2_kernels_run(avx2, "--predict", fp32, work / "all-inputs.npy", avx2_p32)
        print(f"AVX2 kernels ({avx2}): fp32 top-1 as with this CPU's own kernels on "
              f"{(np.load(avx2_p32).argmax(1) == p32.argmax(1)).mean() * 100:.2f}% of {len(paths)}", flush=True)
    if m:
        np.save(work / "emulated-inputs.npy", x[:m])
        np.save(work / "emulated-inputs-arm.npy", x[:arm_m])
    chosen = [v for v in VARIANTS if v.name in args.variants.split(",")]
    exported = args.run_dir / "model.int8.onnx"
    if exported.is_file():  # the file gclf-export wrote (its gate's remedies included), first
        chosen.insert(0, Variant(EXPORTED))
    results = []
    for v in chosen:
        dest = exported if v.name == EXPORTED else work / f"{v.name}.onnx"
        if not dest.is_file():
            t = time.monotonic()
            quantize_variant(fp32, dest, v, calib, clf.spec, INPUT_NAME)
            print(f"  quantized {v.name} in {time.monotonic() - t:.0f} s", flush=True)
        p8 = probabilities(dest, x)
        row = {**asdict(v), "saturation_safe": saturation_safe(dest), "native": agreement(p32, p8, labels), **b1_ratio(fp32, dest, x[:1])}
        if m and v.name in [EXPORTED, *args.emulated_variants.split(",")]:
            row["emulated"] = []
            for label, (prefix, env) in emulators(args).items():
                k = arm_m if label.startswith("arm") else m
                out = work / f"{v.name}.{label.replace(' ', '-')}.npy"
                inputs = work / ("emulated-inputs-arm.npy" if label.startswith("arm") else "emulated-inputs.npy")
                seconds = emulated_probabilities(prefix, env, dest, inputs, out)
                pe = np.load(out)
                row["emulated"].append({"cpu": label, **agreement(p32[:k], pe, labels[:k]),
                                        "max_abs_prob_diff_vs_native_int8": float(np.abs(pe - p8[:k]).max()), "seconds": round(seconds)})
                print(format_row({**row, "emulated": row["emulated"][-1:]}).splitlines()[-1], flush=True)
        if avx2 is not None:
            out = work / f"{v.name}.avx2-kernels.npy"
            avx2_kernels_run(avx2, "--predict", dest, work / "all-inputs.npy", out)
            pa = np.load(out)
            row["avx2_kernels"] = {**agreement(np.load(avx2_p32), pa, labels), "max_abs_prob_diff_vs_native_int8": float(np.abs(pa - p8).max()),
                                   **avx2_kernels_run(avx2, "--b1", fp32, dest, work / "b1-input.npy")}
        results.append(row)
        print(format_row({**row, "emulated": []}), flush=True)  # the emulated lines were printed as they came
    default = work / f"{DEFAULT_VARIANT}.onnx"
    levels = {}
    if default.is_file() and not args.no_levels:
        for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
            levels[level] = b1_ratio(fp32, default, x[:1], level=level)
            print(f"graph optimisation {level}: {DEFAULT_VARIANT} b1 {levels[level]['speedup_b1']:.2f}x fp32 ({levels[level]['int8_ms']:.1f} vs {levels[level]['fp32_ms']:.1f} ms)", flush=True)
    profiles = {}
    if default.is_file() and not args.no_levels:
        profiles = {"fp32": op_profile(fp32, x[:1]), DEFAULT_VARIANT: op_profile(default, x[:1])}
        for key, prof in profiles.items():
            print(f"where the time goes, {key}, batch 1, 1 thread (ms per run): " + ", ".join(f"{op} {ms:.2f}" for op, ms in list(prof.items())[:8]), flush=True)
    (work / args.results).write_text(json.dumps({"cpu": here, "outside": str(args.outside), "images": len(paths), "emulated_images": m,
                                                   "variants": results, "optimisation_levels": levels, "op_profiles": profiles}, indent=1))
    print(f"wrote {work / args.results}")
    if args.record:
        from benchmarks import results as records

        conditions = {**records.model_conditions(fp32, clf.metadata), "calibration": f"{len(calib)} class-balanced training-split images (MinMax)",
                      "data": f"{len(paths)} images of {args.outside.name} (outside set), int8 against fp32 on the same tensors", "threads": 1,
                      "load": f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"}
        record_variants(records, results, conditions, detect_cpu_class())


def describe(v: Variant) -> str:
    """A variant as a reader names it: "QDQ, per-channel, 7-bit s8 (gclf-export's default)"."""
    if v.name == EXPORTED:
        return "the exported file (gclf-export --quantize)"
    parts = [v.quant_format, "per-channel" if v.per_channel else "per-tensor",
             "U8U8" if v.weight_type == "QUInt8" else ("7-bit s8" if v.reduce_range else "8-bit s8")]
    parts += ["first conv and classifier float"] * v.ends_float + ["without quant_pre_process"] * (not v.preprocess)
    parts += ["each Concat input on its own scale"] * (not v.shared_concat)
    return ", ".join(parts) + (" (gclf-export's default)" if v.name == DEFAULT_VARIANT else "")


EMULATED_CLASS = {"x86 Haswell": "avx2", "arm cortex-a72": "arm-no-dotprod", "arm cortex-a76": "arm-dotprod"}


def record_variants(records, rows: list[dict], conditions: dict, native_class: str) -> None:
    """The variants table and the per-CPU-class table, as benchmarks/results records."""
    pct = lambda x: f"{100 * x:.2f}%"  # noqa: E731
    fp32_acc = pct(rows[0]["native"]["fp32_accuracy"])
    table = records.Table(["variant", "saturation-safe", "agreement", f"accuracy ({fp32_acc} fp32)", "int8 speed-up over fp32, batch 1, 1 thread"], [
        [describe(Variant(**{k: r[k] for k in Variant.__dataclass_fields__})), r["saturation_safe"], pct(r["native"]["top1_agreement"]),
         pct(r["native"]["int8_accuracy"]), f"{r['speedup_b1']:.2f}x"] for r in rows])
    records.record("benchmarks.int8_variants", "What onnxruntime's int8 options do", topic="int8", table=table, conditions=conditions)
    file = next((r for r in rows if r["name"] == EXPORTED), None) or next((r for r in rows if r["name"] == DEFAULT_VARIANT), None)
    if file is None:
        return
    eight = next((r for r in rows if r["name"] == "qdq-pc-8bit"), None)

    def shift(a: dict) -> str:
        return f"{pct(a['top1_agreement'])}, max shift {a['max_abs_top_prob_diff']:.3f}"

    def b1(a: dict) -> str:
        return f"{a['speedup_b1']:.2f}x ({a['int8_ms']:.1f} vs {a['fp32_ms']:.1f} ms)"

    n = file["native"]
    cls = [[native_class, "native", n["images"], pct(n["top1_agreement"]), pct(n["int8_accuracy"]), "(itself)", shift(eight["native"]) if eight else None, b1(file)]]
    if "avx2_kernels" in file:
        a, a8 = file["avx2_kernels"], (eight or {}).get("avx2_kernels")
        cls.append(["avx2", "AVX2-kernel copy (benchmarks.ort_avx2), native speed", a["images"], pct(a["top1_agreement"]), pct(a["int8_accuracy"]),
                    f"{a['max_abs_prob_diff_vs_native_int8']:.2g}", f"{shift(a8)}; {a8['max_abs_prob_diff_vs_native_int8']:.2g} from its own native answers" if a8 else None,
                    b1(a)])
    for e in file.get("emulated", []):
        e8 = next((x for x in (eight or {}).get("emulated", []) if x["cpu"] == e["cpu"]), None)
        cls.append([EMULATED_CLASS.get(e["cpu"], e["cpu"]), f"qemu {e['cpu']}", e["images"], pct(e["top1_agreement"]), pct(e["int8_accuracy"]),
                    f"{e['max_abs_prob_diff_vs_native_int8']:.2g}", f"{shift(e8)}; {e8['max_abs_prob_diff_vs_native_int8']:.2g} from its own native answers" if e8 else None,
                    "(emulated)"])
    columns = ["CPU class", "how reached", "images", "agreement", f"accuracy ({fp32_acc} fp32)", "max |p diff| vs native int8", "8-bit weights instead",
               "int8 speed-up over fp32, batch 1, 1 thread"]
    figure = "The exported int8 file across CPU classes" if file["name"] == EXPORTED else "gclf's default int8 variant across CPU classes"
    records.record("benchmarks.int8_variants", figure, topic="int8", table=records.Table(columns, cls), conditions=conditions)


def format_row(r: dict) -> str:
    n = r["native"]
    text = (f"{r['name']:<20} safe={'yes' if r['saturation_safe'] else 'no ':<3} native: agree {n['top1_agreement'] * 100:6.2f}% "
            f"acc {n['fp32_accuracy'] * 100:.2f}->{n['int8_accuracy'] * 100:.2f} max shift {n['max_abs_top_prob_diff']:.3f}; "
            f"b1 {r['speedup_b1']:.2f}x fp32 ({r['int8_ms']:.1f} vs {r['fp32_ms']:.1f} ms, 1 thread)")
    for e in r.get("emulated", []):
        text += (f"\n    {e['cpu']} ({e['images']} img): agree {e['top1_agreement'] * 100:6.2f}% acc {e['fp32_accuracy'] * 100:.2f}->{e['int8_accuracy'] * 100:.2f} "
                 f"max shift {e['max_abs_top_prob_diff']:.3f}; vs native int8: max |p diff| {e['max_abs_prob_diff_vs_native_int8']:.2g}")
    if "avx2_kernels" in r:
        a = r["avx2_kernels"]
        text += (f"\n    AVX2 kernels ({a['images']} img): agree {a['top1_agreement'] * 100:6.2f}% acc {a['fp32_accuracy'] * 100:.2f}->{a['int8_accuracy'] * 100:.2f} "
                 f"max shift {a['max_abs_top_prob_diff']:.3f}; vs native int8: max |p diff| {a['max_abs_prob_diff_vs_native_int8']:.2g}; "
                 f"b1 {a['speedup_b1']:.2f}x fp32 ({a['int8_ms']:.1f} vs {a['fp32_ms']:.1f} ms, 1 thread)")
    return text


if __name__ == "__main__":
    main()
