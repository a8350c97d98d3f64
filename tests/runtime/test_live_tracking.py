"""Detection at the model's pace: the detector on every N-th frame, boxes tracked between.

A textured bright square moving across a dark frame is the face: a stand-in detector finds it
exactly (its bounding box of bright pixels) and counts its calls, so the tests know where the
face truly is on each frame and when the detector ran. Speed is never asserted here
(benchmarks/track_bench.py measures it).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import gclf.runtime.faces
from gclf.runtime.faces import models as face_models
from gclf.runtime.live.annotate import annotate
from gclf.runtime.classifier import Classifier, FaceResult
from gclf.runtime.cli.infer import main
from gclf.runtime.faces.models import ModelSource
from gclf.runtime.faces import HaarFaceDetector, YuNetFaceDetector, default_face_model, make_detector
from gclf.runtime.files import sha256_file
from gclf.runtime.live.frames import BOX_CARRIED, BOX_DETECTED, FrameResult
from gclf.runtime.live.loop import run_live
from gclf.runtime.live.sinks import JsonLinesSink
from gclf.runtime.live.carry import BoxCarrier
from gclf_testutil import ListFeed
from gclf_testutil import FACES_MODEL, SquareDetector
from gclf_testutil import SHARED

YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"

H, W = 240, 320
SIDE = 64  # the square's side in pixels
STEP = (5, 3)  # pixels per frame, x and y
_TEXTURE = cv2.resize(np.random.default_rng(0).integers(120, 256, (16, 16, 3), dtype=np.uint8), (SIDE, SIDE), interpolation=cv2.INTER_NEAREST)


def square_frame(x: int, y: int) -> np.ndarray:
    """A dark frame with the textured square's top-left corner at (x, y)."""
    frame = np.full((H, W, 3), 20, dtype=np.uint8)
    frame[y : y + SIDE, x : x + SIDE] = _TEXTURE
    return frame


def positions(n: int, start: tuple[int, int] = (20, 30)) -> list[tuple[int, int]]:
    return [(start[0] + STEP[0] * i, start[1] + STEP[1] * i) for i in range(n)]



def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


# --- the tracker ----------------------------------------------------------------------------


def test_carried_boxes_follow_a_moving_face() -> None:
    detector = SquareDetector()
    tracker = BoxCarrier(detector, detect_every=10)

    found = [tracker.faces(square_frame(x, y)) for x, y in positions(10)]

    assert detector.calls == 1  # only the first frame was detected; nine were carried
    for (x, y), faces in list(zip(positions(10), found))[1:]:
        (face,) = faces
        assert face.detected is False
        assert iou(face.box, (x, y, SIDE, SIDE)) > 0.8, (face.box, (x, y))
    # Without tracking the box would have stayed where it was detected: 9 steps behind.
    x, y = positions(10)[-1]
    assert iou(found[0][0].box, (x, y, SIDE, SIDE)) < 0.5


def test_the_detector_runs_again_on_every_nth_frame() -> None:
    detector = SquareDetector()
    tracker = BoxCarrier(detector, detect_every=3)

    flags = [tracker.faces(square_frame(x, y))[0].detected for x, y in positions(9)]

    assert flags == [True, False, False] * 3
    assert detector.calls == 3 and tracker.counts.detections == 3


def test_detect_every_1_detects_every_box_on_every_frame() -> None:
    detector = SquareDetector()
    tracker = BoxCarrier(detector, detect_every=1)

    found = [tracker.faces(square_frame(x, y)) for x, y in positions(5)]

    assert detector.calls == 5
    assert all(f.detected for faces in found for f in faces)
    assert [faces[0].box for faces in found] == [(x, y, SIDE, SIDE) for x, y in positions(5)]


def test_a_lost_track_is_detected_again_at_once() -> None:
    detector = SquareDetector()
    tracker = BoxCarrier(detector, detect_every=10)
    tracker.faces(square_frame(20, 30))
    tracker.faces(square_frame(25, 33))

    # The face jumps far away: its points do not follow, so this frame is detected, not due yet.
    (face,) = tracker.faces(square_frame(220, 150))

    assert face.detected is True and face.box == (220, 150, SIDE, SIDE)
    assert detector.calls == 2 and tracker.counts.lost == 1


def test_a_frame_without_a_face_makes_the_next_one_detected() -> None:
    detector = SquareDetector()
    tracker = BoxCarrier(detector, detect_every=10)

    assert tracker.faces(np.full((H, W, 3), 20, dtype=np.uint8)) == []
    (face,) = tracker.faces(square_frame(40, 40))  # a face comes into view

    assert face.detected is True and detector.calls == 2


def test_detect_every_below_1_is_refused() -> None:
    with pytest.raises(ValueError, match="detect_every"):
        BoxCarrier(SquareDetector(), detect_every=0)


# --- the loop's output ----------------------------------------------------------------------


