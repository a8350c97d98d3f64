"""int8 that means the same on every CPU class: the class detection, what gclf says when a file
runs on a class its parity was not measured on, the saturation check, and the int8 path run
on an emulated x86 CPU without VNNI (where onnxruntime's u8 x s8 sums saturate)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.ort_avx2 import NotRecognised, build, environment, exact_probe_output, probe_output, write_qdq_conv
from gclf.export.quantize import saturation_safe
from gclf.runtime.cpu_class import SATURATING, cpu_class_from, detect_cpu_class, int8_arithmetic, int8_cpu_note
from gclf_testutil import write_image_file

X86_LINUX = sys.platform == "linux" and os.uname().machine == "x86_64"
X86 = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx {extra}\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid {extra}\nCPU part\t: 0xd08\n"


@pytest.mark.parametrize(
    ("machine", "cpuinfo", "system", "expected"),
    [
        ("x86_64", X86.format(extra="avx2 fma"), "Linux", "avx2"),
        ("x86_64", X86.format(extra="avx2 avx512f avx512bw"), "Linux", "avx512-no-vnni"),
        ("x86_64", X86.format(extra="avx2 avx512f avx512bw avx512_vnni avx_vnni"), "Linux", "avx512-vnni"),
        ("x86_64", X86.format(extra="avx2 avx_vnni"), "Linux", "avx-vnni"),
        ("x86_64", X86.format(extra="sse4_1"), "Linux", "x86-sse"),
        ("AMD64", None, "Windows", "unknown"),
        ("aarch64", ARM.format(extra="asimddp"), "Linux", "arm-dotprod"),
        ("aarch64", ARM.format(extra=""), "Linux", "arm-no-dotprod"),
        ("arm64", None, "Darwin", "arm-dotprod"),
        ("riscv64", "isa: rv64", "Linux", "unknown"),
    ],
)
def test_cpu_class_from_cpuinfo(machine: str, cpuinfo: str | None, system: str, expected: str) -> None:
    assert cpu_class_from(machine, cpuinfo, system) == expected


def test_this_machine_has_a_class() -> None:
    assert int8_arithmetic(detect_cpu_class()) in ("saturating", "exact", "unknown")


def _quant(gated: str | None, safe: bool | None) -> dict:
    return {"format": "QDQ", **{k: v for k, v in (("parity_cpu_class", gated), ("saturation_safe", safe)) if v is not None}}


def test_note_is_silent_where_the_gate_ran_and_for_fp32() -> None:
    assert int8_cpu_note(_quant("avx2", False), "avx2") is None
    assert int8_cpu_note(None, "avx2") is None  # fp32 metadata has no quantization
    assert int8_cpu_note({}, "avx2") is None


@pytest.mark.parametrize(
    ("gated", "safe", "here", "matters"),
    [
        ("avx512-vnni", True, "avx2", False),  # saturation-safe: never matters
        ("avx512-vnni", False, "avx2", True),  # 8-bit weights gated where sums are exact, run where they saturate
        ("avx2", False, "arm-no-dotprod", True),  # and the other way round
        ("avx512-vnni", False, "arm-dotprod", False),  # exact on both
        ("avx2", False, "avx512-no-vnni", False),  # saturate on both
        (None, None, "avx2", True),  # an old file: no record, no guarantee
    ],
)
def test_note_says_whether_the_cpu_class_matters(gated, safe, here, matters) -> None:
    note = int8_cpu_note(_quant(gated, safe), here)
    assert note is not None and here in note
    assert ("it may matter" in note) == matters and ("does not matter" in note) == (not matters)


def test_saturation_safe_reads_the_weights(tmp_path: Path) -> None:
    assert saturation_safe(write_qdq_conv(tmp_path / "w64.onnx", 64))
    assert not saturation_safe(write_qdq_conv(tmp_path / "w127.onnx", 127))
    assert not saturation_safe(write_qdq_conv(tmp_path / "wm65.onnx", -65))


def _qemu_x86() -> Path | None:
    """The qemu-x86_64 that tools/arm_check.py caches beside its qemu-aarch64."""
    cache = Path(os.environ.get("GCLF_ARM_CACHE") or Path.home() / ".cache" / "gclf-arm")
    found = os.environ.get("GCLF_QEMU_X86_64") or (str(cache / "qemu-x86_64") if (cache / "qemu-x86_64").is_file() else shutil.which("qemu-x86_64"))
    return Path(found) if found else None


RUN = """
import sys, numpy as np, onnxruntime as ort
x = np.load(sys.argv[1])
out = {"ort": np.array(ort.__file__)}
for i, model in enumerate(sys.argv[3:]):
    s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    out[f"m{i}"] = s.run(None, {s.get_inputs()[0].name: x})[0]
