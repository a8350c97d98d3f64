"""Which int8 arithmetic this CPU gives onnxruntime: the CPU class an int8 file's parity holds on.

onnxruntime's int8 matrix products (MLAS, u8 activations x s8 weights) take a different
instruction path per CPU, chosen at start-up from cpuid with no switch to change it:

- x86 with AVX2 but no VNNI (most AMD before Zen 4, Intel before Ice Lake / Alder Lake), and
  AVX-512 without VNNI (Skylake-SP): VPMADDUBSW adds two u8 x s8 products into a signed
  16-bit lane that saturates at 32767. 255 x 127 x 2 = 64770 does not fit, so a file with full
  8-bit weights can answer differently there. Weights within [-64, 64] (onnxruntime's
  `reduce_range`, 7-bit) give at most 255 x 64 x 2 = 32640: nothing saturates.
- x86 with AVX-512 VNNI or AVX-VNNI (VPDPBUSD), ARM with or without the dot-product
  extension (UDOT/SDOT, or widening NEON multiplies): products summed in 32 bits, exact.

Read from /proc/cpuinfo and `platform` only: no onnxruntime or torch import.
"""

from __future__ import annotations

import platform
from pathlib import Path

# Classes whose onnxruntime u8 x s8 kernels saturate 16-bit intermediate sums.
SATURATING = frozenset({"avx2", "avx512-no-vnni"})
EXACT = frozenset({"avx512-vnni", "avx-vnni", "arm-dotprod", "arm-no-dotprod", "x86-sse"})
DESCRIPTIONS = {
    "avx2": "x86 with AVX2, no VNNI (int8 sums saturate at 16 bits)",
    "avx512-no-vnni": "x86 with AVX-512, no VNNI (int8 sums saturate at 16 bits)",
    "avx512-vnni": "x86 with AVX-512 VNNI (exact int8 sums)",
    "avx-vnni": "x86 with AVX-VNNI (exact int8 sums)",
    "x86-sse": "x86 without AVX2 (exact int8 sums)",
    "arm-dotprod": "ARM with dot product, e.g. Raspberry Pi 5 (exact int8 sums)",
    "arm-no-dotprod": "ARM without dot product, e.g. Raspberry Pi 4 (exact int8 sums)",
    "unknown": "CPU class not detected",
}


def cpu_class_from(machine: str, cpuinfo: str | None, system: str = "Linux") -> str:
    """The CPU class from `platform.machine()` and the text of /proc/cpuinfo (None if absent)."""
    machine = machine.lower()
    flags = cpu_flags_from(cpuinfo)
    if machine in ("x86_64", "amd64", "i686", "i386", "x86"):
        if not flags:
            return "unknown"
        if "avx512_vnni" in flags or "avx512vnni" in flags:
            return "avx512-vnni"
        if "avx_vnni" in flags:
            return "avx-vnni"
        if "avx512bw" in flags:
            return "avx512-no-vnni"
        return "avx2" if "avx2" in flags else "x86-sse"
    if machine in ("aarch64", "arm64", "armv8l"):
        if flags:
            return "arm-dotprod" if "asimddp" in flags else "arm-no-dotprod"
        # Apple silicon has no /proc/cpuinfo; every M-series core has the dot product.
        return "arm-dotprod" if system == "Darwin" else "unknown"
    return "unknown"


def cpu_flags_from(cpuinfo: str | None) -> frozenset[str]:
    """The feature flags of /proc/cpuinfo's text ("flags" on x86, "Features" on ARM)."""
    flags: set[str] = set()
    for line in (cpuinfo or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags)


def _cpuinfo() -> str | None:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None


