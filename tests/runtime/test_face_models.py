"""`--face-model yunet`: the pinned YuNet file fetched once into a user cache, sha256 checked.

Never the internet: the download source is a local one, a file:// URL or an http.server on
127.0.0.1, serving the YuNet copy in ../shared/models (skipped with the reason when absent).
That copy is a later YuNet release than the pinned one, so tests that must succeed describe it
with a `ModelSource` of its own sha256; the pinned sha256 itself is what the refusals meet.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from click.testing import CliRunner, Result

from gclf.runtime.faces import models as face_models
from gclf.runtime.cli.infer import main
from gclf.runtime.errors import EXIT_WEIGHTS_UNAVAILABLE, WeightsUnavailableError
from gclf.runtime.faces.models import ModelSource, cache_dir, fetch_model
from gclf.runtime.faces import HaarFaceDetector, YuNetFaceDetector, make_detector
from gclf.runtime.files import sha256_file
from gclf_testutil import SHARED

YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
needs_yunet = pytest.mark.skipif(not YUNET.is_file(), reason=f"YuNet model not found at {YUNET}")


def _shared_source(url: str) -> ModelSource:
    return ModelSource(filename="yunet-test.onnx", url=url, sha256=sha256_file(YUNET), size=YUNET.stat().st_size)


def _files(folder: Path) -> list[str]:
    """Everything in `folder`, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An http.server on 127.0.0.1 serving ../shared/models: (base URL, paths requested)."""
    if not YUNET.is_file():
        pytest.skip(f"YuNet model not found at {YUNET}")
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(YUNET.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


@needs_yunet
def test_first_use_downloads_the_file_and_later_uses_reuse_the_cache(served, tmp_path: Path) -> None:
    base, requests = served
    source = _shared_source(f"{base}/{YUNET.name}")
    cache = tmp_path / "cache"
    messages: list[str] = []

    first = fetch_model(source, cache=cache, notify=messages.append)
    second = fetch_model(source, cache=cache, notify=messages.append)

    assert first == second == cache / "yunet-test.onnx"
    assert first.read_bytes() == YUNET.read_bytes()
    assert requests == [f"/{YUNET.name}"]  # one download, none the second time
    assert len(messages) == 1 and source.url in messages[0] and str(first) in messages[0]
    assert _files(cache) == ["yunet-test.onnx"]  # no temporary file left behind
    assert YuNetFaceDetector(first).detect(np.full((240, 320, 3), 90, np.uint8)) == []  # OpenCV loads it


@needs_yunet
def test_a_download_with_another_sha256_is_refused_and_nothing_is_cached(served, tmp_path: Path) -> None:
    base, _ = served
    cache = tmp_path / "cache"
    # The pinned 2023mar sha256 against the shared 2026may file: a real "wrong file" case.
    source = ModelSource(filename=face_models.YUNET.filename, url=f"{base}/{YUNET.name}", sha256=face_models.YUNET.sha256)

    with pytest.raises(WeightsUnavailableError) as info:
        fetch_model(source, cache=cache, notify=None)

    assert info.value.exit_code == EXIT_WEIGHTS_UNAVAILABLE
    message = str(info.value)
    assert sha256_file(YUNET) in message and face_models.YUNET.sha256 in message
    assert "not kept" in message and "--face-model PATH" in message
    assert _files(cache) == []


@needs_yunet
def test_a_damaged_cached_file_is_downloaded_again(tmp_path: Path) -> None:
    source = _shared_source(YUNET.as_uri())
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / source.filename).write_bytes(b"half a model")

    path = fetch_model(source, cache=cache, notify=None)

    assert sha256_file(path) == source.sha256


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/face.onnx", "file:///nonexistent/gclf/face.onnx"], ids=["refused", "missing"])
def test_offline_and_not_cached_says_what_to_do(tmp_path: Path, url: str) -> None:
    source = ModelSource(filename="face.onnx", url=url, sha256="0" * 64)
    cache = tmp_path / "cache"

    with pytest.raises(WeightsUnavailableError) as info:
        fetch_model(source, cache=cache, notify=None, timeout=5)

    message = str(info.value)
    assert "could not be downloaded" in message
    assert url in message and str(cache / "face.onnx") in message and "--face-model PATH" in message
    assert "\n" not in message
    assert _files(cache) == []


def test_the_cache_follows_gclf_home_then_xdg_cache_home_then_home(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "g"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "g" / "face_models"
    monkeypatch.delenv("GCLF_HOME")
    assert cache_dir() == tmp_path / "x" / "gclf" / "face_models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_dir() == tmp_path / "h" / ".cache" / "gclf" / "face_models"


def test_the_pinned_source_is_an_exact_upstream_file() -> None:
    # A pin to a moving branch or to raw.githubusercontent.com (which serves Git LFS pointers,
    # not the model) would break the sha256 check for every user.
    pinned = face_models.YUNET
    assert pinned.url.startswith("https://github.com/opencv/opencv_zoo/raw/")
    assert f"/raw/{face_models.YUNET_COMMIT}/" in pinned.url and len(face_models.YUNET_COMMIT) == 40
    assert pinned.url.endswith("/" + pinned.filename)
    assert len(pinned.sha256) == 64 and int(pinned.sha256, 16) >= 0


# --- through make_detector and gclf-infer --------------------------------------------------


@pytest.fixture
def shared_yunet_pinned(monkeypatch, tmp_path: Path) -> Path:
    """The shared YuNet copy as the pinned file, served by file://, cache in tmp_path."""
    if not YUNET.is_file():
        pytest.skip(f"YuNet model not found at {YUNET}")
    monkeypatch.setattr(face_models, "YUNET", _shared_source(YUNET.as_uri()))
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(face_models.URL_ENV, raising=False)
    return tmp_path / "home" / "face_models"


