"""gclf-infer --check: each check on a staged machine (a /dev and /sys tree in tmp_path, a fake
vcgencmd on PATH, a picamera2 that fails as it does beside the wrong numpy), and the command."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gclf.runtime.cli import preflight
from gclf.runtime.cli.infer import main
from gclf.runtime.cli.params import Camera
from gclf.runtime.errors import EXIT_CHECK_FAILED, EXIT_MISSING_DEPENDENCY
from gclf.runtime.cli.preflight import OK, PROBLEM, INFO, Finding, PreflightContext, run_checks
from gclf_testutil import SHARED

YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
FAKE_SHA = "ab" * 32


def _one(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


@pytest.fixture
def machine(tmp_path: Path) -> PreflightContext:
    """A Pi-like /dev: one USB camera (with its metadata node) and the Pi's codec nodes."""
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    (dev / "v4l" / "by-id").mkdir(parents=True)
    for n, name in ((0, "UVC Camera (046d:0825)"), (1, "UVC Camera (046d:0825)"), (10, "bcm2835-codec-decode"), (11, "bcm2835-codec-encode")):
        (dev / f"video{n}").write_text("")
        (sysfs / f"video{n}").mkdir(parents=True)
        (sysfs / f"video{n}" / "name").write_text(name + "\n")
    for index, node in ((0, "video0"), (1, "video1")):
        (dev / "v4l" / "by-id" / f"usb-046d_0825_ABC-video-index{index}").symlink_to(f"../../{node}")
    return PreflightContext(dev=dev, sys_video4linux=sysfs, device_tree_model=tmp_path / "model")


@pytest.fixture
def no_picamera2(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as if not installed


def _with(ctx: PreflightContext, **options) -> PreflightContext:
    """`ctx` with the run's options (gclf-infer's parameters by name)."""
    return dataclasses.replace(ctx, options=options)


def test_without_a_camera_option_no_camera_is_checked_and_those_found_are_listed(machine: PreflightContext, no_picamera2) -> None:
    finding = _one(preflight.check_camera(machine))

    assert finding.status == INFO and finding.text.startswith("not checked: no --camera (or --config) given; cameras here: ")
    assert f"USB {machine.dev}/v4l/by-id/usb-046d_0825_ABC-video-index0 -> {machine.dev}/video0 (UVC Camera (046d:0825))" in finding.text
    assert "index1" not in finding.text  # the metadata node is not a camera
    assert "video10 (bcm2835-codec-decode)" in finding.text and "video1 " not in finding.text


def test_a_laptop_that_reads_a_video_gets_no_camera_problem(tmp_path: Path, no_picamera2) -> None:
    # Nothing in /dev at all: still no PROBLEM, since the run reads no camera.
    finding = _one(preflight.check_camera(_with(PreflightContext(dev=tmp_path, sys_video4linux=tmp_path), video=tmp_path / "clip.mp4")))

    assert finding.status == INFO and "the run reads --video" in finding.text and "none found (no USB camera in" in finding.text


def test_the_camera_the_options_name_is_checked(machine: PreflightContext, no_picamera2) -> None:
    by_id = machine.dev / "v4l" / "by-id" / "usb-046d_0825_ABC-video-index0"
    for device in (0, str(by_id)):
        finding = _one(preflight.check_camera(_with(machine, camera=Camera("usb", device))))
        assert finding.status == OK and f"{machine.dev}/video0 (UVC Camera (046d:0825))" in finding.text
    missing = _one(preflight.check_camera(_with(machine, camera=Camera("usb", 3))))
    assert missing.is_problem and missing.text.startswith(f"camera 3 ({machine.dev}/video3): no such device (cameras here: USB ")


def test_a_named_pi_camera_comes_from_picamera2(tmp_path: Path, fake_picamera2) -> None:
    ctx = PreflightContext(dev=tmp_path, sys_video4linux=tmp_path)
    assert _one(preflight.check_camera(_with(ctx, camera=Camera("picam", 0)))) == Finding("camera", OK, "Pi camera picam:0 (imx708)")
    second = _one(preflight.check_camera(_with(ctx, camera=Camera("picam", 1))))
    assert second.is_problem and "no Pi camera picam:1" in second.text and "rpicam-hello --list-cameras" in second.text


def test_a_camera_this_user_may_not_open_is_a_problem(machine: PreflightContext, no_picamera2, monkeypatch) -> None:
    monkeypatch.setattr(preflight.os, "access", lambda path, mode: False)

    finding = _one(preflight.check_camera(_with(machine, camera=Camera("usb", 0))))

    assert finding.is_problem and "may not open" in finding.text and "video group" in finding.text


def test_a_32_bit_userland_is_a_problem(monkeypatch, machine: PreflightContext) -> None:
    assert _one(preflight.check_userland(machine)).status == OK  # this machine: 64-bit
    monkeypatch.setattr(preflight.struct, "calcsize", lambda fmt: 4)
    (machine.device_tree_model).write_text("Raspberry Pi 4 Model B Rev 1.5\0")

    finding = _one(preflight.check_userland(machine))

    assert finding.is_problem and "32-bit" in finding.text and "Raspberry Pi OS (64-bit)" in finding.text
    assert "Raspberry Pi 4 Model B Rev 1.5" in finding.text


def _stage_picamera2(tmp_path: Path, monkeypatch, body: str) -> None:
    folder = tmp_path / "site" / "picamera2"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)


