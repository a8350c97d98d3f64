"""`gclf-infer --check [MODEL]`: what a Raspberry Pi owner needs to know, checked in one go.

Each check is a small function that takes the `PreflightContext` and returns its findings
(usually one): ok, a PROBLEM with one sentence that says what to do, or info. `CHECKS` lists
them in the order their problems are best fixed in (a 32-bit userland first, power last), so
adding a check is one function and one entry there. A check never raises for what it finds,
and nothing here downloads or writes anything.

The context carries the run's own options (`options`: gclf-infer's parameters by name, from
the command line and --config, as the run would get them), so a check looks at what the run
will use: the camera it names (and no camera when it names none), the broker it reports to
(--mqtt). A new check of an option is one function that reads `ctx.options`. Heavy modules
(numpy, OpenCV, onnxruntime, picamera2) are imported inside the checks: a broken one is a
finding, not a crash.
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import click

from gclf.runtime import faces
from gclf.runtime.cpu_class import detect_cpu_class, int8_cpu_note
from gclf.runtime.errors import EXIT_CHECK_FAILED, EXIT_OK, GclfError, MissingDependencyError
from gclf.runtime.faces.choice import find_recorded_face_model
from gclf.runtime.faces.models import cache_dir, pinned_detector_file
from gclf.runtime.redact import redact

if TYPE_CHECKING:
    from gclf.runtime.classifier import Classifier

OK, PROBLEM, INFO = "ok", "PROBLEM", "info"


@dataclass(frozen=True)
class Finding:
    check: str  # what was checked, short: "userland", "numpy", "cameras"
    status: str  # OK, PROBLEM or INFO
    text: str  # one sentence; for a problem, what to do about it

    @property
    def is_problem(self) -> bool:
        return self.status == PROBLEM

    def line(self) -> str:
        return f"{self.status:<8} {self.check}: {self.text}"


@dataclass
class PreflightContext:
    """What the checks look at; the paths are parameters so that tests can stage a machine."""

    model: Path | None = None
    threads: int | None = None  # onnxruntime intra-op threads; None: one per core
    # The run's options: gclf-infer's parameters by name, as the run gets them (command line,
    # then --config); "camera" is the camera the run reads (a URL resolved), or None.
    options: Mapping[str, Any] = field(default_factory=dict)
    dev: Path = Path("/dev")
    sys_video4linux: Path = Path("/sys/class/video4linux")
    device_tree_model: Path = Path("/proc/device-tree/model")
    _classifier: Classifier | None = field(default=None, repr=False)
    _model_error: str | None = field(default=None, repr=False)

    def classifier(self) -> Classifier | None:
        """The MODEL loaded once for every check that needs it; None if there is none or it
        failed to load (`model_error` says why)."""
        if self.model is None or self._model_error is not None:
            return None
        if self._classifier is None:
            try:
                from gclf.runtime.classifier import Classifier  # here: a broken numpy or onnxruntime is a finding, not a crash

                self._classifier = Classifier(self.model, threads=self.threads, spin=False, min_confidence=self.options.get("min_confidence"))
            except GclfError as exc:
                self._model_error = str(exc)
            except Exception as exc:  # an import that fails underneath (onnxruntime, numpy)
                self._model_error = f"{self.model}: cannot be loaded ({type(exc).__name__}: {exc})"
        return self._classifier

    @property
    def model_error(self) -> str | None:
        return self._model_error


# --- the checks ------------------------------------------------------------------------------


def check_userland(ctx: PreflightContext) -> list[Finding]:
    """64-bit Python: onnxruntime publishes no wheels for 32-bit ARM (armv7l)."""
    bits = struct.calcsize("P") * 8
    machine = platform.machine()
    board = _read_text(ctx.device_tree_model)
    where = ", ".join(x for x in (f"Python {platform.python_version()}", _os_name(), board) if x)
    if bits != 64:
        return [Finding("userland", PROBLEM, f"this Python is {bits}-bit ({machine}; {where}): onnxruntime has no 32-bit wheels, so flash Raspberry Pi OS (64-bit)")]
    return [Finding("userland", OK, f"64-bit ({machine}), {where}")]


def _import_check(name: str, module: str, fix: str) -> list[Finding]:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a binary built against another numpy
        return [Finding(name, PROBLEM, f"cannot be imported ({type(exc).__name__}: {_first_line(exc)}); {fix}")]
    version = getattr(mod, "__version__", "?")
    return [Finding(name, OK, f"{version} ({Path(mod.__file__).parent.parent})")]


REINSTALL = "reinstall gclf in its venv as the Raspberry Pi guide says (docs/raspberry-pi.md)"


def check_numpy(ctx: PreflightContext) -> list[Finding]:
    return _import_check("numpy", "numpy", REINSTALL)


def check_opencv(ctx: PreflightContext) -> list[Finding]:
    return _import_check("opencv", "cv2", REINSTALL)


def check_onnxruntime(ctx: PreflightContext) -> list[Finding]:
    return _import_check("onnxruntime", "onnxruntime", REINSTALL)


def check_picamera2(ctx: PreflightContext) -> list[Finding]:
    """Importable, not installed (fine without a Pi camera), or broken by the numpy in front of it."""
    try:
        from gclf.runtime.live.picamera import NumpyMismatchError, import_picamera2  # here: numpy itself may be broken
    except Exception as exc:  # numpy itself missing: reported by check_numpy
        return [Finding("picamera2", INFO, f"not checked: {_first_line(exc)}")]
    try:
        import_picamera2()
    except NumpyMismatchError as exc:
        return [Finding("picamera2", PROBLEM, str(exc))]
    except MissingDependencyError:
        return [Finding("picamera2", INFO, "not installed (only --camera picam needs it: on Raspberry Pi OS `sudo apt install python3-picamera2`, and a venv made with --system-site-packages)")]
    except Exception as exc:  # libcamera's bindings failing underneath
        return [Finding("picamera2", PROBLEM, f"installed but cannot be imported ({type(exc).__name__}: {_first_line(exc)}): `sudo apt install --reinstall python3-picamera2 python3-libcamera`")]
    return [Finding("picamera2", OK, f"{_dist_version('picamera2')} ({Path(sys.modules['picamera2'].__file__).parent.parent})")]


# --check's own bounds for a network camera: one open and one frame, never a reconnection.
CHECK_OPEN_TIMEOUT_S = 8.0
CHECK_FRAME_TIMEOUT_S = 5.0
CHECK_PROBE_TIMEOUT_S = 3.0


def check_camera(ctx: PreflightContext) -> list[Finding]:
    """The camera the run's options name: a network camera is opened and one frame read, each
    within a bounded time; a local one is looked for where the run will open it, with this
    user's right to. With no camera named (a video file, image files, or no options yet), no
    camera is checked: the cameras found here are listed, for choosing one."""
    camera = ctx.options.get("camera")
    if camera is None:
        parts, note = _found_cameras(ctx)
        where = "the run reads --video" if ctx.options.get("video") is not None else "no --camera (or --config) given"
        found = "; ".join(parts) if parts else f"none found ({note})"
        return [Finding("camera", INFO, f"not checked: {where}; cameras here: {found}")]
    if camera.kind == "network":
        return _check_network_camera(str(camera.device), ctx.options.get("rtsp_transport") or "tcp")
    if camera.kind == "picam":
        return _check_pi_camera(ctx, int(camera.device))
    return _check_usb_camera(ctx, camera.device)


def _check_network_camera(url: str, transport: str) -> list[Finding]:
    from gclf.runtime.live.network import CameraAuthError, StreamOptions, check_stream  # here: OpenCV loads only for this check

    options = StreamOptions(transport=transport, open_timeout_s=CHECK_OPEN_TIMEOUT_S, frame_timeout_s=CHECK_FRAME_TIMEOUT_S,
                            probe_timeout_s=CHECK_PROBE_TIMEOUT_S)  # fmt: skip
    shown = redact(url)
    try:
        checked = check_stream(url, options)
    except CameraAuthError as exc:
        return [Finding("camera", PROBLEM, f"{exc}: correct the user name, password or token in the camera's URL (the run would exit 2)")]
    except GclfError as exc:
        return [Finding("camera", PROBLEM, f"{exc}; the run would wait for it and retry: check that the camera is on and the URL is right")]
    return [Finding("camera", OK, checked.line(f"network camera {shown}") + " (one frame read)")]


def _check_usb_camera(ctx: PreflightContext, device: int | str) -> list[Finding]:
    node = ctx.dev / f"video{device}" if isinstance(device, int) else Path(device)
    shown = f"camera {device}" + (f" ({node})" if isinstance(device, int) else "")
    if not node.exists():
        parts, note = _found_cameras(ctx)
        found = "; ".join(parts) if parts else f"none ({note})"
        return [Finding("camera", PROBLEM, f"{shown}: no such device (cameras here: {found}): check the cable, or name another with --camera")]
    real = Path(os.path.realpath(node))
    if not re.fullmatch(r"video\d+", real.name):
        return [Finding("camera", PROBLEM, f"{shown} is not a camera ({node} is {real}): give a /dev/video* device or a link to one")]
    if not os.access(real, os.R_OK | os.W_OK):
        return [Finding("camera", PROBLEM, f"this user may not open {real} ({shown}): add it to the video group (`sudo usermod -aG video $USER`, then log in again)")]
    return [Finding("camera", OK, f"{shown}: {real}{_v4l_name(ctx, real)}")]


def _check_pi_camera(ctx: PreflightContext, number: int) -> list[Finding]:
    pi, note = _pi_cameras()
    if number >= len(pi):
        return [Finding("camera", PROBLEM, f"no Pi camera picam:{number} ({note or f'picamera2 lists {len(pi)}'}): check the ribbon cable, and that `rpicam-hello --list-cameras` lists it")]
    return [Finding("camera", OK, f"Pi camera picam:{number} ({pi[number].get('Model', '?')})")]


def _found_cameras(ctx: PreflightContext) -> tuple[list[str], str]:
    """The cameras on this machine, one phrase each (USB cameras by their /dev/v4l/by-id name,
    Pi cameras from picamera2, other video devices apart), and a note on what was not found."""
    usb = usb_cameras(ctx.dev)
    pi, pi_note = _pi_cameras()
    by_id = ctx.dev / "v4l" / "by-id"
    usb_nodes = {Path(os.path.realpath(link)) for link in by_id.glob("*")} if by_id.is_dir() else set()  # index1: metadata
    others = [n for n in video_devices(ctx.dev) if n not in usb_nodes]
    parts = [f"USB {link} -> {node}{_v4l_name(ctx, node)}" for link, node in usb]
    parts += [f"Pi camera picam:{i} ({info.get('Model', '?')})" for i, info in enumerate(pi)]
    if others:
        named = ", ".join(f"{n.name}{_v4l_name(ctx, n)}" for n in others[:6]) + (", ..." if len(others) > 6 else "")
        parts.append(f"other video devices (not USB cameras; on a Pi, its codecs and ISP): {named}")
    return parts, f"no USB camera in {by_id}, {pi_note}" if not usb else pi_note


def check_model(ctx: PreflightContext) -> list[Finding]:
    """MODEL loads, its metadata reads, and one inference runs."""
    if ctx.model is None:
        return [Finding("model", INFO, "none given: `gclf-infer --check MODEL` also loads it and runs one inference")]
    clf = ctx.classifier()
    if clf is None:
        return [Finding("model", PROBLEM, f"{ctx.model_error}; copy the model again (gclf-export writes it)")]
    import numpy as np

    spec = clf.spec
    batch = np.zeros((1, 3, spec.input_height, spec.input_width), dtype=np.float32)
    try:
        clf.predict_input(batch)  # the first run initialises; the second is what a frame costs
        start = time.perf_counter()
        clf.predict_input(batch)
        ms = (time.perf_counter() - start) * 1000
    except Exception as exc:
        return [Finding("model", PROBLEM, f"{ctx.model} loads but does not run here ({type(exc).__name__}: {_first_line(exc)})")]
    meta = clf.metadata
    classes = ", ".join(clf.class_names[:4]) + (", ..." if len(clf.class_names) > 4 else "")
    kind = meta.input_kind or "whole_image (not recorded)"
    calibration = f"calibrated ({meta.calibration.describe()})" if meta.calibration is not None else "uncalibrated (raw softmax)"
    return [Finding("model", OK, f"{ctx.model.name}: {meta.variant}, {len(clf.class_names)} classes ({classes}), {spec.input_width}x{spec.input_height} px, {kind}, {calibration}; one inference {ms:.1f} ms")]


def check_threshold(ctx: PreflightContext) -> list[Finding]:
    """Which confidence threshold the run answers `unsure` below, and where it comes from
    (--min-confidence, else the model's recorded decision, else none)."""
    clf = ctx.classifier()
    if clf is None:
        return []  # no model, or check_model said why it does not load
    return [Finding("threshold", INFO, clf.threshold.describe("--min-confidence"))]


def check_int8_cpu(ctx: PreflightContext) -> list[Finding]:
    """An int8 MODEL: was its parity gate measured on this CPU class, and does it matter?"""
    clf = ctx.classifier()
    if clf is None or not clf.metadata.quantization:
        return []
    note = int8_cpu_note(clf.metadata)
    if note is None:
        return [Finding("int8", OK, f"its parity gate ran on this CPU class ({detect_cpu_class()})")]
    # Information, not a problem: the file runs, and the note says whether its answers may differ.
    return [Finding("int8", INFO, note)]


def check_engines(ctx: PreflightContext) -> list[Finding]:
    """Each installed engine on MODEL: its parity with the model's reference outputs here, and
    its batch-1 time; the fastest that passed is named (what to pass as --engine)."""
    if ctx.model is None:
        return []
    from gclf.runtime.bench import engine_choices, time_engine_choices  # here: loads every engine
    from gclf.runtime.metadata import KEY_VARIANT
    from gclf.runtime.onnx_metadata import read_metadata

    try:  # the default engine may be the one refused, so the file's own record says which it is
        variant = read_metadata(ctx.model).get(KEY_VARIANT, "fp32")
    except GclfError:
        return []  # not a model: the model check says so
    findings, passed = [], []
    for choice in time_engine_choices(ctx.model, engine_choices(variant), threads=ctx.threads):
        if choice.ms is None:
            findings.append(Finding("engine", INFO, f"{choice.label}: {choice.problem}"))
        else:
            passed.append(choice)
    if passed:
        best = min(passed, key=lambda c: c.ms)
        others = "; ".join(f"{c.label} {c.ms:.1f} ms" for c in passed if c is not best)
        findings.insert(0, Finding("engine", OK, f"fastest that passed parity on this machine: {best.label}, {best.ms:.1f} ms per image at batch 1"
                                   + (f" (also passed: {others})" if others else "") + f"; run with {best.flags}"))
    return findings


def check_face_detector(ctx: PreflightContext) -> list[Finding]:
    """The detector a faces model was trained with is where gclf-infer looks for it (no download)."""
    clf = ctx.classifier()
    if clf is None:
        return [Finding("face detector", INFO, "not checked: no model loaded")] if ctx.model is not None else []
    meta = clf.metadata
    if meta.input_kind != "faces":
        return [Finding("face detector", INFO, "not used: the model classifies whole images")]
    recorded = meta.face_crop
    if recorded is None:
        default = faces.default_face_model()
        name = "haar (the Haar cascade bundled with OpenCV)" if default == "haar" else f"yunet ({default})"
        return [Finding("face detector", OK, f"the model records no detector; gclf-infer uses {name}")]
    if recorded.kind == "haar":
        path = faces.haar_cascade_path()
        if not path.is_file():
            return [Finding("face detector", PROBLEM, f"the model was trained with the Haar cascade, and this OpenCV has none at {path}: {REINSTALL}")]
        return [Finding("face detector", OK, f"haar, as recorded ({path})")]
    # Where gclf-infer looks, in its order, without its download.
    found, folders = find_recorded_face_model(recorded, ctx.model.parent)
    if found is None:
        return [Finding(
            "face detector", PROBLEM,
            f"the model was trained with YuNet file {recorded.model_file} (sha256 {recorded.model_sha256[:12]}...), which is in "
            f"neither {folders[0]} nor {folders[1]}: copy it beside the model (a device may have no network when it starts)",
        )]
    try:
        pinned_detector_file(found, recorded.model_sha256, what="the face-model cache" if found.parent == cache_dir() else "the model's folder")
    except GclfError as exc:  # the trust rule gclf-infer applies: it would refuse this file (exit 7)
        return [Finding("face detector", PROBLEM, str(exc))]
    try:
        faces.YuNetFaceDetector(found).detect(_blank_bgr())
    except Exception as exc:
        return [Finding("face detector", PROBLEM, f"{found} does not run as a YuNet face detector ({_first_line(exc)}): copy the file again")]
    return [Finding("face detector", OK, f"yunet, as recorded ({found}, sha256 matches)")]


def check_threads(ctx: PreflightContext) -> list[Finding]:
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    mine = f"{ctx.threads} (--threads)" if ctx.threads else "one per core (the default)"
    text = f"onnxruntime threads: {mine}; {cores} CPUs, {usable} usable by this process"
    if ctx.threads and ctx.threads > usable:
        return [Finding("threads", INFO, f"{text}: more threads than usable CPUs only adds waiting, try --threads {usable}")]
    return [Finding("threads", OK, text)]


# vcgencmd get_throttled's bits (Raspberry Pi documentation, "vcgencmd"): now / since boot.
THROTTLE_BITS = {
    0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
    16: "under-voltage since boot", 17: "ARM frequency capped since boot", 18: "throttled since boot", 19: "soft temperature limit since boot",
}
UNDER_VOLTAGE_BITS = (0, 16)


def check_power(ctx: PreflightContext) -> list[Finding]:
    """Under-voltage and throttling, where Raspberry Pi OS's `vcgencmd` is there to ask."""
    tool = shutil.which("vcgencmd")
    if tool is None:
        return [Finding("power", INFO, "not checked: no vcgencmd here (it comes with Raspberry Pi OS)")]
    try:
        out = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Finding("power", INFO, f"not checked: vcgencmd get_throttled failed ({exc})")]
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", out.stdout)
    if out.returncode != 0 or match is None:
        said = _first_line(out.stderr or out.stdout) or f"exit {out.returncode}"
        return [Finding("power", INFO, f"not checked: vcgencmd get_throttled said {said!r} (the user needs the video group)")]
    value = int(match[1], 0)
    flags = [text for bit, text in THROTTLE_BITS.items() if value >> bit & 1]
    if not flags:
        return [Finding("power", OK, f"no under-voltage or throttling since boot (throttled={match[1]})")]
    fixes = []
    if any(value >> bit & 1 for bit in UNDER_VOLTAGE_BITS):
        fixes.append("use the official power supply (Pi 4: 5.1 V 3 A; Pi 5: 5.1 V 5 A) and a short cable")
    if value & ~sum(1 << bit for bit in UNDER_VOLTAGE_BITS):
        fixes.append("cool the Pi (a heatsink or fan) if it is not the supply")
    return [Finding("power", PROBLEM, f"{', '.join(flags)} (throttled={match[1]}): {'; '.join(fixes)}")]


