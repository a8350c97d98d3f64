"""A process that cannot use Intel AMX, on a machine that has it: what an AVX-512 VNNI CPU
without AMX (Ice Lake, Cascade Lake) runs, at this machine's speed.

Linux lends AMX's tile registers to a process only when it asks (arch_prctl
ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); onnxruntime's MLAS and OpenVINO's oneDNN ask once
and take their AVX-512 VNNI kernels when refused. `environment()` preloads a small shim
(built here with cc) whose syscall() gives that refusal, as a kernel without AMX does; every
other system call passes through. A measuring tool: gclf never loads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>
long syscall(long number, ...) {
    va_list ap; va_start(ap, number);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long), d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_arch_prctl && a == 0x1023) { errno = EPERM; return -1; }  /* ARCH_REQ_XCOMP_PERM */
    static long (*real)(long, ...) = 0;
    if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(number, a, b, c, d, e, f);
}
"""


def shim(folder: Path | None = None) -> Path | None:
    """The shim's shared library (built once into `folder`), or None without a C compiler."""
    folder = folder or Path.home() / ".cache" / "gclf-no-amx"
    lib = folder / "no_amx.so"
    if lib.is_file():
        return lib
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "no_amx.c").write_text(SHIM)
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(lib), str(folder / "no_amx.c"), "-ldl"], check=True, capture_output=True)
    return lib


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the shim preloaded; unchanged when it
    cannot be built."""
    env = dict(os.environ if base is None else base)
    lib = shim()
    if lib is not None:
        env["LD_PRELOAD"] = " ".join(filter(None, [str(lib), env.get("LD_PRELOAD")]))
    return env