np.savez(sys.argv[2], **out)
"""


def _run_models(models: list[Path], x: np.ndarray, tmp: Path, *, qemu: Path | None = None, cpu: str = "Haswell",
                pythonpath: Path | None = None) -> tuple[list[np.ndarray], str]:
    """Each model's output for `x` in a fresh Python: native, under qemu (`cpu`), or with the
    onnxruntime copy at `pythonpath` first; and the onnxruntime file that process loaded."""
    np.save(tmp / "x.npy", x)
    out = tmp / ("emulated.npz" if qemu else "avx2.npz" if pythonpath else "native.npz")
    cmd = ([str(qemu), "-cpu", cpu] if qemu else []) + [sys.executable, "-c", RUN, str(tmp / "x.npy"), str(out), *map(str, models)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=environment(pythonpath), timeout=300)
    assert done.returncode == 0, done.stderr[-800:]
    data = np.load(out)
    return [data[f"m{i}"] for i in range(len(models))], str(data["ort"])


@pytest.mark.skipif(not X86_LINUX, reason="emulates an x86_64 CPU with qemu user mode")
def test_int8_without_vnni_is_the_same_for_saturation_safe_files(tmp_path: Path) -> None:
    """onnxruntime has no switch to turn VNNI off (MLAS picks its int8 kernels from cpuid); one
    independent way to run the int8 path without VNNI is qemu emulating a Haswell (AVX2, no VNNI, no AVX-512):
    gclf's default (7-bit weights) computes the same there as natively, and a file with full
    8-bit weights does not, which shows the emulation really ran the saturating kernel."""
    qemu = _qemu_x86()
    if qemu is None:
        pytest.skip("no qemu-x86_64: run tools/arm_check.py once (it caches one), or set GCLF_QEMU_X86_64")
    models = [write_qdq_conv(tmp_path / "w64.onnx", 64), write_qdq_conv(tmp_path / "w127.onnx", 127)]
    x = np.full((1, 4, 4, 4), 255.0, np.float32)  # u8 activations at their maximum
    exact = [np.full((1, 2, 2, 2), exact_probe_output(w), np.float32) for w in (64, 127)]
    native, _ = _run_models(models, x, tmp_path)
    emulated, _ = _run_models(models, x, tmp_path, qemu=qemu)
    np.testing.assert_array_equal(emulated[0], exact[0])  # 7-bit: exact without VNNI
    assert (emulated[1] < exact[1]).all()  # 8-bit: AVX2's 16-bit sums saturated
    if detect_cpu_class() not in SATURATING:
        np.testing.assert_array_equal(native[1], exact[1])  # this CPU sums exactly (VNNI, ...)
    np.testing.assert_array_equal(native[0], emulated[0])



def _small_conv_net(path: Path, seed: int = 0) -> Path:
    """Conv-ReLU-Conv-ReLU-pool-classifier with random weights, but for two neighbouring taps of
    the first filter that dominate it: with full 8-bit weights both quantize near 127, and a
    bright pixel pair then takes AVX2's 16-bit sum past its limit (2 x 255 x ~125)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.05, (16, 3, 3, 3)).astype(np.float32)
    w1[0, 0, 1, 0], w1[0, 0, 1, 1] = 1.0, 0.97
    weights = {"w1": w1, "w2": rng.normal(0, 0.3, (32, 16, 3, 3)), "fc": rng.normal(0, 0.3, (32, 2))}
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c2"], ["r2"]),
            helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"], axis=1),
            helper.make_node("MatMul", ["f", "fc"], ["logits"]),
        ],
        "small_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))
    return path