def check_mqtt_broker(ctx: PreflightContext) -> list[Finding]:
    """With the run's --mqtt: whether the broker answers and accepts the login, in bounded time
    (a connection of its own, without a last will: checking never makes the camera look
    offline). Nothing without --mqtt."""
    if ctx.options.get("mqtt") is None:
        extra = [opt for opt, key in (("--mqtt-ca", "mqtt_ca"), ("--mqtt-password-file", "mqtt_password_file")) if ctx.options.get(key) is not None]
        return [Finding("mqtt", PROBLEM, f"{' and '.join(extra)} only apply with --mqtt URL")] if extra else []
    try:
        from gclf.runtime.mqtt.check import check_broker  # here: a missing paho-mqtt is a finding, not a crash
        from gclf.runtime.mqtt.settings import broker_settings

        settings = broker_settings(ctx.options["mqtt"], ca_file=ctx.options.get("mqtt_ca"), password_file=ctx.options.get("mqtt_password_file"))
        result = check_broker(settings)
    except GclfError as exc:  # paho-mqtt missing (the extra named), a bad address or password file, a CA file the TLS library refuses
        return [Finding("mqtt", PROBLEM, str(exc))]
    return [Finding("mqtt", OK if result.ok else PROBLEM, result.text)]


CHECKS: list[Callable[[PreflightContext], list[Finding]]] = [
    check_userland,
    check_numpy,
    check_opencv,
    check_onnxruntime,
    check_picamera2,
    check_camera,
    check_model,
    check_threshold,
    check_int8_cpu,
    check_engines,
    check_face_detector,
    check_threads,
    check_power,
    check_mqtt_broker,
]