def test_make_detector_names(shared_yunet_pinned: Path) -> None:
    assert isinstance(make_detector(None), HaarFaceDetector)
    assert isinstance(make_detector("haar"), HaarFaceDetector)
    detector = make_detector("yunet")
    assert isinstance(detector, YuNetFaceDetector)
    assert detector.path == shared_yunet_pinned / "yunet-test.onnx"
    assert isinstance(make_detector(YUNET), YuNetFaceDetector)


def _infer_faces(tiny_onnx, video: Path, *options: str) -> Result:
    model = tiny_onnx("faces.onnx", props_update={"gclf.training": json.dumps({"input_kind": "faces"})})
    return CliRunner().invoke(main, [str(model), "--video", str(video), "--headless", "--max-frames", "2", *options])


@pytest.fixture
def grey_video(tmp_path: Path) -> Path:
    from gclf_testutil import write_video

    return write_video(tmp_path / "grey.avi", [(90, 90, 90)] * 3)


def test_cli_face_model_yunet_fetches_once_and_runs(tiny_onnx, grey_video: Path, shared_yunet_pinned: Path) -> None:
    first = _infer_faces(tiny_onnx, grey_video, "--face-model", "yunet")
    second = _infer_faces(tiny_onnx, grey_video, "--face-model", "yunet")

    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "faces (yunet detector)" in first.stderr
    assert first.stderr.count("downloading") == 1 and "downloading" not in second.stderr
    assert _files(shared_yunet_pinned) == ["yunet-test.onnx"]


def test_cli_face_model_haar_is_the_default_by_name(tiny_onnx, grey_video: Path) -> None:
    result = _infer_faces(tiny_onnx, grey_video, "--face-model", "haar")

    assert result.exit_code == 0, result.output
    assert "faces (haar detector)" in result.stderr


