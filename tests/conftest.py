"""Shared fixtures: generated images, tiny hand-built ONNX models, one tiny trained run, and
the stand-in picamera2.

Everything is generated in temporary folders and kept small (2 CPU cores): images are a few
dozen pixels, the trained run is one epoch at 64x64 on 20 images, and the tiny ONNX models
are three-node graphs that load in milliseconds.
"""

from __future__ import annotations

import gclf.runtime  # noqa: F401  (first: it sets OpenCV's decoder limits, read when cv2 loads, as every command does)

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

import picam_stand_in.picamera2 as stand_in
from gclf_testutil import build_tiny_onnx, write_image_file
from picam_stand_in.picamera2 import Picamera2 as FakePicamera2

pytest_plugins = ["own_process"]  # tests that load OpenVINO run in a process of their own


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """`write_image(path, array, params=())`: encode with OpenCV by the path's extension."""
    return write_image_file


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Callable[..., Path]:
    """`tiny_onnx(name="tiny.onnx", **build_tiny_onnx options)` -> path of a tiny ONNX model."""

    def make(name: str = "tiny.onnx", **options) -> Path:
        return build_tiny_onnx(tmp_path / "models" / name, **options)

    return make


# --- one tiny trained and exported run, shared by the end-to-end tests -------------------


@dataclass(frozen=True)
class TinyRun:
    data: Path  # generated shapes set: circles/ and squares/
    run_dir: Path  # gclf-train's --out
    fp32: Path
    int8: Path
    train_output: str
    export_output: str
    image_size: int  # --image-size
    per_class: int  # images per class in `data`
    calibration_size: int  # gclf-export --calibration-size


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """gclf-train (1 epoch, 64x64, random init) then gclf-export --quantize, both via their CLIs."""
    from click.testing import CliRunner

    from gclf.export.cli import main as export_main
    from gclf.train.cli import main as train_main
    from gclf.train.synthetic import make_shapes_dataset

    image_size, per_class, calibration_size = 64, 10, 8
    root = tmp_path_factory.mktemp("tiny-run")
    data = make_shapes_dataset(root / "data", per_class=per_class, grey_share=0.3, min_side=40, max_side=96)
    run_dir = root / "run"
    runner = CliRunner()
    train = runner.invoke(
        train_main,
        ["--data", str(data), "--out", str(run_dir), "--weights", "none", "--image-size", str(image_size),
         "--max-epochs", "1", "--batch-size", "8", "--device", "cpu", "--quiet"],
    )
    assert train.exit_code == 0, train.output
    # --force: a one-epoch toy with a 2-image test split cannot meet the 99% agreement gate
    # reliably; the gate itself is tested in test_quant_gate.py, and unforced on real photos.
    export = runner.invoke(export_main, [str(run_dir), "--quantize", "--force", "--calibration-size", str(calibration_size)])
    assert export.exit_code == 0, export.output
    return TinyRun(data, run_dir, run_dir / "model.onnx", run_dir / "model.int8.onnx", train.output, export.output, image_size, per_class, calibration_size)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """torch on one thread: float sums can depend on how work is split across threads, so
    runs that are compared bit for bit (or nearly) run on one."""
    import torch  # here, not at the top: the runtime's tests must not load torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _private_gclf_home(monkeypatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """$GCLF_HOME is the tests' own, never the user's ~/.cache/gclf (inherited by the
    processes tests start): the default face detector depends on what its face_models/
    holds (YuNet once downloaded: gclf.runtime.faces.default_face_model), which no test
    finds unless it puts it there, and gclf-train caches decoded images in its images/.
    Tests of either cache set $GCLF_HOME themselves."""
    monkeypatch.setenv("GCLF_HOME", str(tmp_path_factory.getbasetemp() / "gclf-home-empty"))


# --- the stand-in picamera2 -------------------------------------------------------------------


@pytest.fixture
def fake_picamera2(monkeypatch) -> Iterator[type[FakePicamera2]]:
    """The stand-in picamera2 (tests/picam_stand_in) in sys.modules, its knobs reset."""
    monkeypatch.setattr(FakePicamera2, "instances", [])
    monkeypatch.setattr(FakePicamera2, "scene_rgb", stand_in.RED_SCENE_RGB)
    for knob, value in (("fail_after", None), ("stall_after", None), ("ignore_timeout", False), ("interval_s", 0.002)):
        monkeypatch.setattr(FakePicamera2, knob, value)
    monkeypatch.setattr(FakePicamera2, "release", threading.Event())
    monkeypatch.setitem(sys.modules, "picamera2", stand_in)
    yield FakePicamera2
    FakePicamera2.release.set()  # captures left waiting "for ever" end with the test