def run_checks(
    ctx: PreflightContext,
    checks: Sequence[Callable[[PreflightContext], list[Finding]]] | None = None,
    *,
    report: Callable[[Finding], None] | None = None,
) -> list[Finding]:
    """Every check's findings, in order; `report` sees each as soon as it is made (a slow
    check, such as loading a big model, then does not hold back the lines before it)."""
    findings: list[Finding] = []
    for check in CHECKS if checks is None else checks:
        try:
            found = check(ctx)
        except Exception as exc:  # a bug in a check must not hide the other checks
            found = [Finding(check.__name__.removeprefix("check_"), PROBLEM, f"the check itself failed ({type(exc).__name__}: {exc})")]
        for finding in found:
            findings.append(finding)
            if report is not None:
                report(finding)
    return findings


def run_check_command(model: Path | None, *, threads: int, options: Mapping[str, Any] | None = None) -> int:
    """`gclf-infer --check [MODEL] [options]`: every check of gclf.runtime.cli.preflight, one
    line each, on the run's `options` (gclf-infer's parameters by name)."""
    context = PreflightContext(model=model, threads=threads or None, options=dict(options or {}))
    findings = run_checks(context, report=lambda f: click.echo(f.line()))
    problems = [f for f in findings if f.is_problem]
    if problems:
        click.echo(f"check: {len(problems)} problem{'' if len(problems) == 1 else 's'} (lines marked PROBLEM above)", err=True)
        return EXIT_CHECK_FAILED
    click.echo("check: all passed", err=True)
    return EXIT_OK


