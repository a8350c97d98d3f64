"""The ARM check (tools/arm_check.py) runs the Raspberry Pi guide's own install commands.

The emulated run itself is CI's (.ci/run, minutes); here, fast: the commands are read out of
docs/raspberry-pi.md, they are the install the guide explains (apt's numpy, a venv that sees
it, the numpy pin as a real command), and the check runs them as printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gclf_testutil import REPO

sys.path.insert(0, str(REPO / "tools"))  # a script, not a package

import arm_check as ac  # noqa: E402


def test_the_check_reads_the_guides_install_block() -> None:
    steps = ac.guide_steps(ac.guide_commands())

    assert {"python3-numpy", "python3-venv", "python3-picamera2"} <= set(steps.apt_packages)
    assert "python3-picamera2" not in ac.debian_packages(steps)  # the Raspberry Pi archive is out of reach
    assert [c for c in steps.skipped if "useradd" in c]
    venv = [c for c in steps.run if " -m venv " in c]
    assert venv and "--system-site-packages /opt/gclf/venv" in venv[0]
    pin = [c for c in steps.run if "constraints.txt" in c and "numpy.__version__" in c]
    assert pin, "the numpy pin must be a command, not a comment"
    install = [c for c in steps.run if "pip install" in c and "gclf-*.whl" in c]
    assert install and "-c /opt/gclf/constraints.txt" in install[0]
    guide = ac.GUIDE.read_text()
    for command in (*steps.run, *steps.skipped):
        assert command in guide  # printed as run


def test_a_guide_line_runs_as_printed_with_the_pi_home_moved(tmp_path: Path) -> None:
    home, qemu = tmp_path / "opt" / "gclf", tmp_path / "qemu-aarch64"
    line = "sudo /opt/gclf/venv/bin/pip install -c /opt/gclf/constraints.txt ./gclf-*.whl"

    assert ac._as_run_here(line, home, qemu) == (
        f"sudo {qemu} {home}/venv/bin/python3 {home}/venv/bin/pip install -c {home}/constraints.txt ./gclf-*.whl"
    )
    assert ac._as_run_here("sudo python3 -m venv --system-site-packages /opt/gclf/venv", home, qemu) == (
        f"sudo python3 -m venv --system-site-packages {home}/venv"
    )


def test_faces_are_compared_box_by_box_and_face_by_face() -> None:
    def run(box, p):
        return [{"path": "a.jpg", "faces": [{"box": box, "label": "x" if p > 0.5 else "y", "probabilities": {"x": p, "y": 1 - p}}]}]

    assert not ac.compare_faces("t", run([10, 10, 50, 60], 0.9), run([11, 10, 50, 61], 0.9), 1e-4).problems
    assert ac.compare_faces("t", run([10, 10, 50, 60], 0.9), run([20, 10, 50, 60], 0.9), 1e-4).problems  # another box
    assert ac.compare_faces("t", run([10, 10, 50, 60], 0.9), run([10, 10, 50, 60], 0.8), 1e-4).problems  # another probability
    assert ac.compare_faces("t", run([10, 10, 50, 60], 0.9), [{"path": "a.jpg", "faces": []}], 1e-4).problems  # a face lost
