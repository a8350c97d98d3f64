"""The detector a faces model needs travels with it: gclf-export copies the recorded YuNet file
beside the model, and a copy of the export folder runs on a machine with an empty cache and no
network, under the one trust rule (a tampered copy is exit 7). A faces model that records no
detector says once per run that Haar finds far fewer faces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from gclf.runtime.cli.infer import main as infer_main
from gclf.runtime.errors import EXIT_WEIGHTS_UNAVAILABLE
from gclf.runtime.faces import models as face_models
from gclf.runtime.faces.choice import resolve_face_detection
from gclf.runtime.files import sha256_file
from gclf.runtime.metadata import ModelMetadata
from gclf.runtime.evaluation.model_card import CARD_NAME
from gclf.runtime.onnx_metadata import read_metadata
from gclf_testutil import FACES_MODEL, SHARED, write_video

YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"


@pytest.fixture(scope="module")
def faces_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A faces stand-in: gclf-train --input-kind faces --face-crop YUNET (1 epoch, 32 px) on
    generated shapes (no face in them: each photo is kept whole), then gclf-export."""
    if not YUNET.is_file():
        pytest.skip(f"needs {YUNET}")
    from gclf.export.cli import main as export_main
    from gclf.train.cli import main as train_main
    from gclf.train.synthetic import make_shapes_dataset

    root = tmp_path_factory.mktemp("faces-export")
    data = make_shapes_dataset(root / "data", per_class=6, min_side=40, max_side=64)
    run = root / "run"
    train = CliRunner().invoke(train_main, [str(a) for a in (
        "--data", data, "--out", run, "--weights", "none", "--image-size", "32", "--max-epochs", "1", "--batch-size", "8",
        "--device", "cpu", "--quiet", "--input-kind", "faces", "--face-crop", YUNET)])
    assert train.exit_code == 0, train.output
    export = CliRunner().invoke(export_main, [str(run)])
    assert export.exit_code == 0, export.output
    return run, export.output


@pytest.fixture
def device(faces_export, tmp_path: Path, monkeypatch) -> Path:
    """The export folder copied to a "device": an empty home and cache, no download possible."""
    run, _ = faces_export
    folder = tmp_path / "device"
    folder.mkdir(mode=0o755)
    for name in ("model.onnx", YUNET.name, CARD_NAME):
        shutil.copy(run / name, folder / name)
    for var, sub in (("HOME", "home"), ("XDG_CACHE_HOME", "cache"), ("GCLF_HOME", "cache/gclf")):
        monkeypatch.setenv(var, str(tmp_path / sub))

    def refuse(*args, **kwargs):
        raise AssertionError("a face model download was attempted")

    monkeypatch.setattr(face_models, "fetch_model", refuse)
    return folder


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.full((48, 64, 3), 128, np.uint8))
    return path


def test_export_copies_the_recorded_detector_beside_the_model(faces_export) -> None:
    run, output = faces_export
    recorded = ModelMetadata.from_props(read_metadata(run / "model.onnx")).face_crop

    assert recorded is not None and recorded.model_file == YUNET.name
    assert sha256_file(run / YUNET.name) == recorded.model_sha256 == sha256_file(YUNET)
    assert f"face detector: {run / YUNET.name}" in output
    card = (run / CARD_NAME).read_text()
    assert f"yunet `{YUNET.name}`" in card and "a copy lies beside the model" in card
    assert json.loads(read_metadata(run / "model.onnx")["gclf.card"])["face_detector"]["model_sha256"] == recorded.model_sha256


def test_a_copy_of_the_export_folder_runs_with_its_own_detector_and_an_empty_cache(device: Path, photo: Path) -> None:
    recorded = ModelMetadata.from_props(read_metadata(device / "model.onnx")).face_crop

    chosen, _ = resolve_face_detection(None, None, recorded, model_dir=device, warn=print)
    result = CliRunner().invoke(infer_main, [str(device / "model.onnx"), str(photo)])

    assert chosen == device / YUNET.name
    assert result.exit_code == 0, result.output
    assert "yunet detector" in result.stderr and "warning" not in result.stderr


def test_a_tampered_bundled_detector_is_exit_7(device: Path, photo: Path) -> None:
    data = bytearray((device / YUNET.name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (device / YUNET.name).write_bytes(bytes(data))

    result = CliRunner().invoke(infer_main, [str(device / "model.onnx"), str(photo)])

    assert result.exit_code == EXIT_WEIGHTS_UNAVAILABLE, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert f"{YUNET.name} is not the detector the model was trained with" in line and "Traceback" not in result.output


def test_an_export_whose_detector_cannot_be_found_says_what_a_device_needs(faces_export, tmp_path: Path, monkeypatch) -> None:
    from gclf.export.detector_bundle import bundle_detector

    run, _ = faces_export
    model = Path(shutil.copy(run / "model.onnx", tmp_path / "model.onnx"))
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "empty"))
    lines: list[str] = []

    assert bundle_detector(model, str(tmp_path / "gone.onnx"), lines.append) is False
    assert not (tmp_path / YUNET.name).exists()
    assert len(lines) == 1 and lines[0].startswith("warning:") and YUNET.name in lines[0]


# --- a faces model with no recorded detector: one line per run, not per frame ------------------


def test_no_recorded_detector_is_one_line_per_live_run(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "empty-home"))  # YuNet not cached: Haar
    model = tiny_onnx("faces.onnx", props_update=FACES_MODEL)
    video = write_video(tmp_path / "clip.avi", [(128, 128, 128)] * 12)

    result = CliRunner().invoke(infer_main, [str(model), "--video", str(video), "--headless"])

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 12  # twelve frames...
    assert result.stderr.count("misses many faces YuNet finds") == 1  # ...one line
    assert "--face-model yunet" in result.stderr