@pytest.mark.skipif(not X86_LINUX, reason="onnxruntime's AVX2 kernels are x86-64 (the copy is built for Linux)")
def test_gclf_int8_answers_the_same_on_avx2_kernels(tmp_path: Path) -> None:
    """The int8 path with VNNI and AVX-512 off, at native speed: benchmarks/ort_avx2.py's copy
    of onnxruntime picks the AVX2 kernels as an AVX2-only CPU does. Its probe saturates there;
    a network quantized by gclf's quantize_int8 with its defaults (7-bit weights) gives
    bit-identical outputs with both kernel sets, and the same network with full 8-bit weights
    does not, which shows the check can see the difference."""
    from gclf.export.quantize import QuantizeOptions, quantize_int8
    from gclf.runtime.preprocess import PreprocessSpec

    try:
        avx2 = build(tmp_path / "ort-avx2")
    except NotRecognised as e:
        pytest.skip(f"this onnxruntime build's kernel choice is not one benchmarks/ort_avx2.py recognises: {e}")
    w127 = write_qdq_conv(tmp_path / "w127.onnx", 127)
    saturated, loaded = probe_output(w127, avx2)
    assert loaded.is_relative_to(avx2) and saturated < exact_probe_output(127)
    sums_exactly = detect_cpu_class() not in SATURATING
    if sums_exactly:
        assert probe_output(w127)[0] == exact_probe_output(127)  # this CPU's own kernels

    rng = np.random.default_rng(1)
    photos = [write_image_file(tmp_path / f"cal{i}.png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for i in range(16)]
    fp32 = _small_conv_net(tmp_path / "net.onnx")
    spec = PreprocessSpec(input_height=32, input_width=32)
    default, full8 = tmp_path / "net.int8.onnx", tmp_path / "net.8bit.onnx"
    quantize_int8(fp32, default, photos, spec, "input", QuantizeOptions())
    quantize_int8(fp32, full8, photos, spec, "input", QuantizeOptions(reduce_range=False))
    assert saturation_safe(default) and not saturation_safe(full8)
    x = rng.uniform(-2.2, 2.7, (8, 3, 32, 32)).astype(np.float32)
    native, _ = _run_models([default, full8], x, tmp_path)
    on_avx2, ort_file = _run_models([default, full8], x, tmp_path, pythonpath=avx2)
    assert ort_file.startswith(str(avx2))
    np.testing.assert_array_equal(on_avx2[0], native[0])
    if sums_exactly:
        assert not np.array_equal(on_avx2[1], native[1])


@pytest.mark.parametrize(("safe", "expect"), [(True, "does not matter"), (False, "it may matter")])
def test_bench_names_the_cpu_and_the_gate_class(tiny_onnx, monkeypatch, safe: bool, expect: str) -> None:
    import json

    import gclf.runtime.cpu_class as cpu_class
    from gclf.runtime.bench import Row, int8_cpu_lines

    quant = {"format": "QDQ", "parity_cpu_class": "avx512-vnni", "saturation_safe": safe}
    int8 = tiny_onnx("tiny.int8.onnx", props_update={"gclf.variant": "int8", "gclf.quantization": json.dumps(quant)})
    monkeypatch.setattr(cpu_class, "detect_cpu_class", lambda: "avx2")
    rows = [Row("onnxruntime fp32", [10.0]), Row("onnxruntime int8", [4.0])]
    lines = int8_cpu_lines(int8, rows)
    assert lines[0].startswith("CPU: ") and "int8 class avx2" in lines[0]
    assert "2.50x" in lines[1] and "avx2 CPU" in lines[1]
    assert "measured on avx512-vnni" in lines[2]
    assert lines[-1].startswith("note: ") and expect in lines[-1]
    # the function gclf-infer --check calls takes the file's ModelMetadata as well
    from gclf.runtime.classifier import Classifier

    assert int8_cpu_note(Classifier(int8).metadata, "avx2") == lines[-1].removeprefix("note: ")
    assert int8_cpu_note(Classifier(tiny_onnx("fp32.onnx")).metadata, "avx2") is None