NUMPY_VALUE_ERROR = 'raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, got 88 from PyObject")\n'


def test_picamera2_beside_the_wrong_numpy_is_a_problem_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    _stage_picamera2(tmp_path, monkeypatch, NUMPY_VALUE_ERROR)

    finding = _one(preflight.check_picamera2(PreflightContext()))

    assert finding.is_problem
    assert finding.text.startswith("picamera2 cannot be imported: Raspberry Pi OS builds it against the system's numpy 1.x")
    assert "numpy.dtype size changed" in finding.text and 'pip install "opencv-python-headless<4.12"' in finding.text


def test_camera_picam_beside_the_wrong_numpy_exits_8_with_one_sentence(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    _stage_picamera2(tmp_path, monkeypatch, NUMPY_VALUE_ERROR)

    result = CliRunner().invoke(main, [str(tiny_onnx()), "--camera", "picam", "--headless"])

    assert result.exit_code == EXIT_MISSING_DEPENDENCY
    assert result.stderr.count("error:") == 1 and "pip uninstall -y numpy" in result.stderr
    assert "Traceback" not in result.output


def test_picamera2_not_installed_is_only_info(no_picamera2) -> None:
    finding = _one(preflight.check_picamera2(PreflightContext()))

    assert finding.status == INFO and finding.text.startswith("not installed")


def test_the_imports_say_version_and_where_from() -> None:
    import numpy

    finding = _one(preflight.check_numpy(PreflightContext()))

    assert finding.status == OK and finding.text.startswith(numpy.__version__)


def _fake_vcgencmd(tmp_path: Path, monkeypatch, output: str) -> None:
    tool = tmp_path / "bin" / "vcgencmd"
    tool.parent.mkdir()
    tool.write_text(f"#!/bin/sh\necho '{output}'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize(
    ("output", "status", "words"),
    [
        ("throttled=0x0", OK, ["no under-voltage"]),
        ("throttled=0x50005", PROBLEM, ["under-voltage now", "throttled now", "under-voltage since boot", "official power supply"]),
        ("throttled=0x80000", PROBLEM, ["soft temperature limit since boot", "heatsink"]),
        ("VCHI initialization failed", INFO, ["video group"]),
    ],
)
def test_power_is_read_from_vcgencmd(tmp_path: Path, monkeypatch, output: str, status: str, words: list[str]) -> None:
    _fake_vcgencmd(tmp_path, monkeypatch, output)

    finding = _one(preflight.check_power(PreflightContext()))

    assert finding.status == status, finding
    assert all(w in finding.text for w in words), finding.text
    if status == PROBLEM and "0x80000" in output:
        assert "power supply" not in finding.text  # heat alone: the supply is fine


def test_without_vcgencmd_power_is_not_checked(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _one(preflight.check_power(PreflightContext())).status == INFO


def test_the_model_loads_and_runs(tiny_onnx) -> None:
    finding = _one(preflight.check_model(PreflightContext(model=tiny_onnx(), threads=1)))

    assert finding.status == OK
    assert "tiny.onnx: fp32, 2 classes (red, blue), 32x32 px" in finding.text and "one inference" in finding.text
    assert "uncalibrated (raw softmax)" in finding.text


def test_the_model_finding_names_its_recorded_calibration(tiny_onnx) -> None:
    from gclf.runtime.onnx_metadata import update_metadata

    model = tiny_onnx()
    update_metadata(model, {"gclf.format_version": "2", "gclf.calibration": '{"method": "temperature", "parameters": {"temperature": 1.5}}'})
    finding = _one(preflight.check_model(PreflightContext(model=model, threads=1)))
    assert finding.status == OK and "calibrated (temperature 1.500)" in finding.text


def test_check_says_which_confidence_threshold_applies_and_where_it_came_from(tiny_onnx, monkeypatch) -> None:
    from gclf_testutil import decision_record

    monkeypatch.setattr(preflight, "CHECKS", [preflight.check_model, preflight.check_threshold])
    model = str(tiny_onnx(decision=decision_record(0.62)))

    recorded = CliRunner().invoke(main, ["--check", model])
    given = CliRunner().invoke(main, ["--check", model, "--min-confidence", "0"])

    assert recorded.exit_code == 0 and given.exit_code == 0, recorded.output + given.output
    assert "info     threshold: answers below confidence 0.62 are unsure: the model's recorded decision" in recorded.stdout
    assert "info     threshold: every answer is given, none is unsure (--min-confidence 0)" in given.stdout
    assert preflight.check_threshold(PreflightContext()) == []  # no model: nothing to say


def test_a_model_that_does_not_load_is_a_problem_and_the_detector_is_not_checked(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not onnx")
    ctx = PreflightContext(model=bogus)

    model, detector = preflight.check_model(ctx), preflight.check_face_detector(ctx)

    assert _one(model).is_problem and "not a loadable ONNX model" in model[0].text
    assert _one(detector).status == INFO and "no model loaded" in detector[0].text


def _faces_model(tiny_onnx, face_crop: dict | None):
    training = {"input_kind": "faces", **({"face_crop": face_crop} if face_crop else {})}
    return tiny_onnx("faces.onnx", props_update={"gclf.training": json.dumps(training)})


def _yunet_crop(sha: str = FAKE_SHA, model_file: str = "yunet.onnx") -> dict:
    return {"kind": "yunet", "model_sha256": sha, "model_file": model_file, "margin": 0.1,
            "min_face_fraction": None, "score_threshold": 0.6, "detect_max_side": 320}


def test_a_recorded_yunet_that_is_not_on_the_device_is_a_problem(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))  # an empty cache
    model = _faces_model(tiny_onnx, _yunet_crop())

    finding = _one(preflight.check_face_detector(PreflightContext(model=model)))

    assert finding.is_problem
    assert f"YuNet file yunet.onnx (sha256 {FAKE_SHA[:12]}...), which is in neither {model.parent} nor {tmp_path / 'home' / 'face_models'}" in finding.text
    assert "copy it beside the model" in finding.text
    assert not (tmp_path / "home").exists()  # nothing downloaded, nothing written


def test_a_recorded_yunet_file_that_is_not_yunet_is_a_problem(tiny_onnx, tmp_path: Path) -> None:
    import hashlib

    model = _faces_model(tiny_onnx, _yunet_crop(hashlib.sha256(b"not onnx").hexdigest()))
    (model.parent / "yunet.onnx").write_bytes(b"not onnx")

    finding = _one(preflight.check_face_detector(PreflightContext(model=model)))

    assert finding.is_problem and "does not run as a YuNet face detector" in finding.text


def test_a_recorded_yunet_file_with_another_sha256_is_the_problem_gclf_infer_would_refuse(tiny_onnx, tmp_path: Path) -> None:
    model = _faces_model(tiny_onnx, _yunet_crop())
    (model.parent / "yunet.onnx").write_bytes(b"another file")

    finding = _one(preflight.check_face_detector(PreflightContext(model=model)))

    assert finding.is_problem and "is not the detector the model was trained with" in finding.text


@pytest.mark.skipif(not YUNET.is_file(), reason=f"YuNet model not found at {YUNET}")
def test_a_recorded_yunet_beside_the_model_is_found_and_runs(tiny_onnx) -> None:
    from gclf.runtime.files import sha256_file

    model = _faces_model(tiny_onnx, _yunet_crop(sha256_file(YUNET), YUNET.name))
    shutil.copy(YUNET, model.parent / YUNET.name)

    finding = _one(preflight.check_face_detector(PreflightContext(model=model)))

    assert finding.status == OK and "sha256 matches" in finding.text


def test_recorded_haar_and_whole_image_models(tiny_onnx) -> None:
    haar = {"kind": "haar", "model_sha256": FAKE_SHA, "model_file": "haarcascade_frontalface_default.xml", "margin": 0.0,
            "min_face_fraction": 0.1, "score_threshold": None, "detect_max_side": 320}

    assert _one(preflight.check_face_detector(PreflightContext(model=_faces_model(tiny_onnx, haar)))).status == OK
    whole = _one(preflight.check_face_detector(PreflightContext(model=tiny_onnx())))
    assert whole.status == INFO and "whole images" in whole.text


def test_a_check_that_breaks_is_reported_and_the_others_still_run() -> None:
    def broken(ctx):
        raise RuntimeError("oops")

    findings = run_checks(PreflightContext(), [broken, preflight.check_threads])

    assert findings[0].is_problem and findings[0].check == "broken" and "oops" in findings[0].text
    assert findings[1].check == "threads"


def test_check_prints_a_line_per_finding_and_exits_0_when_all_pass(tiny_onnx, monkeypatch) -> None:
    monkeypatch.setattr(preflight, "CHECKS", [preflight.check_userland, preflight.check_model, preflight.check_threads])

    result = CliRunner().invoke(main, ["--check", str(tiny_onnx()), "--threads", "1"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [OK, OK, OK]
    assert lines[2].startswith("ok       threads: onnxruntime threads: 1 (--threads)")
    assert "check: all passed" in result.stderr


def test_check_exits_12_with_one_sentence_per_problem(monkeypatch) -> None:
    monkeypatch.setattr(preflight, "CHECKS", [
        lambda ctx: [Finding("cameras", PROBLEM, "no camera found")],
        lambda ctx: [Finding("power", PROBLEM, "under-voltage now")],
        preflight.check_model,
    ])

    result = CliRunner().invoke(main, ["--check"])

    assert result.exit_code == EXIT_CHECK_FAILED
    assert result.stdout.splitlines() == [
        "PROBLEM  cameras: no camera found",
        "PROBLEM  power: under-voltage now",
        "info     model: none given: `gclf-infer --check MODEL` also loads it and runs one inference",
    ]
    assert "check: 2 problems" in result.stderr


def test_check_takes_the_runs_options_but_no_image_files(tiny_onnx, monkeypatch) -> None:
    seen: list[PreflightContext] = []
    monkeypatch.setattr(preflight, "CHECKS", [lambda ctx: seen.append(ctx) or []])

    result = CliRunner().invoke(main, ["--check", str(tiny_onnx()), "--camera", "0", "--headless", "--detect-every", "2"])

    assert result.exit_code == 0, result.output
    assert seen[0].options["camera"] == Camera("usb", 0) and seen[0].options["headless"] is True and seen[0].options["detect_every"] == 2
    result = CliRunner().invoke(main, ["--check", str(tiny_onnx()), "photo.jpg"])
    assert result.exit_code == 2 and "not image files" in result.stderr


def test_without_check_a_model_is_still_required() -> None:
    result = CliRunner().invoke(main, [])

    assert result.exit_code == 2 and "give a MODEL" in result.stderr


def test_an_int8_model_says_whether_its_gate_ran_on_this_cpu_class(tiny_onnx) -> None:
    from gclf.runtime.cpu_class import detect_cpu_class

    here = detect_cpu_class()
    other = "arm-dotprod" if not here.startswith("arm") else "avx512-vnni"

    def int8_model(name: str, quant: dict) -> Path:
        return tiny_onnx(name, props_update={"gclf.variant": "int8", "gclf.quantization": json.dumps(quant)})

    same = _one(preflight.check_int8_cpu(PreflightContext(model=int8_model("same.onnx", {"parity_cpu_class": here, "saturation_safe": False}))))
    assert same.status == OK and here in same.text
    moved = _one(preflight.check_int8_cpu(PreflightContext(model=int8_model("moved.onnx", {"parity_cpu_class": other, "saturation_safe": True}))))
    assert moved.status == INFO and other in moved.text and "does not matter" in moved.text
    assert preflight.check_int8_cpu(PreflightContext(model=tiny_onnx())) == []  # fp32: nothing to say
