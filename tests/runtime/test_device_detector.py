"""On a device, a faces model runs with the detector it was trained with, or not at all.

At boot a service may have no network and no writable home; the recorded detector's file
must be found beside the model or in the cache (docs/raspberry-pi.md puts it there), and a
missing one is one sentence and exit 7, never a download attempt, never another detector.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from gclf.runtime.faces import models as face_models
from gclf.runtime.cli.infer import main
from gclf.runtime.errors import EXIT_WEIGHTS_UNAVAILABLE, WeightsUnavailableError
from gclf.runtime.faces.spec import FaceCropSpec
from gclf.runtime.faces.choice import resolve_face_detection
from gclf.runtime.files import sha256_file
from gclf.runtime.metadata import KEY_TRAINING
from gclf_testutil import SHARED

SHARED_YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
needs_yunet = pytest.mark.skipif(not SHARED_YUNET.is_file(), reason=f"needs {SHARED_YUNET}")


def _yunet_spec(sha256: str, model_file: str = "yunet.onnx") -> FaceCropSpec:
    return FaceCropSpec(kind="yunet", model_sha256=sha256, model_file=model_file, margin=0.1,
                        min_face_fraction=None, score_threshold=0.7, detect_max_side=320)


@pytest.fixture
def no_download(monkeypatch):
    """Fails the test if anything tries to download a face model."""

    def refuse(*args, **kwargs):
        raise AssertionError("a face model download was attempted")

    monkeypatch.setattr(face_models, "fetch_model", refuse)


@pytest.fixture
def read_only_cache(monkeypatch, tmp_path: Path) -> Path:
    """$GCLF_HOME where nothing can be created, even by root: below a regular file."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("GCLF_HOME", str(blocker / "gclf"))
    monkeypatch.setenv("GCLF_YUNET_URL", (tmp_path / "no-such-file.onnx").as_uri())  # never the internet
    return blocker / "gclf"


def test_a_recorded_yunet_that_is_not_the_pinned_file_is_never_replaced_by_it(no_download, read_only_cache, tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match=r"yunet\.onnx .*copy that file beside the model, or pass --face-model PATH"):
        resolve_face_detection(None, None, _yunet_spec("ab" * 32), model_dir=tmp_path, warn=print)


def test_the_pinned_yunet_is_not_downloaded_into_a_cache_that_cannot_be_written(no_download, read_only_cache, tmp_path: Path) -> None:
    spec = _yunet_spec(face_models.YUNET.sha256, face_models.YUNET.filename)
    with pytest.raises(WeightsUnavailableError, match="cannot be written") as caught:
        resolve_face_detection(None, None, spec, model_dir=tmp_path, warn=print)
    assert face_models.YUNET.filename in str(caught.value) and str(read_only_cache / "face_models") in str(caught.value)


def test_the_recorded_file_beside_the_model_is_used_with_no_network_and_no_cache(no_download, read_only_cache, tmp_path: Path) -> None:
    (tmp_path / "yunet.onnx").write_bytes(b"the detector")
    warnings: list[str] = []
    spec = _yunet_spec(sha256_file(tmp_path / "yunet.onnx"))

    assert resolve_face_detection(None, None, spec, model_dir=tmp_path, warn=warnings.append) == (tmp_path / "yunet.onnx", 0.1)
    assert warnings == []


def test_an_explicit_path_that_is_not_the_recorded_file_is_used_with_one_warning(tmp_path: Path) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another detector")
    warnings: list[str] = []

    chosen, _ = resolve_face_detection(other, None, _yunet_spec("ab" * 32), warn=warnings.append)

    assert chosen == other and len(warnings) == 1 and "other.onnx" in warnings[0]


def _faces_model(tiny_onnx, spec: FaceCropSpec) -> Path:
    training = {"input_kind": "faces", "face_crop": spec.to_dict()}
    return tiny_onnx("faces.onnx", props_update={KEY_TRAINING: json.dumps(training, sort_keys=True)})


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.full((48, 64, 3), 128, np.uint8))
    return path


def test_at_boot_a_missing_recorded_detector_is_one_sentence_and_exit_7(tiny_onnx, read_only_cache, photo: Path) -> None:
    model = _faces_model(tiny_onnx, _yunet_spec(face_models.YUNET.sha256, face_models.YUNET.filename))

    result = CliRunner().invoke(main, [str(model), str(photo)])

    assert result.exit_code == EXIT_WEIGHTS_UNAVAILABLE, result.output
    assert "Traceback" not in result.output and "downloading" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert face_models.YUNET.filename in line and "--face-model PATH" in line