def test_cli_offline_and_not_cached_exits_7_with_one_sentence(tiny_onnx, grey_video: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(face_models.URL_ENV, (tmp_path / "absent.onnx").as_uri())

    result = _infer_faces(tiny_onnx, grey_video, "--face-model", "yunet")

    assert result.exit_code == EXIT_WEIGHTS_UNAVAILABLE
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--face-model PATH" in errors[0]
    assert "Traceback" not in result.output
    assert _files(tmp_path / "home" / "face_models") == []


@needs_yunet
def test_cli_refuses_a_mirror_that_serves_another_file(tiny_onnx, grey_video: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(face_models.URL_ENV, YUNET.as_uri())  # a YuNet, but not the pinned one

    result = _infer_faces(tiny_onnx, grey_video, "--face-model", "yunet")

    assert result.exit_code == EXIT_WEIGHTS_UNAVAILABLE
    assert f"is not {face_models.YUNET.filename}" in result.stderr
    assert _files(tmp_path / "home" / "face_models") == []


def test_cli_a_missing_face_model_path_is_a_usage_error(tiny_onnx, grey_video: Path, tmp_path: Path) -> None:
    result = _infer_faces(tiny_onnx, grey_video, "--face-model", str(tmp_path / "nope.onnx"))

    assert result.exit_code == 2
    assert "does not exist" in result.output


# --- the cache under attack ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_cache_folder_others_may_write_to_is_refused(tmp_path: Path, mode: int) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(mode)
    source = ModelSource(filename="face.onnx", url="file:///nonexistent", sha256="0" * 64)
    for use in (lambda: fetch_model(source, cache=cache, notify=None), lambda: face_models.cached_model_path(source, cache=cache)):
        with pytest.raises(WeightsUnavailableError, match=rf"^the face-model cache {cache} may be written by other users \(mode {mode:o}\): chmod go-w"):
            use()


def test_a_cache_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    import os

    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    if os.geteuid() != 0:
        pytest.skip("only root can give a folder to another user")
    os.chown(cache, 4242, -1)
    source = ModelSource(filename="face.onnx", url="file:///nonexistent", sha256="0" * 64)
    with pytest.raises(WeightsUnavailableError, match=r"belongs to another user \(uid 4242\).*GCLF_HOME"):
        face_models.cached_model_path(source, cache=cache)


@needs_yunet
def test_a_symlink_in_the_cache_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    source = _shared_source(YUNET.as_uri())
    (cache / source.filename).symlink_to(YUNET)  # the right bytes, but a link: whoever can change its target decides
    with pytest.raises(WeightsUnavailableError, match="is a symbolic link"):
        fetch_model(source, cache=cache, notify=None)


@needs_yunet
def test_the_bytes_that_were_hashed_are_the_bytes_loaded(tmp_path: Path) -> None:
    source = _shared_source(YUNET.as_uri())
    cache = tmp_path / "cache"
    path = fetch_model(source, cache=cache, notify=None)
    assert sha256_file(path) == source.sha256
    path.write_bytes(b"swapped after the check")  # as another process might
    detector = YuNetFaceDetector(path)  # loads what was checked, not what the path holds now
    assert detector.detect(np.full((240, 320, 3), 90, np.uint8)) == []
    assert face_models.cached_model_path(source, cache=cache) is None  # checked again: now damaged


@needs_yunet
def test_a_download_is_capped_in_size_and_in_time(served, tmp_path: Path, monkeypatch) -> None:
    base, _ = served
    source = _shared_source(f"{base}/{YUNET.name}")
    monkeypatch.setattr(face_models, "MAX_DOWNLOAD_BYTES", 10_000)
    with pytest.raises(WeightsUnavailableError, match="larger than 10000 bytes"):
        fetch_model(source, cache=tmp_path / "a", notify=None)
    assert _files(tmp_path / "a") == []
    monkeypatch.setattr(face_models, "MAX_DOWNLOAD_BYTES", 16 << 20)
    monkeypatch.setattr(face_models, "DOWNLOAD_DEADLINE_S", 0.0)  # over before the first read
    with pytest.raises(WeightsUnavailableError, match="not done within 0 s"):
        fetch_model(source, cache=tmp_path / "b", notify=None)
    assert _files(tmp_path / "b") == []
