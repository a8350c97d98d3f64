#!/usr/bin/env python3
"""The inference engines on an emulated Raspberry Pi 4 and Pi 5: does each give the model's
answers there, or does gclf refuse it?

    python tools/arm_engines.py MODEL.onnx [MODEL.int8.onnx ...] [--photos P ...] [--suites bookworm] [--cpus cortex-a72,cortex-a76]

For each Pi (qemu user-mode emulation, as tools/arm_check.py sets it up and caches it: its
qemu, its minimal arm64 Debian, and the aarch64 wheels pip picks for that Raspberry Pi OS,
here the base install plus the `openvino` extra), each model is loaded with each engine
(`Classifier(model, engine=...)`, one thread), so its parity check runs against the reference
outputs recorded on x86, and classifies the photos; the same runs on this machine. A result is:

- "passed": the parity check passed and every photo's probabilities are within 0.02 of x86's
  with the same engine (the ARM check's int8 tolerance);
- "refused": the parity check refused the engine (gclf would not run it there; the sentence
  is shown);
- a failure: anything else (a crash, or answers off while the check passed).

onnxruntime must pass everywhere; OpenVINO may pass or be refused, never be silently off.
Exit 0 if so, 1 if not, 3 if the emulated Pi could not be set up. Speed under emulation means
nothing: measure on the Pi (docs/raspberry-pi.md, "Inference engines on a Pi").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arm_check  # noqa: E402  (the same tools folder: its set-up and cache)

REPO = Path(__file__).resolve().parent.parent
ENGINES = ("onnxruntime", "openvino")
TOLERANCE = 0.02
RUN = r"""
import json, sys
from pathlib import Path
from gclf.runtime import Classifier
out = {}
for model in json.loads(sys.argv[1]):
    for engine in ("onnxruntime", "openvino"):
        key = f"{Path(model).name} {engine}"
        try:
            clf = Classifier(model, engine=engine, threads=1)
            probs = [list(r.prediction.probabilities.values()) for r in clf.predict_files(json.loads(sys.argv[2]))]
            out[key] = {"status": "passed", "parity": clf.parity.line(), "probs": probs}
        except Exception as exc:
            refused = type(exc).__name__ == "EngineRefusedError"
            out[key] = {"status": "refused" if refused else "error", "parity": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out))
"""


def run(python: list[str], env: dict[str, str], models: list[Path], photos: list[Path]) -> dict:
    done = subprocess.run([*python, "-c", RUN, json.dumps(list(map(str, models))), json.dumps(list(map(str, photos)))],
                          capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-600:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--photos", nargs="*", type=Path, default=None, help="[default: tools/arm_check.py's photos]")
    parser.add_argument("--suites", default="bookworm")
    parser.add_argument("--cpus", default="cortex-a72,cortex-a76")
    parser.add_argument("--cache", type=Path, default=arm_check.DEFAULT_CACHE)
    args = parser.parse_args()
    photos = args.photos or arm_check.default_photos(arm_check.DEFAULT_PHOTOS)
    args.cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="engines-", dir=args.cache))
    try:
        # The runtime package from this checkout, as the only gclf on the path.
        shutil.copytree(REPO / "runtime", work / "src" / "gclf" / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
        (work / "src" / "gclf" / "__init__.py").write_text("")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
               "PYTHONPATH": str(work / "src")}
        x86 = run([sys.executable], {**env, "GCLF_HOME": str(work / "home-x86")}, args.models, photos)
        try:
            qemu, debootstrap = arm_check.ensure_tools(args.cache)
        except arm_check.SetupError as exc:
            arm_check.log(f"error: the emulated Raspberry Pi could not be set up: {exc}")
            return 3
        failures = 0
        for suite in args.suites.split(","):
            root = arm_check.ensure_root(args.cache, suite, debootstrap)
            site = arm_check.ensure_deps_site(args.cache, suite, [*arm_check.project_dependencies(), *openvino_extra()])
            for cpu in args.cpus.split(","):
                home = work / f"home-{suite}-{cpu}"  # a fresh parity cache: every check runs
                arm = run([str(qemu), "-cpu", cpu, "-L", str(root), str(root / "usr" / "bin" / "python3")],
                          {**env, "PYTHONPATH": f"{site}{os.pathsep}{work / 'src'}", "GCLF_HOME": str(home)}, args.models, photos)
                for key, result in arm.items():
                    verdict, detail = judge(result, x86.get(key, {}), key.endswith("onnxruntime"))
                    failures += verdict == "FAILED"
                    print(f"{arm_check.CPUS[cpu]} ({cpu}), {suite}: {key}: {verdict}: {detail}", flush=True)
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def openvino_extra() -> list[str]:
    """The `openvino` extra's requirements, read from pyproject.toml (never a list kept here)."""
    import tomllib

    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["openvino"])


def judge(arm: dict, x86: dict, must_pass: bool) -> tuple[str, str]:
    if arm.get("status") == "passed" and x86.get("status") == "passed":
        diff = max(abs(a - b) for pa, pb in zip(arm["probs"], x86["probs"]) for a, b in zip(pa, pb))
        if diff > TOLERANCE:
            return "FAILED", f"passed its parity check but differs from x86 by {diff:.3g} on the photos"
        return "passed", f"{arm['parity']}; photos within {diff:.2g} of x86"
    if arm.get("status") == "refused" and not must_pass:
        return "refused", arm["parity"]
    return "FAILED", arm.get("parity", "no result")


if __name__ == "__main__":
    sys.exit(main())