def _json_lines(tiny_onnx, detect_every: int, n: int = 8) -> list[dict]:
    out = io.StringIO()
    feed = ListFeed([square_frame(x, y) for x, y in positions(n)])
    run_live(feed, Classifier(tiny_onnx()), detector=SquareDetector(), sinks=[JsonLinesSink(out)], detect_every=detect_every)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_json_says_which_boxes_were_detected_and_which_carried(tiny_onnx) -> None:
    records = _json_lines(tiny_onnx, detect_every=4)

    sources = [r["faces"][0]["box_source"] for r in records]
    assert sources == [BOX_DETECTED, BOX_CARRIED, BOX_CARRIED, BOX_CARRIED] * 2
    for r, (x, y) in zip(records, positions(8)):
        assert iou(r["faces"][0]["box"], (x, y, SIDE, SIDE)) > 0.8


def test_the_json_with_detect_every_1_has_every_box_detected(tiny_onnx) -> None:
    records = _json_lines(tiny_onnx, detect_every=1)

    assert [r["faces"][0]["box_source"] for r in records] == [BOX_DETECTED] * 8


def test_whole_frames_have_no_box_source(tiny_onnx) -> None:
    out = io.StringIO()
    run_live(ListFeed([square_frame(20, 30)]), Classifier(tiny_onnx()), detector=None, sinks=[JsonLinesSink(out)])

    (face,) = json.loads(out.getvalue())["faces"]
    assert "box_source" not in face


def test_a_carried_box_is_drawn_thinner() -> None:
    def green_pixels(detected: bool) -> int:
        image = np.zeros((H, W, 3), dtype=np.uint8)
        result = FrameResult(0, 0.0, (FaceResult((40, 40, 100, 100), "x", 0.9),), 10.0, (detected,))
        annotate(image, result)
        return int(np.count_nonzero((image[:, :, 1] > 150) & (image[:, :, 2] < 50)))

    assert 0 < green_pixels(False) < green_pixels(True)


# --- gclf-infer --detect-every --------------------------------------------------------------


@pytest.fixture
def square_video(tmp_path: Path) -> Path:
    path = tmp_path / "square.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for x, y in positions(6):
        writer.write(square_frame(x, y))
    writer.release()
    return path


@pytest.fixture
def square_detector(monkeypatch) -> None:
    """gclf-infer's detector is the stand-in (the command builds it with make_detector)."""
    monkeypatch.setattr(gclf.runtime.faces.detectors, "make_detector", lambda face_model: SquareDetector())


def _infer_json(tiny_onnx, video: Path, *options: str):
    model = tiny_onnx("faces.onnx", props_update=FACES_MODEL)
    return CliRunner().invoke(main, [str(model), "--video", str(video), "--headless", *options])


@pytest.mark.parametrize(("every", "expected"), [("1", ["detected"] * 6), ("3", ["detected", "carried", "carried"] * 2)])
def test_detect_every_sets_which_frames_are_detected(tiny_onnx, square_video: Path, square_detector, every: str, expected) -> None:
    result = _infer_json(tiny_onnx, square_video, "--detect-every", every)

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["faces"][0]["box_source"] for r in records] == expected


@pytest.mark.parametrize("every", ["0", "-2", "two"])
def test_detect_every_must_be_a_whole_number_from_1(tiny_onnx, square_video: Path, every: str) -> None:
    result = _infer_json(tiny_onnx, square_video, "--detect-every", every)

    assert result.exit_code == 2
    assert "--detect-every" in result.output and "Traceback" not in result.output


def test_detect_every_applies_to_live_sources_only(tiny_onnx, tmp_path: Path) -> None:
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), square_frame(10, 10))
    model = tiny_onnx("faces.onnx", props_update=FACES_MODEL)

    result = CliRunner().invoke(main, [str(model), str(photo), "--detect-every", "2"])

    assert result.exit_code == 2
    assert "--detect-every" in result.output and "live" in result.output


# --- the default detector -------------------------------------------------------------------


def _pinned_as(monkeypatch, file: Path) -> ModelSource:
    source = ModelSource(filename="yunet-test.onnx", url="file:///nowhere", sha256=sha256_file(file))
    monkeypatch.setattr(face_models, "YUNET", source)
    monkeypatch.delenv(face_models.URL_ENV, raising=False)
    return source


def test_the_default_is_haar_without_yunet_in_the_cache(monkeypatch, tmp_path: Path) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not yunet")
    _pinned_as(monkeypatch, other)
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))

    assert default_face_model() == "haar"
    assert isinstance(make_detector(None), HaarFaceDetector)


def test_the_default_is_the_cached_yunet_and_only_the_pinned_file(monkeypatch, tmp_path: Path) -> None:
    if not YUNET.is_file():
        pytest.skip(f"YuNet model not found at {YUNET}")
    source = _pinned_as(monkeypatch, YUNET)
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))
    cached = tmp_path / "home" / "face_models" / source.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(YUNET.read_bytes()[:-10])  # damaged: not the pinned file

    assert default_face_model() == "haar"

    cached.write_bytes(YUNET.read_bytes())
    assert default_face_model() == cached
    detector = make_detector(None)
    assert isinstance(detector, YuNetFaceDetector) and detector.path == cached
