#!/usr/bin/env python3
"""The ARM check: the Raspberry Pi guide's install, on an emulated Raspberry Pi 4 and Pi 5.

    python tools/arm_check.py [--fp32 MODEL.onnx] [--int8 MODEL.int8.onnx] [--faces FACES.onnx]

For each Raspberry Pi OS generation (Debian bookworm, Python 3.11; trixie, Python 3.13) it
runs the install commands that docs/raspberry-pi.md prints (read out of the page, the block
after `<!-- ci:pi-install -->`, so the guide cannot drift from what is checked) for an
emulated arm64 Debian: the `apt install` line's packages are built into the root (Debian's
python3-numpy among them; python3-picamera2 comes from the Raspberry Pi archive, which
cannot be reached from CI, so it is left out), `useradd` is not run (no user accounts under
emulation), and every other line runs as printed, with /opt/gclf moved into the cache: the
`--system-site-packages` venv, the constraints file made from the system numpy, and
`pip install -c ... ./gclf-*.whl` run by the emulated pip, which resolves and downloads the
aarch64 wheels exactly as on a Pi. Then, for each Pi CPU (Cortex-A72: Pi 4, ARMv8.0 without
dot product; Cortex-A76: Pi 5), it runs the installed gclf-infer under qemu user-mode
emulation and compares it with the same command on this (x86) machine:

- the venv still imports Debian's numpy (the one picamera2 is built against), the version
  the constraints file pins;
- `gclf-infer MODEL PHOTOS --json` with the fp32 and the int8 model (`--threads 1`, and the
  int8 model with onnxruntime's default threads too): labels identical, probabilities within
  a tolerance of x86 (int8 kernels differ between x86 and ARM);
- with --faces, a faces model run as the unit runs it (`--face-model` naming the YuNet file
  installed beside it), with one thread and with the default: the same faces, boxes within
  2 px, labels and probabilities as above;
- `gclf-infer MODEL --video CLIP --headless` on a generated clip: one JSON line per frame,
  the same fields, frames and labels as on x86;
- `gclf-infer --help`.

Everything comes from the package registries: qemu 10 (trixie's `qemu-user`, a static
binary; bookworm's qemu 7.2 segfaults importing onnxruntime >= 1.28), a minimal arm64 Debian
(debootstrap, first stage only: the .debs are unpacked with `dpkg -x`, nothing runs as root
inside; what the maintainer scripts would do and the check needs, the BLAS alternatives and
binfmt_misc's part, is done by _do_what_postinst_does), and the aarch64 wheels the emulated
pip picks. Downloads, the built userlands and the guide's venv are cached in $GCLF_ARM_CACHE
(default ~/.cache/gclf-arm); on a warm cache only the guide's wheel install is run again. An
empty cache works, it only takes longer. Speed under emulation means nothing, so none is
checked: run gclf-bench on a real Pi for that.

Exit codes: 0 every check passed; 1 a check failed (ARM differs from x86, a command failed);
2 bad usage (a model or the photos missing); 3 the emulated Pi could not be set up (no apt,
no network, not root, ...): never a silent skip.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(os.environ.get("GCLF_ARM_CACHE") or Path.home() / ".cache" / "gclf-arm")
DEFAULT_PHOTOS = REPO.parent / "shared" / "datasets"
DEFAULT_DETECTOR = REPO.parent / "shared" / "models" / "face_detection_yunet_2026may.onnx"

# Raspberry Pi OS generations: the Debian suite each is built on, its Python, its glibc
# (which bounds the manylinux wheels pip accepts there).
SUITES = {"bookworm": ("3.11", 36), "trixie": ("3.13", 41)}
CPUS = {"cortex-a72": "Raspberry Pi 4", "cortex-a76": "Raspberry Pi 5"}

# Tolerances on each class probability, ARM against x86. Measured (docs/raspberry-pi.md):
# fp32: 0 to 6e-6 with 224 px models, but 3.7e-4 with the quick start's 112 px model (all four
# Pis alike, 2026-12-01): OpenCV's aarch64 build shrinks the 200x200 UTKFace photos to 112 px
# with slightly different pixels than x86's (the preprocessed tensors differ; the logits of
# identical tensors agree to 1e-7). 1e-3 leaves 2.7x headroom.
# int8: gclf writes 7-bit weights (docs/int8.md), so x86's int8 sums are exact on every x86
# CPU, AVX2 included, as ARM's are; what is left is that resize difference and the rounding of
# float steps between the integer kernels (largest seen 0.0053; docs/measurements.md, "int8
# against fp32, and across CPU classes"). Full 8-bit weights saturated on CI's AVX2 EPYC and moved x86 away from
# ARM by up to 0.12; this tolerance catches such a drift again.
TOL_FP32 = 1e-3
TOL_INT8 = 0.02

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SETUP = 3


class SetupError(Exception):
    """The emulated Pi cannot be built here; the message says what is missing."""


class CheckFailed(Exception):
    pass


def log(message: str) -> None:
    print(f"arm-check: {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], *, what: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 1800) -> str:
    """Run a setup step; a failure is a SetupError naming the step and the tool's last words."""
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SetupError(f"{what}: {cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise SetupError(f"{what}: timed out after {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-5:]
        raise SetupError(f"{what} failed (exit {done.returncode}): " + " | ".join(tail))
    return done.stdout


# --- the emulator and the arm64 userland -----------------------------------------------------


def debian_mirror() -> str:
    """The machine's own Debian mirror (deb822 sources), else deb.debian.org; $GCLF_ARM_MIRROR wins."""
    if os.environ.get("GCLF_ARM_MIRROR"):
        return os.environ["GCLF_ARM_MIRROR"]
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def fetch_debs(packages: list[str], dest: Path, *, suite: str = "trixie") -> list[Path]:
    """Download `packages` (.deb, this machine's architecture) from Debian `suite` with apt,
    through a private sources list and package lists: the machine's apt state is untouched."""
    if shutil.which("apt-get") is None:
        raise SetupError("apt-get is not available: the ARM check needs a Debian-like machine to fetch qemu and debootstrap")
    if not KEYRING.is_file():
        raise SetupError(f"{KEYRING} is missing: install the debian-archive-keyring package")
    work = Path(tempfile.mkdtemp(prefix="apt-", dir=dest))
    (work / "lists" / "partial").mkdir(parents=True)
    (work / "cache" / "archives" / "partial").mkdir(parents=True)
    (work / "x.sources").write_text(
        f"Types: deb\nURIs: {debian_mirror()}\nSuites: {suite}\nComponents: main\nSigned-By: {KEYRING}\n"
    )
    opts = [
        f"-o=Dir::Etc::sourcelist={work / 'x.sources'}", "-o=Dir::Etc::sourceparts=-",
        f"-o=Dir::State::Lists={work / 'lists'}", f"-o=Dir::Cache={work / 'cache'}",
        "-o=APT::Sandbox::User=root", "-qq",
    ]
    _run(["apt-get", *opts, "update"], what=f"apt-get update ({suite} from {debian_mirror()})", timeout=600)
    if not any((work / "lists").glob("*Packages*")):  # apt-get update only warns about a failed fetch
        raise SetupError(f"apt-get update could not fetch Debian {suite}'s package lists from {debian_mirror()} (no network, or the mirror is unreachable; $GCLF_ARM_MIRROR sets another)")
    _run(["apt-get", *opts, "download", *packages], what=f"apt-get download {' '.join(packages)} ({suite})", cwd=work, timeout=600)
    debs = [next(work.glob(f"{p}_*.deb"), None) for p in packages]
    if None in debs:
        raise SetupError(f"apt-get download left no .deb for {packages}")
    return debs  # type: ignore[return-value]


def _publish(tmp: Path, final: Path) -> None:
    # Built beside its final place and renamed: an interrupted build is never taken for a
    # finished one. If a concurrent run finished the same folder first, its copy is kept
    # (it may be in use) and this one dropped; an unfinished leftover is replaced.
    if final.exists():
        if (final / ".complete").is_file():
            shutil.rmtree(tmp)
            return
        shutil.rmtree(final)
    tmp.rename(final)


def ensure_tools(cache: Path) -> tuple[Path, list[str]]:
    """qemu-aarch64 (qemu 10, static) and a debootstrap command, downloaded once into the cache."""
    qemu = cache / "qemu-aarch64"
    boot = cache / "debootstrap"
    # qemu-x86_64 too: tests/export/test_int8_cpu.py runs x86 int8 on an emulated CPU without VNNI.
    if not qemu.is_file() or not (cache / "qemu-x86_64").is_file() or not (boot / "usr" / "sbin" / "debootstrap").is_file():
        if platform.machine() not in ("x86_64", "AMD64"):
            raise SetupError(f"the ARM check emulates aarch64 on x86_64; this machine is {platform.machine()}")
        log("fetching qemu-user (qemu 10) and debootstrap from Debian trixie")
        tmp = Path(tempfile.mkdtemp(prefix="tools-", dir=cache))
        try:
            qemu_deb, boot_deb = fetch_debs(["qemu-user", "debootstrap"], tmp)
            _run(["dpkg-deb", "-x", str(qemu_deb), str(tmp / "qemu")], what=f"unpacking {qemu_deb.name}")
            _run(["dpkg-deb", "-x", str(boot_deb), str(tmp / "debootstrap")], what=f"unpacking {boot_deb.name}")
            binary = tmp / "qemu" / "usr" / "bin" / "qemu-aarch64"
            if not binary.is_file():
                raise SetupError(f"{qemu_deb.name} has no usr/bin/qemu-aarch64")
            _publish(tmp / "debootstrap", boot)
            (tmp / "qemu" / "usr" / "bin" / "qemu-x86_64").rename(cache / "qemu-x86_64")
            binary.rename(qemu)  # the two emulators needed, not the package's 40
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    debootstrap = [str(boot / "usr" / "sbin" / "debootstrap")]
    return qemu, debootstrap


def ensure_root(cache: Path, suite: str, debootstrap: list[str], packages: tuple[str, ...] = ("python3",)) -> Path:
    """A minimal arm64 Debian `suite` with `packages` (and what they depend on), unpacked
    (debootstrap --foreign + dpkg -x). Cached per package list."""
    name = f"root-{suite}" if packages == ("python3",) else f"root-{suite}-" + hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    root = cache / name
    if (root / ".complete").is_file():
        if packages != ("python3",):
            _do_what_postinst_does(root)  # idempotent; a cached root gets this checkout's hook
        return root
    if os.geteuid() != 0:
        raise SetupError(f"building the arm64 {suite} userland needs root (debootstrap); run once as root or copy a built {root}")
    log(f"building a minimal arm64 Debian {suite} with {', '.join(packages)} (debootstrap, first stage)")
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cache))
    try:
        env = {**os.environ, "DEBOOTSTRAP_DIR": str(cache / "debootstrap" / "usr" / "share" / "debootstrap")}
        _run([*debootstrap, "--foreign", "--arch=arm64", "--variant=minbase", f"--include={','.join(packages)}",
              f"--keyring={KEYRING}", suite, str(tmp), debian_mirror()], what=f"debootstrap {suite} arm64", env=env)
        archives = tmp / "var" / "cache" / "apt" / "archives"
        for deb in sorted(archives.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(tmp)], what=f"unpacking {deb.name}")
            deb.unlink()
        _do_what_postinst_does(tmp)
        (tmp / ".complete").write_text(suite + "\n")
        _publish(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _do_what_postinst_does(root: Path) -> None:
    """What the packages' maintainer scripts would do and dpkg -x does not, as far as the
    check needs it: the BLAS/LAPACK alternatives Debian's numpy links against
    (update-alternatives makes libblas.so.3 -> blas/libblas.so.3), and binfmt_misc's part
    (below): none of it changes what runs, only that it can run here."""
    libdir = root / "usr" / "lib" / "aarch64-linux-gnu"
    for lib in ("blas/libblas.so.3", "lapack/liblapack.so.3"):
        link = libdir / Path(lib).name
        if (libdir / lib).exists() and not link.is_symlink():
            link.symlink_to(lib)
    for stdlib in (root / "usr" / "lib").glob("python3.*"):
        if (stdlib / "os.py").is_file():
            hook = stdlib / "sitecustomize.py"
            if not hook.is_file() or hook.is_symlink() or hook.read_text() != BINFMT_STAND_IN:
                hook.unlink(missing_ok=True)  # Debian's is a link to /etc/python3.X/sitecustomize.py (apport's hook)
                hook.write_text(BINFMT_STAND_IN)


# On a Pi, a Python that starts another program (venv starting ensurepip, ensurepip starting
# pip, pip running `uname`) just calls exec. Under qemu user mode the kernel cannot run an
# aarch64 program unless binfmt_misc hands it to qemu, and binfmt_misc needs a privileged
# machine (CI runs in a container). This sitecustomize, put in the emulated root's Python,
# does binfmt_misc's part: a child process that is an aarch64 program (or a script whose
# interpreter is one) is started through qemu. It acts only where $GCLF_ARM_QEMU is set,
# i.e. while install_as_guided runs the guide's commands; the checks run without it.
BINFMT_STAND_IN = '''"""tools/arm_check.py: binfmt_misc's part under qemu user mode (active with $GCLF_ARM_QEMU)."""
import os
import shutil
import subprocess

_QEMU = os.environ.get("GCLF_ARM_QEMU")
_popen_init = subprocess.Popen.__init__


def _arm_elf(path):
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return False
    return head[:4] == b"\\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64


def _host(path):
    # qemu opens the program it is given on the host: the guest's /usr/bin/x is the root's.
    root = os.environ.get("QEMU_LD_PREFIX", "")
    return root + path if root and os.path.isabs(path) and not path.startswith(root) and os.path.exists(root + path) else path


def _via_qemu(argv):
    path = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if not path:
        return argv
    if _arm_elf(path):
        return [_QEMU, _host(path), *argv[1:]]
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200)
    except OSError:
        return argv
    interp = first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []
    if interp and _arm_elf(interp[0]):
        return [_QEMU, _host(interp[0]), *interp[1:], path, *argv[1:]]
    return argv


def _init(self, args, *rest, **kwargs):
    if _QEMU and isinstance(args, (list, tuple)) and args and not kwargs.get("shell"):
        argv = [os.fspath(a) for a in args]
        if kwargs.get("executable") is not None:
            argv[0] = os.fspath(kwargs.pop("executable"))
        args = _via_qemu(argv)
    _popen_init(self, args, *rest, **kwargs)


# qemu maps the guest's paths into the root for open() and stat() but not for the xattr
# calls, which shutil.copy2 makes (trixie's ensurepip copies /usr/share/python-wheels/*).
_listxattr, _getxattr = os.listxattr, os.getxattr


def _mapped(path):
    return _host(os.fspath(path)) if isinstance(path, (str, os.PathLike)) and isinstance(os.fspath(path), str) else path


def _listxattr_mapped(path=None, *, follow_symlinks=True):
    return _listxattr(_mapped(path), follow_symlinks=follow_symlinks)


def _getxattr_mapped(path, attribute, *, follow_symlinks=True):
    return _getxattr(_mapped(path), attribute, follow_symlinks=follow_symlinks)


if _QEMU:
    subprocess.Popen.__init__ = _init
    os.listxattr, os.getxattr = _listxattr_mapped, _getxattr_mapped
'''


@dataclass(frozen=True)
class Pi:
    """One emulated Raspberry Pi: a CPU model and an OS generation (its Python and wheels)."""

    qemu: Path
    root: Path
    suite: str
    cpu: str
    site: tuple[Path, ...]  # on PYTHONPATH, in order (tools/arm_matrix.py's layered installs)
    venv: Path | None = None  # the guide's venv (install_as_guided): its python, no PYTHONPATH

    @property
    def name(self) -> str:
        return f"{CPUS[self.cpu]} ({self.cpu}), {self.suite} Python {SUITES[self.suite][0]}"

    def python(self, args: list[str], *, timeout: float = 900) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            # Bytecode is written (no PYTHONDONTWRITEBYTECODE): the unpacked userland has no
            # .pyc files, and compiling the stdlib under emulation on every start costs seconds.
            "PYTHONPATH": os.pathsep.join(map(str, self.site)), "LANG": "C.UTF-8",
        }
        python = self.root / "usr" / "bin" / "python3"
        if self.venv is not None:
            del env["PYTHONPATH"]
            python = self.venv / "bin" / "python3"  # a link to the root's python3: it finds pyvenv.cfg beside it
        cmd = [str(self.qemu), "-cpu", self.cpu, "-L", str(self.root), str(python), *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


# --- the base install, as pip installs it on a Pi --------------------------------------------


def project_dependencies() -> list[str]:
    """The base install's requirements, read from pyproject.toml (never a list kept here)."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip vendors a TOML reader
        from pip._vendor import tomli as tomllib  # type: ignore[no-redef]
    return list(tomllib.loads(text)["project"]["dependencies"])


def pip_target_args(suite: str) -> list[str]:
    """pip options that resolve for a 64-bit Pi running `suite`: aarch64 manylinux wheels up to
    its glibc, its CPython version, binary wheels only (a Pi user gets no compiler run either)."""
    python, glibc_minor = SUITES[suite]
    tags = [f"manylinux_2_{minor}_aarch64" for minor in range(17, glibc_minor + 1)] + ["manylinux2014_aarch64"]
    return ["--only-binary=:all:", *(f"--platform={t}" for t in tags), f"--python-version={python}", "--implementation=cp"]


def _pip(args: list[str], *, what: str) -> str:
    return _run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], what=what, timeout=1200)


def ensure_deps_site(cache: Path, suite: str, requirements: list[str]) -> Path:
    """The project's dependencies as aarch64 wheels for `suite`, installed into a folder of
    their own; cached by the requirement list (a new list, a new folder)."""
    key = hashlib.sha256(json.dumps([suite, requirements, pip_target_args(suite)]).encode()).hexdigest()[:16]
    site = cache / f"site-{suite}-{key}"
    if (site / ".complete").is_file():
        return site
    log(f"installing {', '.join(requirements)} for aarch64 Python {SUITES[suite][0]} ({suite})")
    tmp = Path(tempfile.mkdtemp(prefix=f"site-{suite}-", dir=cache))
    try:
        _pip(["install", "-q", "--target", str(tmp), *pip_target_args(suite), *requirements],
             what=f"pip install of the aarch64 wheels for {suite}")
        (tmp / ".complete").write_text(json.dumps(requirements) + "\n")
        _publish(tmp, site)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return site


def installed_versions(site: Path) -> dict[str, str]:
    out = {}
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        out[name.lower().replace("_", "-")] = version
    return out


def build_project_site(work: Path, suite: str) -> Path:
    """gclf itself, built from this checkout into a wheel and installed as pip does on a Pi
    (with its gclf-infer entry-point script), beside the cached dependencies."""
    wheels = work / "wheel"
    if not any(wheels.glob("gclf-*.whl")):
        _pip(["wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)], what="building gclf's wheel")
    site = work / f"gclf-{suite}"
    wheel = next(wheels.glob("gclf-*.whl"))
    _pip(["install", "-q", "--no-deps", "--target", str(site), *pip_target_args(suite), str(wheel)],
         what=f"installing gclf's wheel for {suite}")
    return site


# --- the install guide's commands, as a Pi owner runs them ------------------------------------

GUIDE = REPO / "docs" / "raspberry-pi.md"
GUIDE_MARKER = "<!-- ci:pi-install -->"
PI_HOME = "/opt/gclf"  # where the guide installs; under the check, a folder in the cache
# Packages of the guide's `apt install` line that are not Debian's: picamera2 comes from the
# Raspberry Pi archive (archive.raspberrypi.com), which cannot be reached from CI; nothing the
# check runs imports it.
NOT_IN_DEBIAN = ("python3-picamera2",)


def guide_commands(guide: Path = GUIDE) -> list[str]:
    """The lines of the code block that follows GUIDE_MARKER in the guide (never a copy kept here)."""
    lines = guide.read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == GUIDE_MARKER)
    except StopIteration:
        raise SetupError(f"{guide} has no {GUIDE_MARKER} block: the ARM check runs the install commands it prints") from None
    fences = [i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("```")][:2]
    block = [line.strip() for line in lines[fences[0] + 1 : fences[1]]] if len(fences) == 2 else []
    commands = [c for c in block if c and not c.startswith("#")]
    if not commands:
        raise SetupError(f"{guide}: the block after {GUIDE_MARKER} holds no commands")
    return commands


@dataclass(frozen=True)
class GuideSteps:
    apt_packages: tuple[str, ...]  # the `sudo apt install` line's, built into the emulated root
    run: tuple[str, ...]  # shell lines, run as printed (paths under PI_HOME moved into the cache)
    skipped: tuple[str, ...]  # `useradd`: the emulation has no users; the check runs as itself


def guide_steps(commands: list[str]) -> GuideSteps:
    apt, run, skipped = None, [], []
    for command in commands:
        words = command.split()
        if words[:3] == ["sudo", "apt", "install"] or words[:3] == ["sudo", "apt-get", "install"]:
            apt = tuple(w for w in words[3:] if not w.startswith("-"))
        elif words[:2] == ["sudo", "useradd"]:
            skipped.append(command)
        else:
            run.append(command)
    if apt is None:
        raise SetupError(f"{GUIDE}: the install block has no `sudo apt install` line")
    return GuideSteps(apt, tuple(run), tuple(skipped))


def debian_packages(steps: GuideSteps) -> tuple[str, ...]:
    return tuple(p for p in steps.apt_packages if p not in NOT_IN_DEBIAN)


def _as_run_here(command: str, home: Path, qemu: Path) -> str:
    """`command` as the check runs it: `sudo` is a no-op (the shims), PI_HOME is `home`, and a
    program of the venv is started with the venv's python through qemu (no binfmt_misc)."""
    command = command.replace(PI_HOME, str(home))
    venv_bin = re.escape(f"{home}/venv/bin/")
    return re.sub(rf"(^|sudo |\| )({venv_bin}[\w.-]+)", lambda m: f"{m.group(1)}{qemu} {home}/venv/bin/python3 {m.group(2)}", command)


def install_as_guided(cache: Path, qemu: Path, root: Path, suite: str, steps: GuideSteps, wheel: Path) -> Path:
    """Run the guide's install commands for the emulated `root`; returns the venv.

    The commands run in bash on this machine, in the wheel's folder, with `sudo` and
    `python3` as shims (`python3` is the root's, under qemu). Cached: the first run makes the
    venv and installs everything; a later run (same commands, same root, same dependencies)
    takes that venv, removes gclf from it and runs again every command that names gclf's
    wheel, exactly as printed, so the wheel install is checked on every run.
    """
    key = hashlib.sha256(json.dumps([suite, str(root), steps.run, project_dependencies()]).encode()).hexdigest()[:16]
    place = cache / f"guide-{suite}-{key}"
    home = place / PI_HOME.lstrip("/")
    shims = place / "shims"
    warm = (place / ".complete").is_file()
    if not warm:
        shutil.rmtree(place, ignore_errors=True)
        shims.mkdir(parents=True)
        (shims / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
        (shims / "python3").write_text(f'#!/bin/sh\nexec "{qemu}" "{root}/usr/bin/python3" "$@"\n')
        for shim in shims.iterdir():
            shim.chmod(0o755)
        commands = steps.run
        log(f"{suite}: running the guide's install commands (first run: the venv and every dependency)")
    else:
        _uninstall_gclf(home / "venv")
        commands = tuple(c for c in steps.run if "gclf-" in c and ".whl" in c)
        log(f"{suite}: running the guide's gclf install again in the cached venv")
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
           "QEMU_LD_PREFIX": str(root), "QEMU_CPU": "cortex-a72", "GCLF_ARM_QEMU": str(qemu),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    for command in commands:
        started = time.monotonic()
        _run(["bash", "-euo", "pipefail", "-c", _as_run_here(command, home, qemu)], what=f"{suite}: the guide's `{command}`", cwd=wheel.parent, env=env, timeout=1800)
        log(f"{suite}: ran `{command}` ({time.monotonic() - started:.0f} s)")
    if not warm:
        (place / ".complete").write_text("\n".join(steps.run) + "\n")
    return home / "venv"


def _uninstall_gclf(venv: Path) -> None:
    """Remove gclf from the venv as `pip uninstall` would (its RECORD lists its files), without
    starting pip under emulation for it."""
    for record in venv.glob("lib/python3*/site-packages/gclf-*.dist-info/RECORD"):
        site = record.parent.parent
        for line in record.read_text().splitlines():
            path = (site / line.split(",")[0]).resolve()
            if path.is_file():
                path.unlink()
        shutil.rmtree(record.parent, ignore_errors=True)
        shutil.rmtree(site / "gclf", ignore_errors=True)


# --- the checks -------------------------------------------------------------------------------


def default_photos(root: Path, per_class: int = 1) -> list[Path]:
    """A few real photos from each class of each data set under `root` (sorted, so fixed)."""
    photos = []
    for dataset in ("gender-faces", "utkface-dev"):
        for cls in ("man", "woman"):
            folder = root / dataset / cls
            if folder.is_dir():
                photos += sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:per_class]
    return photos


def make_clip(photos: list[Path], path: Path, *, size: tuple[int, int] = (320, 240)) -> int:
    """A short MJPG clip, one frame per photo (squashed to `size`); returns the frame count."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    if not writer.isOpened():
        raise CheckFailed(f"OpenCV cannot write an MJPG clip to {path}")
    for photo in photos:
        writer.write(cv2.resize(cv2.imread(str(photo)), size))
    writer.release()
    return len(photos)


def infer_args(entry: list[str], model: Path, rest: list[str]) -> list[str]:
    return [*entry, str(model), *rest]


def parse_json_lines(stdout: str, what: str) -> list[dict]:
    try:
        return [json.loads(line) for line in stdout.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise CheckFailed(f"{what}: output is not JSON lines ({exc})") from None


@dataclass
class Comparison:
    what: str
    max_diff: float = 0.0
    near_ties: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def compare_photos(what: str, x86: list[dict], arm: list[dict], tol: float) -> Comparison:
    """Same images, same labels, probabilities within `tol`. A photo whose two best x86
    probabilities lie within `tol` of each other is a near tie: its label may flip within the
    tolerance, so only its probabilities are compared (and it is reported)."""
    c = Comparison(what)
    by_path = {r["path"]: r for r in arm}
    if sorted(by_path) != sorted(r["path"] for r in x86):
        c.problems.append(f"classified other images than x86 ({len(arm)} vs {len(x86)})")
        return c
    for ref in x86:
        got = by_path[ref["path"]]
        diff = max(abs(got["probabilities"][k] - p) for k, p in ref["probabilities"].items())
        c.max_diff = max(c.max_diff, diff)
        top = sorted(ref["probabilities"].values(), reverse=True)
        tie = len(top) > 1 and top[0] - top[1] <= 2 * tol
        if tie:
            c.near_ties.append(Path(ref["path"]).name)
        if got["label"] != ref["label"] and not tie:
            c.problems.append(f"{Path(ref['path']).name}: {got['label']} on ARM, {ref['label']} on x86")
        if diff > tol:
            c.problems.append(f"{Path(ref['path']).name}: probabilities differ by {diff:.2g} (> {tol:g})")
    return c


BOX_TOLERANCE_PX = 2  # the detector's float arithmetic differs between the CPUs too


def compare_faces(what: str, x86: list[dict], arm: list[dict], tol: float) -> Comparison:
    """Per photo the same number of faces, boxes within BOX_TOLERANCE_PX, and each face (and
    a photo's whole-image fallback) compared as compare_photos compares photos."""
    def flat(records: list[dict]) -> list[dict]:
        out = []
        for r in records:
            out += [{**f, "path": f"{r['path']}#face{i}"} for i, f in enumerate(r.get("faces", []))]
            if "probabilities" in r:
                out.append({**r, "path": f"{r['path']}#whole"})
        return out

    c = compare_photos(what, flat(x86), flat(arm), tol)
    by_path = {r["path"]: r for r in flat(arm)}
    for ref in flat(x86):
        got = by_path.get(ref["path"])
        if got is not None and "box" in ref and max(abs(a - b) for a, b in zip(ref["box"], got["box"])) > BOX_TOLERANCE_PX:
            c.problems.append(f"{Path(ref['path']).name}: box {got['box']} on ARM, {ref['box']} on x86")
    return c


LIVE_FIELDS = {"timestamp", "frame", "faces", "fps"}


def compare_video(what: str, x86: list[dict], arm: list[dict], frames: int, tol: float) -> Comparison:
    c = Comparison(what)
    for name, lines in (("x86", x86), ("ARM", arm)):
        if len(lines) != frames:
            c.problems.append(f"{name}: {len(lines)} JSON lines for a {frames}-frame clip")
    for ref, got in zip(x86, arm):
        if set(got) != LIVE_FIELDS:
            c.problems.append(f"frame line has fields {sorted(got)}, expected {sorted(LIVE_FIELDS)}")
            continue
        if got["frame"] != ref["frame"] or len(got["faces"]) != len(ref["faces"]):
            c.problems.append(f"frame {ref['frame']}: ARM reported frame {got['frame']} with {len(got['faces'])} results, x86 {len(ref['faces'])}")
            continue
        for a, b in zip(ref["faces"], got["faces"]):
            diff = abs(a["confidence"] - b["confidence"])
            c.max_diff = max(c.max_diff, diff)
            if a["box"] != b["box"]:
                c.problems.append(f"frame {ref['frame']}: box {b['box']} on ARM, {a['box']} on x86")
            if a["label"] != b["label"] and abs(a["confidence"] - 0.5) > tol:
                c.problems.append(f"frame {ref['frame']}: {b['label']} on ARM, {a['label']} on x86")
            if diff > tol:
                c.problems.append(f"frame {ref['frame']}: confidence differs by {diff:.2g} (> {tol:g})")
    return c


@dataclass(frozen=True)
class Job:
    what: str
    args: list[str]


def run_x86(entry: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gclf.runtime.cli", *entry], capture_output=True, text=True, timeout=900)


def check_pi(pi: Pi, entry_script: Path, jobs: list[Job], x86: dict[str, list[dict]], meta: dict) -> list[Comparison]:
    """Run every job on `pi` and compare with x86."""
    results = []
    for job in jobs:
        started = time.monotonic()
        done = pi.python([str(entry_script), *job.args])
        seconds = time.monotonic() - started
        c = Comparison(f"{pi.name}: {job.what}")
        if done.returncode != 0:
            tail = " | ".join((done.stderr.strip() or done.stdout.strip()).splitlines()[-3:])
            c.problems.append(f"exit code {done.returncode}: {tail}" + (" (illegal instruction: this wheel does not run on this CPU)" if done.returncode == -4 else ""))
        elif job.what == "--help":
            if "Usage:" not in done.stdout or "--camera" not in done.stdout:
                c.problems.append("--help printed no usage")
        elif job.what.startswith("photos faces"):
            c = compare_faces(c.what, x86[job.what], parse_json_lines(done.stdout, c.what), TOL_INT8 if "int8" in job.what else TOL_FP32)
        elif job.what.startswith("video"):
            c = compare_video(c.what, x86[job.what], parse_json_lines(done.stdout, c.what), meta["frames"], TOL_INT8 if "int8" in job.what else TOL_FP32)
        else:
            c = compare_photos(c.what, x86[job.what], parse_json_lines(done.stdout, c.what), TOL_INT8 if "int8" in job.what else TOL_FP32)
        log(f"{'ok  ' if not c.problems else 'FAIL'} {c.what} ({seconds:.0f} s" + (f", max |p diff| {c.max_diff:.2g}" if c.max_diff else "") + (f", near ties {c.near_ties}" if c.near_ties else "") + ")")
        for problem in c.problems:
            log(f"     {problem}")
        results.append(c)
    return results


def setup_pis(cache: Path, suites: list[str], cpus: list[str], work: Path) -> list[Pi]:
    """Per suite: the emulated root with the guide's apt packages, and the guide's install
    commands run for it (install_as_guided); one Pi per CPU on that install."""
    qemu, debootstrap = ensure_tools(cache)
    steps = guide_steps(guide_commands())
    for command in steps.skipped:
        log(f"not run (the emulation has no user accounts): `{command}`")
    wheels = work / "wheel"
    _pip(["wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)], what="building gclf's wheel")
    wheel = next(wheels.glob("gclf-*.whl"))
    pis = []
    for suite in suites:
        root = ensure_root(cache, suite, debootstrap, ("python3", *debian_packages(steps)))
        venv = install_as_guided(cache, qemu, root, suite, steps, wheel)
        suite_pis = [Pi(qemu, root, suite, cpu, (), venv) for cpu in cpus]
        done = suite_pis[0].python(["-c", VERSIONS])
        if done.returncode != 0:
            raise SetupError(f"{suite}: the guide's venv cannot import what gclf needs: {done.stderr.strip()[-300:]}")
        log(f"{suite}: {done.stdout.strip()}")
        pis += suite_pis
    return pis


VERSIONS = "import numpy, cv2, onnxruntime, click; print(f'numpy {numpy.__version__} ({numpy.__file__}), opencv {cv2.__version__}, onnxruntime {onnxruntime.__version__}, click {click.__version__}')"
# Is the numpy the venv imports still Debian's (python3-numpy, what picamera2 is built against)?
APT_NUMPY = "import numpy; print(numpy.__version__); print(numpy.__file__)"


def check_apt_numpy(pi: Pi) -> Comparison:
    c = Comparison(f"{pi.name}: numpy is apt's")
    done = pi.python(["-c", APT_NUMPY])
    pinned = (pi.venv.parent / "constraints.txt").read_text().strip() if pi.venv is not None else ""
    if done.returncode != 0:
        c.problems.append(f"import numpy failed: {done.stderr.strip()[-200:]}")
        return c
    version, where = done.stdout.split()[:2]
    if not where.startswith(str(pi.root / "usr" / "lib" / "python3" / "dist-packages")):
        c.problems.append(f"the venv imports numpy {version} from {where}, not Debian's python3-numpy (pip put another numpy in front of it)")
    if pinned != f"numpy=={version}":
        c.problems.append(f"the guide's constraints file says {pinned!r}, the venv has numpy {version}")
    log(f"{'ok  ' if not c.problems else 'FAIL'} {c.what} (numpy {version})")
    for problem in c.problems:
        log(f"     {problem}")
    return c


def model_variant(model: Path) -> str:
    """"int8" or "fp32", as the model's gclf metadata says."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.get_modelmeta().custom_metadata_map.get("gclf.variant", "fp32")


def make_faces_variant(src: Path, detector: Path, dest: Path) -> None:
    """`src` relabelled as a faces model trained on crops by YuNet file `detector` (its
    sha256 recorded, as gclf-train --face-crop PATH records it): the graph is the same, so
    on ARM and x86 it must classify the same crops the same way. Needs the `train` extra (onnx)."""
    from dataclasses import replace

    import onnx

    from gclf.export.onnx_export import read_metadata, set_metadata
    from gclf.runtime.faces.crops import face_crop_spec

    model = onnx.load(str(src))
    meta = read_metadata(model, str(src))
    spec, _ = face_crop_spec(detector, 0.0)
    set_metadata(model, replace(meta, training={**meta.training, "input_kind": "faces", "face_crop": spec.to_dict()}))
    onnx.save(model, str(dest))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", type=Path, default=REPO / "gclf-quickstart" / "run" / "model.onnx", help="fp32 model exported on x86 (default: gclf-quickstart's)")
    parser.add_argument("--int8", type=Path, default=REPO / "gclf-quickstart" / "run" / "model.int8.onnx", help="int8 model exported on x86 (default: gclf-quickstart's)")
    parser.add_argument("--also-int8", type=Path, action="append", default=[], help="another int8 model to compare on the photos, as whole images (e.g. a faces model); repeatable")
    parser.add_argument("--faces", type=Path, default=None, help="a faces model (input_kind faces) to run with its detector, as the unit runs it (docs/raspberry-pi.md)")
    parser.add_argument("--face-model", type=Path, default=DEFAULT_DETECTOR, help="the --faces model's detector (YuNet ONNX), installed as the guide installs it")
    parser.add_argument("--make-faces-variant", nargs=2, type=Path, metavar=("MODEL", "DEST"), default=None, help="write MODEL relabelled as a faces model cropped by --face-model to DEST, and exit (needs onnx)")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder with gender-faces/ and utkface-dev/ (the first photo of each class of each is used: 4)")
    parser.add_argument("--suites", default=",".join(SUITES), help="Debian suites (Raspberry Pi OS generations) to check")
    parser.add_argument("--cpus", default=",".join(CPUS), help="qemu CPU models to check")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="downloads and built userlands ($GCLF_ARM_CACHE)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="emulated Pis run side by side")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.make_faces_variant is not None:
        if not args.face_model.is_file() or not args.make_faces_variant[0].is_file():
            log(f"error: {args.make_faces_variant[0] if args.face_model.is_file() else args.face_model} not found (pass --face-model YUNET.onnx)")
            return EXIT_USAGE
        make_faces_variant(args.make_faces_variant[0], args.face_model, args.make_faces_variant[1])
        return 0

    suites, cpus = args.suites.split(","), args.cpus.split(",")
    unknown = [s for s in suites if s not in SUITES] + [c for c in cpus if c not in CPUS]
    for model in (args.fp32, args.int8, *args.also_int8, *([args.faces, args.face_model] if args.faces else [])):
        if not model.is_file():
            log(f"error: model {model} not found (run gclf-quickstart first, or pass --fp32/--int8)")
            return EXIT_USAGE
    photos = default_photos(args.photos)
    if unknown or len(photos) < 2:
        log(f"error: unknown suite/CPU {unknown}" if unknown else f"error: no photos under {args.photos} (expected gender-faces/ and utkface-dev/ class folders; pass --photos)")
        return EXIT_USAGE

    args.cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=args.cache))
    try:
        try:
            pis = setup_pis(args.cache, suites, cpus, work)
        except SetupError as exc:
            log(f"error: the emulated Raspberry Pi could not be set up: {exc}")
            return EXIT_SETUP
        log(f"set up in {time.monotonic() - started:.0f} s")

        clip = work / "clip.avi"
        frames = make_clip(photos, clip)
        photo_args = [str(p) for p in photos]
        # fp32 on two of the photos only: emulated fp32 GoogLeNet costs about 7x int8's CPU time.
        fp32_args = [str(p) for p in (photos[0], photos[-1])]
        jobs = [
            Job("--help", ["--help"]),
            Job("photos fp32", [str(args.fp32), *fp32_args, "--json", "--threads", "1"]),
            Job("photos int8", [str(args.int8), *photo_args, "--json", "--threads", "1"]),
            Job("video int8", [str(args.int8), "--video", str(clip), "--headless", "--threads", "1"]),
            *(Job(f"photos int8 {m.name}", [str(m), *photo_args, "--json", "--threads", "1", "--no-faces"]) for m in args.also_int8),
            # onnxruntime's own thread count (one per core), as a Pi runs it without --threads.
            Job("photos int8, default threads", [str(args.int8), *photo_args, "--json"]),
        ]
        if args.faces is not None:
            # The detector installed as the guide installs it and named as the unit names it.
            detector = pis[0].venv.parent / "face-model.onnx"
            shutil.copy(args.face_model, detector)
            faces = [str(args.faces), *photo_args, "--json", "--face-model", str(detector)]
            kind = model_variant(args.faces)  # the tolerance follows the model's own variant
            jobs += [Job(f"photos faces {kind}", [*faces, "--threads", "1"]), Job(f"photos faces {kind}, default threads", faces)]
        x86 = {}
        for job in jobs[1:]:
            done = run_x86(job.args)
            if done.returncode != 0:
                log(f"error: the x86 reference run failed ({job.what}): {done.stderr.strip()[-300:]}")
                return EXIT_FAILED
            x86[job.what] = parse_json_lines(done.stdout, f"x86 {job.what}")

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(check_pi, pi, pi.venv / "bin" / "gclf-infer", jobs, x86, {"frames": frames}) for pi in pis]
            results = [c for f in futures for c in f.result()]
        results += [check_apt_numpy(pi) for pi in pis[:: max(1, len(cpus))]]  # once per suite: the install does not depend on the CPU
    finally:
        shutil.rmtree(work, ignore_errors=True)

    failed = [c for c in results if c.problems]
    for kind, tol in (("fp32", TOL_FP32), ("int8", TOL_INT8)):
        diffs = [c.max_diff for c in results if kind in c.what]
        if diffs:
            log(f"{kind}: largest probability difference ARM vs x86 {max(diffs):.2g} (tolerance {tol:g})")
    log(f"{len(results) - len(failed)}/{len(results)} checks passed on {len(pis)} emulated Pis in {time.monotonic() - started:.0f} s")
    return EXIT_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