# --- cameras ---------------------------------------------------------------------------------


def video_devices(dev: Path = Path("/dev")) -> list[Path]:
    """/dev/video* in number order."""
    nodes = [p for p in dev.glob("video*") if re.fullmatch(r"video\d+", p.name)]
    return sorted(nodes, key=lambda p: int(p.name[5:]))


def usb_cameras(dev: Path = Path("/dev")) -> list[tuple[Path, Path]]:
    """(link, /dev/videoN) per capture node udev names in /dev/v4l/by-id: the USB cameras,
    under names that stay theirs whatever order they were plugged in (`--camera LINK`).
    A UVC camera also has a metadata node (…-video-index1): only index0 is a camera."""
    folder = dev / "v4l" / "by-id"
    found = []
    for link in sorted(folder.glob("*")) if folder.is_dir() else []:
        if re.search(r"-video-index[1-9]\d*$", link.name):
            continue
        target = Path(os.path.realpath(link))
        if re.fullmatch(r"video\d+", target.name):
            found.append((link, target))
    return found


def _pi_cameras() -> tuple[list[dict], str]:
    """picamera2's camera list, and a note on where it came from."""
    try:
        from gclf.runtime.live.picamera import import_picamera2  # here: numpy itself may be broken

        Picamera2 = import_picamera2()
    except Exception:
        return [], "no Pi cameras listed (picamera2 cannot be imported)"
    try:
        cameras = list(Picamera2.global_camera_info())
    except Exception as exc:
        return [], f"no Pi cameras listed (libcamera: {_first_line(exc)})"
    return cameras, "no Pi camera (picamera2 lists none)" if not cameras else ""


def _v4l_name(ctx: PreflightContext, node: Path) -> str:
    name = _read_text(ctx.sys_video4linux / node.name / "name")
    return f" ({name})" if name else ""


# --- small helpers ---------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip("\0 \n")
    except OSError:
        return ""


def _os_name() -> str:
    for line in _read_text(Path("/etc/os-release")).splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "version unknown"


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _blank_bgr():
    import numpy as np

    return np.zeros((64, 64, 3), dtype=np.uint8)