@needs_yunet
def test_the_recorded_detector_beside_the_model_runs_offline(tiny_onnx, read_only_cache, photo: Path) -> None:
    model = _faces_model(tiny_onnx, _yunet_spec(sha256_file(SHARED_YUNET), SHARED_YUNET.name))
    shutil.copy(SHARED_YUNET, model.parent / SHARED_YUNET.name)

    result = CliRunner().invoke(main, [str(model), str(photo)])

    assert result.exit_code == 0, result.output
    assert "yunet detector" in result.stderr and "warning" not in result.stderr


def test_an_explicit_yunet_path_for_a_haar_model_is_used_with_one_warning(tmp_path: Path) -> None:
    other = tmp_path / "yunet.onnx"
    other.write_bytes(b"a detector")
    haar = FaceCropSpec(kind="haar", model_sha256="cd" * 32, model_file="haarcascade_frontalface_default.xml", margin=0.2,
                        min_face_fraction=0.08, score_threshold=None, detect_max_side=320)
    warnings: list[str] = []

    assert resolve_face_detection(other, None, haar, warn=warnings.append) == (other, 0.2)
    assert len(warnings) == 1 and "--face-model haar" in warnings[0]


# --- one trust rule for every detector file: the recorded one, wherever it is found ----------


def _planted(where: Path, case: str) -> None:
    """`where`/yunet.onnx as an attacker (or an accident) would leave it."""
    where.mkdir(parents=True, exist_ok=True)
    target = where / "yunet.onnx"
    if case == "another sha256":
        target.write_bytes(SHARED_YUNET.read_bytes() + b"\0")
    elif case == "symlink":
        real = where.parent / "elsewhere.onnx"
        shutil.copy(SHARED_YUNET, real)
        target.symlink_to(real)
    elif case == "folder writable by all":
        shutil.copy(SHARED_YUNET, target)
        where.chmod(0o777)
    elif case == "folder of another user":
        shutil.copy(SHARED_YUNET, target)
        import os

        os.chown(where, 4242, 4242)
    elif case == "fifo":
        import os

        os.mkfifo(target)


CASES = ["another sha256", "symlink", "folder writable by all", "folder of another user", "fifo"]


@needs_yunet
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("found_in", ["the cache", "beside the model"])
def test_the_recorded_detector_is_refused_by_the_same_checks_wherever_it_is_found(tiny_onnx, tmp_path: Path, monkeypatch, photo: Path, case: str, found_in: str) -> None:
    import os

    if case == "folder of another user" and os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    home = tmp_path / "home"
    monkeypatch.setenv("GCLF_HOME", str(home))
    monkeypatch.setenv("GCLF_YUNET_URL", (tmp_path / "no-such-file.onnx").as_uri())  # never the internet
    model = _faces_model(tiny_onnx, _yunet_spec(sha256_file(SHARED_YUNET)))
    _planted(home / "face_models" if found_in == "the cache" else model.parent, case)

    result = CliRunner().invoke(main, [str(model), str(photo)])

    assert result.exit_code == EXIT_WEIGHTS_UNAVAILABLE, result.output
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "yunet.onnx" in line or ("folder" in line or "cache" in line) and "other user" in line


@needs_yunet
def test_the_bytes_hashed_are_the_bytes_loaded(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    """A recorded file swapped after its check is never read again: the detector is made from
    the bytes that were hashed."""
    model = _faces_model(tiny_onnx, _yunet_spec(sha256_file(SHARED_YUNET)))
    shutil.copy(SHARED_YUNET, model.parent / "yunet.onnx")
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))

    chosen, _ = resolve_face_detection(None, None, _yunet_spec(sha256_file(SHARED_YUNET)), model_dir=model.parent, warn=print)
    (model.parent / "yunet.onnx").write_bytes(b"swapped after the check")

    assert face_models.model_bytes(chosen) == SHARED_YUNET.read_bytes()
    from gclf.runtime.faces.detectors import YuNetFaceDetector

    assert YuNetFaceDetector(chosen).detect(np.zeros((64, 64, 3), np.uint8)) == []


def test_a_faces_model_with_no_recorded_detector_says_once_that_haar_misses_faces(tiny_onnx, tmp_path: Path, monkeypatch, photo: Path) -> None:
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "empty-home"))  # YuNet not cached: Haar is the default
    model = tiny_onnx("faces.onnx", props_update={KEY_TRAINING: json.dumps({"input_kind": "faces"})})

    result = CliRunner().invoke(main, [str(model), str(photo), str(photo)])

    assert result.exit_code == 0, result.output
    assert result.stderr.count("misses many faces YuNet finds") == 1
    assert "--face-model yunet" in result.stderr
