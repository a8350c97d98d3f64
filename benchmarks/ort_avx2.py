"""onnxruntime as an AVX2-only x86 CPU runs it, on a machine that has AVX-512 and VNNI.

    python -m benchmarks.ort_avx2 [DEST]      # builds DEST (default ~/.cache/gclf-ort-avx2/<version>)
    PYTHONPATH=DEST python ...                # that process's onnxruntime uses the AVX2 kernels

onnxruntime has no switch for its CPU kernels: MLAS, its math library, picks them once from
cpuid (AVX2, AVX-VNNI, AVX-512, AVX-512 VNNI). An int8 model behaves differently on the AVX2
kernels (u8 x s8 products summed in 16 bits, VPMADDUBSW, which saturates) and runs at a
different speed, so a VNNI machine cannot show what an AVX2 laptop gets. qemu emulating a
Haswell shows the arithmetic but is far too slow for 2000 photos and says nothing of speed.

This builds a copy of the installed onnxruntime package (symbolic links, but for its Python
extension) in which MLAS's two checks that would leave the AVX2 kernels, "has AVX-VNNI" and
"has AVX-512F", never pass: two conditional jumps made unconditional, found by their byte
pattern. Everything else, fp32 included, then takes the AVX2/FMA3 path as on an AVX2-only CPU.
The copy is checked before use: a QDQ convolution whose 16-bit sums must saturate on the AVX2
kernel (and not on the VNNI one) has to give the saturated answer in it, or the build is refused.

What it does not model: the speed of a different chip. The AVX2 code runs on this CPU's cores,
so a ratio measured with it (int8 against fp32, both on AVX2 kernels) is this core's, not a
Zen 2's or a Haswell's. It is a benchmark tool: gclf itself never loads the copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

# mov eax,7; mov ecx,1; cpuid; test al,0x10 (leaf 7.1 EAX bit 4: AVX-VNNI); je <skip>
AVX_VNNI_CHECK = re.compile(rb"\xb8\x07\x00\x00\x00\xb9\x01\x00\x00\x00\x0f\xa2\xa8\x10\x74")
# test r32,0x10000 (leaf 7.0 EBX bit 16: AVX-512F); je <skip>, the next check in the same function
AVX512F_CHECK = re.compile(rb"\x41?\xf7[\xc0-\xc7]\x00\x00\x01\x00\x74")
JE, JMP = 0x74, 0xEB  # je rel8 -> jmp rel8: same length, same target


class NotRecognised(RuntimeError):
    """This onnxruntime build's kernel choice does not look as expected: no copy is made."""


def patch_kernel_choice(binary: bytes) -> bytes:
    """The extension's bytes with MLAS's AVX-VNNI and AVX-512F branches never taken."""
    found = [m.end() - 1 for m in AVX_VNNI_CHECK.finditer(binary)]
    if len(found) != 1:
        raise NotRecognised(f"expected one AVX-VNNI check in MLAS's platform setup, found {len(found)}")
    vnni_je = found[0]
    avx512 = AVX512F_CHECK.search(binary, vnni_je, vnni_je + 160)
    if avx512 is None:
        raise NotRecognised("no AVX-512F check follows the AVX-VNNI one")
    patched = bytearray(binary)
    for at in (vnni_je, avx512.end() - 1):
        assert patched[at] == JE
        patched[at] = JMP
    return bytes(patched)


def default_dest() -> Path:
    import onnxruntime

    return Path.home() / ".cache" / "gclf-ort-avx2" / onnxruntime.__version__


def build(dest: Path) -> Path:
    """DEST/onnxruntime: the installed package, linked, with a patched extension. Returns DEST."""
    import onnxruntime

    source = Path(onnxruntime.__file__).parent
    target = dest / "onnxruntime"
    if target.exists():
        shutil.rmtree(target)
    extension = next(source.glob("capi/onnxruntime_pybind11_state*.so"), None)
    if extension is None:
        raise NotRecognised(f"{source}: no capi/onnxruntime_pybind11_state*.so (not a Linux x86-64 build?)")
    patched = patch_kernel_choice(extension.read_bytes())
    for path in source.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        if path == extension:
            out.write_bytes(patched)
        else:
            out.symlink_to(path)
    if not saturates_in(dest):
        shutil.rmtree(target)
        raise NotRecognised("the patched copy still sums without saturating: it does not run the AVX2 kernels")
    return dest


# The probe: a QDQ convolution, 36 products of u8 255 x s8 `weight` per output. On the AVX2
# kernel pairs of products are summed in 16 bits first: 2 x 255 x 127 = 64770 saturates at
# 32767, 2 x 255 x 64 = 32640 does not. Exact kernels (VNNI, ARM) give 255 x w x 36 for both.
PROBE_SCALE = 2e4  # the output's quantization step: the exact and saturated sums land on different steps


def write_qdq_conv(path: Path, weight: int) -> Path:
    """A QDQ Conv with every int8 weight = `weight`, 36 products per output: onnxruntime fuses
    DQ-Conv-Q into QLinearConv, its u8 x s8 kernel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def scalar(name: str, value: float, dtype: type) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(value, dtype), name)

    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
            helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
            helper.make_node("Conv", ["xd", "wd"], ["yf"]),
            helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["yq"]),
            helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
        ],
        "qdq_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [scalar("xs", 1.0, np.float32), scalar("xz", 0, np.uint8), scalar("ws", 1.0, np.float32), scalar("wz", 0, np.int8),
         scalar("ys", PROBE_SCALE, np.float32), scalar("yz", 0, np.uint8),
         numpy_helper.from_array(np.full((2, 4, 3, 3), weight, np.int8), "wq")],
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def exact_probe_output(weight: int) -> float:
    return float(np.round(255.0 * weight * 36 / PROBE_SCALE) * PROBE_SCALE)


PROBE_RUN = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print(float(s.run(None, {"x": np.full((1, 4, 4, 4), 255.0, np.float32)})[0].ravel()[0]))
print(ort.__file__)
"""


def environment(dest: Path | None) -> dict[str, str]:
    """This process's environment with `dest` (a built copy) first on PYTHONPATH: a Python
    started with it imports the copy's onnxruntime. None: the environment unchanged."""
    env = dict(os.environ)
    if dest is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(dest), env.get("PYTHONPATH")]))
        if _has_amx():
            # MLAS's AMX set-up comes after the two patched checks and would take int8 work
            # back to exact kernels: the process is refused AMX as well (benchmarks/no_amx.py).
            from benchmarks.no_amx import environment as without_amx

            env = without_amx(env)
    return env


def _has_amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False


def probe_output(model: Path, pythonpath: Path | None = None) -> tuple[float, Path]:
    """The probe's first output in a fresh process (with `pythonpath` first on the path), and
    the onnxruntime it loaded."""
    done = subprocess.run([sys.executable, "-c", PROBE_RUN, str(model)], capture_output=True, text=True, env=environment(pythonpath), timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-800:])
    value, loaded = done.stdout.split("\n")[:2]
    return float(value), Path(loaded)


def saturates_in(dest: Path) -> bool:
    """Whether onnxruntime from `dest` runs the saturating AVX2 kernel (and was the one loaded)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gclf-ort-probe-") as tmp:
        model = write_qdq_conv(Path(tmp) / "w127.onnx", 127)
        value, loaded = probe_output(model, dest)
    return loaded.is_relative_to(dest) and value < exact_probe_output(127)


def main() -> None:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else default_dest()
    try:
        build(dest)
    except NotRecognised as e:
        raise SystemExit(f"onnxruntime with AVX2 kernels: {e}") from None
    print(dest)


if __name__ == "__main__":
    main()