# Matrix and bf16 units beside the int8 class: they change which engine is fastest, not the
# int8 sums (AMX's TDPBUSD sums u8 x s8 products exactly, as VNNI does).
ACCELERATOR_FLAGS = {"amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}


def accelerators_from(cpuinfo: str | None) -> tuple[str, ...]:
    """The AMX and bf16 units /proc/cpuinfo lists, by name ("AMX-INT8", "AMX-BF16", "AVX512-BF16")."""
    flags = cpu_flags_from(cpuinfo)
    return tuple(name for flag, name in ACCELERATOR_FLAGS.items() if flag in flags)


def cpu_accelerators() -> tuple[str, ...]:
    """This machine's AMX and bf16 units (see accelerators_from); empty where there are none."""
    return accelerators_from(_cpuinfo()) if platform.machine().lower() in ("x86_64", "amd64") else ()


def has_amx_int8() -> bool:
    """Intel AMX with int8 tiles (Xeon from Sapphire Rapids on), usable by this process's kernel."""
    return "AMX-INT8" in cpu_accelerators()


def has_bf16() -> bool:
    """bf16 arithmetic in hardware (AMX-BF16 or AVX512-BF16): where a bf16 precision pays."""
    return bool({"AMX-BF16", "AVX512-BF16"} & set(cpu_accelerators()))


def cpu_class_label(cpu_class: str | None = None) -> str:
    """The int8 class with the matrix units named, for reports: "avx512-vnni + AMX-INT8, AMX-BF16"."""
    here = cpu_class or detect_cpu_class()
    units = cpu_accelerators()
    return f"{here} + {', '.join(units)}" if units else here


def detect_cpu_class() -> str:
    """This machine's CPU class (see the module doc); "unknown" where it cannot be read."""
    return cpu_class_from(platform.machine(), _cpuinfo(), platform.system())


def cpu_model_name() -> str:
    """The CPU's marketing name, for benchmark reports ("model name" in /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def int8_arithmetic(cpu_class: str) -> str:
    """"saturating", "exact" or "unknown": how onnxruntime sums u8 x s8 products on `cpu_class`."""
    if cpu_class in SATURATING:
        return "saturating"
    return "exact" if cpu_class in EXACT else "unknown"


def int8_cpu_note(metadata: object, cpu_class: str | None = None) -> str | None:
    """What a reader should know about running an int8 file on this CPU class, or None.

    `metadata`: a ModelMetadata (or its `quantization` dict). None for an fp32 file or when
    this is the CPU class the file's parity gate ran on. Otherwise one sentence that says
    whether the difference matters: not for a saturation-safe file, nor between two classes
    with exact int8 sums; it does for a file with full 8-bit weights gated on one side of the
    saturating/exact line and run on the other. Callers: gclf-bench, gclf-infer --check.
    """
    quant = metadata if isinstance(metadata, dict) or metadata is None else getattr(metadata, "quantization", None)
    if not quant:
        return None
    here = cpu_class or detect_cpu_class()
    gated = quant.get("parity_cpu_class")
    safe = quant.get("saturation_safe")
    if gated == here:
        return None
    where = f"this CPU is {here}" if here != "unknown" else "this CPU's class is unknown"
    if gated is None:
        head = f"this int8 file does not record the CPU class its parity was measured on (exported before gclf recorded it); {where}"
    else:
        head = f"this int8 file's parity was measured on {gated}; {where}"
    if safe is True:
        return f"{head}: it does not matter, the file is saturation-safe (7-bit or u8 weights), so every CPU class computes the same int8 sums"
    if gated is not None and int8_arithmetic(gated) == int8_arithmetic(here) == "exact":
        return f"{head}: it does not matter, both compute int8 sums exactly"
    if gated is not None and int8_arithmetic(gated) == int8_arithmetic(here) == "saturating":
        return f"{head}: it does not matter, both saturate int8 sums the same way"
    return (
        f"{head}: it may matter, the file has full 8-bit weights whose int8 sums saturate on some CPUs and not on others, "
        "so a few answers can differ from the ones its gate measured; re-export it with gclf-export --quantize (saturation-safe by default)"
    )
