#!/usr/bin/env python3
"""Which onnxruntime, numpy and OpenCV versions run gclf on a Raspberry Pi (emulated).

    python tools/arm_matrix.py [--int8 MODEL] [--versions all|latest-patch|1.21.0,1.22.1]
                               [--extra "numpy==1.23.2 opencv-python-headless==4.8.0.74"]

For every onnxruntime release that has aarch64 wheels (from --since, default the floor of the
range that was in pyproject.toml before this matrix: 1.17) it installs that wheel on top of
the base install (the project's other dependencies as pip resolves them for the Pi) and, on
each emulated Pi (CPU model x Raspberry Pi OS Python), runs `gclf-infer MODEL PHOTOS --json`:
does it import (a wheel built for a newer CPU dies with "Illegal instruction"), and do its
labels and probabilities agree with x86 (tools/arm_check.py's tolerance)? Each --extra is a
set of requirements resolved together with the project's (e.g. the lowest numpy and OpenCV
the range admits) and checked the same way.

Prints a Markdown table (docs/raspberry-pi.md keeps the last one). Too long for CI: about
10 s of CPU per cell under emulation; it reuses tools/arm_check.py's cache.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import arm_check as ac  # noqa: E402


def available_versions(package: str, suite: str) -> list[str]:
    """Versions of `package` with a wheel pip would install on a Pi running `suite`, newest first."""
    out = ac._pip(["index", "versions", package, *ac.pip_target_args(suite)], what=f"pip index versions {package}")
    match = re.search(r"Available versions: (.*)", out)
    return [v.strip() for v in match.group(1).split(",")] if match else []


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def pick_versions(all_versions: list[str], since: str, which: str) -> list[str]:
    chosen = [v for v in all_versions if _key(v) >= _key(since)]
    if which == "latest-patch":  # the newest patch of each minor release, plus known-bad ones
        newest: dict[tuple[int, ...], str] = {}
        for v in chosen:
            newest.setdefault(_key(v)[:2], v)
        chosen = sorted(set(newest.values()) | ({"1.21.0"} & set(chosen)), key=_key, reverse=True)
    elif which != "all":
        chosen = [v for v in which.split(",") if v in all_versions]
    return sorted(chosen, key=_key)


def install(site: Path, requirements: list[str], suite: str, *, no_deps: bool) -> str | None:
    """Install into `site` once (cached); None, or why it could not be installed."""
    if (site / ".complete").is_file():
        return None
    tmp = Path(tempfile.mkdtemp(prefix=site.name, dir=site.parent))
    try:
        ac._pip(["install", "-q", "--target", str(tmp), *ac.pip_target_args(suite), *(["--no-deps"] if no_deps else []), *requirements],
                what=f"pip install {' '.join(requirements)} ({suite})")
    except ac.SetupError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return str(exc)[-200:]
    (tmp / ".complete").write_text("")
    ac._publish(tmp, site)
    return None


def upper_bounds(site: Path) -> list[str]:
    """Requirements of onnxruntime with an upper bound (which the layered install would not honour)."""
    found = []
    for meta in site.glob("onnxruntime-*.dist-info/METADATA"):
        for line in meta.read_text(errors="replace").splitlines():
            if line.startswith("Requires-Dist:") and "<" in line and "extra ==" not in line:
                found.append(line.split(":", 1)[1].strip())
    return found


def run_cell(pi: ac.Pi, entry: Path, args: list[str], x86: list[dict]) -> tuple[str, str, float]:
    started = time.monotonic()
    done = pi.python([str(entry), *args])
    seconds = time.monotonic() - started
    if done.returncode == -4:
        return "no: Illegal instruction", "", seconds
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1][:120]
        return f"no: exit {done.returncode} ({last})", "", seconds
    try:
        c = ac.compare_photos("", x86, ac.parse_json_lines(done.stdout, ""), ac.TOL_INT8)
    except ac.CheckFailed as exc:
        return "yes", f"no ({exc})", seconds
    return "yes", ("yes" if not c.problems else "no: " + "; ".join(c.problems))[:160] + f" (max diff {c.max_diff:.1g})", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--int8", type=Path, default=ac.REPO / "gclf-quickstart" / "run" / "model.int8.onnx")
    parser.add_argument("--photos", type=Path, default=ac.DEFAULT_PHOTOS)
    parser.add_argument("--versions", default="all", help="all | latest-patch | a comma list (onnxruntime)")
    parser.add_argument("--since", default="1.17", help="lowest onnxruntime version to try")
    parser.add_argument("--extra", action="append", default=[], help="a requirement set to check on cortex-a72, e.g. 'numpy==1.23.2 opencv-python-headless==4.8.0.74'")
    parser.add_argument("--suites", default=",".join(ac.SUITES))
    parser.add_argument("--cpus", default=",".join(ac.CPUS))
    parser.add_argument("--cache", type=Path, default=ac.DEFAULT_CACHE)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.int8.is_file():
        ac.log(f"error: model {args.int8} not found (run gclf-quickstart first, or pass --int8)")
        return ac.EXIT_USAGE
    photos = ac.default_photos(args.photos, per_class=1)[:2]
    suites, cpus = args.suites.split(","), args.cpus.split(",")
    args.cache.mkdir(parents=True, exist_ok=True)
    matrix = args.cache / "matrix"
    matrix.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="matrix-", dir=args.cache))
    infer = [str(args.int8), *map(str, photos), "--json", "--threads", "1"]
    done = ac.run_x86(infer)
    if done.returncode != 0:
        ac.log(f"error: x86 reference run failed: {done.stderr[-300:]}")
        return 1
    x86 = ac.parse_json_lines(done.stdout, "x86")

    try:
        qemu, debootstrap = ac.ensure_tools(args.cache)
        requirements = ac.project_dependencies()
        cells: list[tuple[str, str, str, ac.Pi]] = []  # (suite, cpu, what, pi)
        notes: list[str] = []
        for suite in suites:
            root = ac.ensure_root(args.cache, suite, debootstrap)
            base = ac.ensure_deps_site(args.cache, suite, requirements)
            gclf_site = ac.build_project_site(work, suite)
            # What older onnxruntime releases also import or require; the newest of each, as pip picks.
            extras_site = matrix / f"ortdeps-{suite}"
            install(extras_site, ["coloredlogs", "sympy", "humanfriendly", "mpmath"], suite, no_deps=True)
            versions = pick_versions(available_versions("onnxruntime", suite), args.since, args.versions)
            ac.log(f"{suite}: onnxruntime {', '.join(versions)}")
            for version in versions:
                site = matrix / f"ort-{suite}-{version}"
                problem = install(site, [f"onnxruntime=={version}"], suite, no_deps=True)
                if problem:
                    notes.append(f"{suite} onnxruntime {version}: not installable ({problem})")
                    continue
                if upper_bounds(site):
                    notes.append(f"{suite} onnxruntime {version} requires {upper_bounds(site)}: layered on the base install regardless")
                for cpu in cpus:
                    cells.append((suite, cpu, f"onnxruntime {version}", ac.Pi(qemu, root, suite, cpu, (gclf_site, site, extras_site, base))))
            for extra in args.extra:
                reqs = extra.split()
                names = {re.split(r"[<>=!~ ]", r)[0].lower() for r in reqs}
                merged = reqs + [r for r in requirements if re.split(r"[<>=!~ ;]", r)[0].lower() not in names]
                site = matrix / f"extra-{suite}-{re.sub(r'[^A-Za-z0-9.]+', '_', extra)}"
                problem = install(site, merged, suite, no_deps=False)
                if problem:
                    notes.append(f"{suite} {extra}: not installable ({problem})")
                    continue
                got = ac.installed_versions(site)
                what = ", ".join(f"{k} {got[k]}" for k in ("numpy", "opencv-python-headless", "onnxruntime") if k in got)
                cells.append((suite, "cortex-a72", what, ac.Pi(qemu, root, suite, "cortex-a72", (gclf_site, site))))
    except ac.SetupError as exc:
        ac.log(f"error: the emulated Raspberry Pi could not be set up: {exc}")
        return ac.EXIT_SETUP

    rows = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(run_cell, pi, pi.site[0] / "bin" / "gclf-infer", infer, x86): (suite, cpu, what) for suite, cpu, what, pi in cells}
            for future in concurrent.futures.as_completed(futures):
                suite, cpu, what = futures[future]
                imports, agree, seconds = future.result()
                ac.log(f"{suite} {cpu} {what}: imports {imports}, labels agree {agree or '-'} ({seconds:.0f} s)")
                rows.append((suite, cpu, what, imports, agree))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    order = {s: i for i, s in enumerate(ac.SUITES)}
    rows.sort(key=lambda r: (r[2].startswith("onnxruntime") is False, _key(r[2]) if r[2].startswith("onnxruntime") else (), order[r[0]], r[1]))
    print("| versions | CPU (Pi) | Raspberry Pi OS / Python | imports | labels agree with x86 |")
    print("| --- | --- | --- | --- | --- |")
    for suite, cpu, what, imports, agree in rows:
        print(f"| {what} | {cpu} ({ac.CPUS[cpu]}) | {suite} / {ac.SUITES[suite][0]} | {imports} | {agree or '-'} |")
    for note in notes:
        print(f"\n- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
