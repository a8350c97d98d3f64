"""The systemd unit shipped for a Raspberry Pi (deploy/gclf-camera.service) cannot drift from gclf-infer.

Its ExecStart is parsed by gclf-infer's own click command (an option renamed or removed
fails here), then run as written, with the model swapped for a tiny one and picamera2 for a
stand-in: it must classify camera frames headless, one JSON line each.
"""

from __future__ import annotations

import configparser
import json
import shlex
from pathlib import Path

from click.testing import CliRunner

from gclf.runtime.cli import Camera, main
from test_picamera import fake_picamera2  # noqa: F401  (the stand-in picamera2 fixture)

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "gclf-camera.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def _exec_start() -> list[str]:
    return shlex.split(_unit()["Service"]["ExecStart"])


def test_the_unit_restarts_on_failure_logs_json_lines_and_runs_as_its_own_user() -> None:
    service = _unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["StandardOutput"].startswith("append:/var/log/gclf/") and service["StandardOutput"].endswith(".jsonl")
    assert service["User"] == "gclf" and "video" in service["SupplementaryGroups"].split()
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"
    argv = _exec_start()
    assert argv[0] == "/opt/gclf/venv/bin/gclf-infer"
    assert "--headless" in argv  # no window on a Pi without a screen


def test_exec_start_parses_with_gclf_infer_options(tiny_onnx) -> None:
    args = _exec_start()[1:]
    args[0] = str(tiny_onnx())  # the unit's model path exists only on the Pi
    with main.make_context("gclf-infer", args) as ctx:  # unknown or mistyped options raise here
        params = ctx.params
    assert params["camera"] == Camera("picam", 0)
    assert params["camera_size"] == (640, 480)
    assert params["headless"] is True and params["paths"] == ()


def test_exec_start_runs_headless_with_a_stand_in_camera(tiny_onnx, fake_picamera2) -> None:
    args = _exec_start()[1:]
    args[0] = str(tiny_onnx())

    result = CliRunner().invoke(main, [*args, "--max-frames", "3"])

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 3 and all(r["faces"][0]["box"] == [0, 0, 640, 480] for r in records)
    assert fake_picamera2.instances[0].closed


def test_the_pi_guide_installs_the_unit_and_creates_what_it_needs() -> None:
    readme = (REPO / "docs" / "raspberry-pi.md").read_text()  # the guide; the README has it in brief
    service = _unit()["Service"]
    assert "deploy/gclf-camera.service" in readme
    for needed in (service["User"], service["WorkingDirectory"], "/var/log/gclf", "/opt/gclf/venv", "/opt/gclf/model.onnx", "--system-site-packages"):
        assert needed in readme, f"docs/raspberry-pi.md's guide does not set up {needed}"
