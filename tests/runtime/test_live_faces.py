"""Face detection before classification: Haar (bundled) and YuNet find a real face, crops go
through the preprocessing contract, several faces are classified in one batch.

Real photos come from ../shared/datasets/gender-faces and the YuNet model from
../shared/models; each test that needs them is skipped with the reason when they are absent.
The photos are tight face crops, so they are pasted into a larger grey frame, as a face
appears in a camera's picture.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from gclf.runtime.classifier import Classifier
from gclf.runtime.faces import HaarFaceDetector, YuNetFaceDetector, expand_box, face_crops, find_faces
from gclf_testutil import SHARED

DATASET = SHARED / "datasets" / "gender-faces"
YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
FACE_PHOTOS = ("man/face_0.jpg", "woman/face_1.jpg")  # frontal faces both detectors find
FACES_MODEL = {"gclf.training": json.dumps({"input_kind": "faces"})}  # tiny_onnx(props_update=...)

needs_photos = pytest.mark.skipif(not DATASET.is_dir(), reason=f"real photos not found at {DATASET}")
needs_yunet = pytest.mark.skipif(not YUNET.is_file(), reason=f"YuNet model not found at {YUNET}")

FRAME_HW = (480, 640)
FACE_TOP_LEFT = (120, 200)  # y, x of the pasted photo
FACE_HEIGHT = 240


def _frame_with_face(photo: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A grey 640x480 BGR frame with the photo pasted in; and the photo's box (x, y, w, h)."""
    path = DATASET / photo
    if not path.is_file():
        pytest.skip(f"{path} not found")
    face = cv2.imread(str(path))
    width = round(face.shape[1] * FACE_HEIGHT / face.shape[0])
    frame = np.full((*FRAME_HW, 3), 90, dtype=np.uint8)
    y, x = FACE_TOP_LEFT
    frame[y : y + FACE_HEIGHT, x : x + width] = cv2.resize(face, (width, FACE_HEIGHT), interpolation=cv2.INTER_AREA)
    return frame, (x, y, width, FACE_HEIGHT)


def _centre_inside(box, region) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    x, y, w, h = region
    return x <= cx <= x + w and y <= cy <= y + h


def _detectors():
    return [pytest.param("haar", id="haar"), pytest.param("yunet", id="yunet", marks=needs_yunet)]


def _make(name: str):
    return HaarFaceDetector() if name == "haar" else YuNetFaceDetector(YUNET)


@needs_photos
@pytest.mark.realdata
@pytest.mark.parametrize("detector_name", _detectors())
@pytest.mark.parametrize("photo", FACE_PHOTOS)
def test_the_detector_finds_the_face_in_a_real_photo(detector_name: str, photo: str) -> None:
    frame, region = _frame_with_face(photo)

    boxes = find_faces(_make(detector_name), frame).boxes

    assert len(boxes) == 1, boxes
    assert _centre_inside(boxes[0], region)
    assert boxes[0][2] > 0.4 * region[2]  # a face-sized box, not a speck


@pytest.mark.parametrize("detector_name", _detectors())
def test_no_face_in_a_plain_frame(detector_name: str) -> None:
    assert find_faces(_make(detector_name), np.full((*FRAME_HW, 3), 90, dtype=np.uint8)) == ([], 0)


@needs_photos
@pytest.mark.realdata
def test_a_large_frame_is_detected_on_a_smaller_copy_and_boxes_come_back_in_frame_pixels() -> None:
    frame, region = _frame_with_face(FACE_PHOTOS[0])
    big = cv2.resize(frame, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)  # 1920x1440

    (box,) = find_faces(HaarFaceDetector(), big).boxes

    assert _centre_inside(box, tuple(3 * v for v in region))


@needs_photos
@pytest.mark.realdata
@pytest.mark.parametrize("detector_name", _detectors())
def test_the_live_loop_classifies_face_crops_of_a_real_video(detector_name: str, tiny_onnx, tmp_path: Path) -> None:
    from gclf.runtime.cli.infer import main

    frame, region = _frame_with_face(FACE_PHOTOS[1])
    video = tmp_path / "face.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (FRAME_HW[1], FRAME_HW[0]))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    model = tiny_onnx("faces.onnx", props_update={"gclf.training": json.dumps({"input_kind": "faces"})})
    extra = ["--face-model", str(YUNET)] if detector_name == "yunet" else []

    result = CliRunner().invoke(main, [str(model), "--video", str(video), "--headless", *extra])

    assert result.exit_code == 0, result.output
    assert f"classifying faces ({detector_name} detector)" in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 3
    for record in records:
        (face,) = record["faces"]
        assert _centre_inside(face["box"], region)
        assert face["label"] in ("red", "blue")


def test_expand_box_adds_the_margin_and_stays_inside_the_frame() -> None:
    assert expand_box((100, 100, 50, 40), (480, 640), 0.2) == (90, 92, 70, 56)
    assert expand_box((0, 5, 50, 40), (60, 60), 0.5) == (0, 0, 60, 60)


def test_crops_are_rgb_and_cover_the_widened_box() -> None:
    frame = np.zeros((100, 100, 3), dtype=np.uint8)
    frame[:, :, 2] = 200  # red, in BGR

    (crop,) = face_crops(frame, [(40, 40, 20, 20)], 0.5)

    assert crop.shape == (40, 40, 3)
    assert crop[0, 0].tolist() == [200, 0, 0]  # RGB


class TwoFaces:
    """A stand-in detector: a red face on the left half, a blue one on the right."""

    name = "fake"

    def detect(self, bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        return [(10, 10, 30, 30), (60, 10, 30, 30)]


def test_several_faces_are_classified_in_one_batch_through_the_preprocessing_contract(tiny_onnx, monkeypatch) -> None:
    frame = np.zeros((50, 100, 3), dtype=np.uint8)
    frame[:, :50] = (0, 0, 220)  # BGR red
    frame[:, 50:] = (220, 0, 0)  # BGR blue
    clf = Classifier(tiny_onnx(props_update=FACES_MODEL))
    calls: list[int] = []
    original = clf.predict_input
    monkeypatch.setattr(clf, "predict_input", lambda batch: calls.append(len(batch)) or original(batch))

    faces = clf.predict_faces(frame, color="bgr", detector=TwoFaces(), margin=0.1)

    assert calls == [2]  # one inference call for both faces
    assert [f.label for f in faces] == ["red", "blue"]
    assert [f.box for f in faces] == [(10, 10, 30, 30), (60, 10, 30, 30)]  # boxes as detected, without the margin


def test_a_frame_without_faces_is_not_classified(tiny_onnx) -> None:
    clf = Classifier(tiny_onnx(props_update=FACES_MODEL))

    class NoFaces:
        name = "none"

        def detect(self, bgr: np.ndarray) -> list:
            return []

    assert clf.predict_faces(np.zeros((20, 20, 3), dtype=np.uint8), color="bgr", detector=NoFaces()) == []


def test_a_missing_face_model_file_is_a_usage_error(tmp_path: Path) -> None:
    from gclf.runtime.errors import UsageError

    with pytest.raises(UsageError, match="no such face model file"):
        YuNetFaceDetector(tmp_path / "absent.onnx")


@pytest.mark.parametrize("detector", [None, TwoFaces()], ids=["whole-frame", "faces"])
def test_live_preparation_is_bit_identical_to_the_preprocessing_contract(detector, tiny_onnx) -> None:
    # The live path resizes before swapping BGR->RGB (cheaper); it must equal the contract's
    # order (swap, then resize_to_input, then to_model_input) exactly, on an odd-sized frame.
    from gclf.runtime.live.loop import prepare_frame
    from gclf.runtime.preprocess import preprocess_batch
    from gclf.runtime.live.sources import Frame

    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, size=(97, 131, 3), dtype=np.uint8)
    spec = Classifier(tiny_onnx()).spec

    prepared = prepare_frame(Frame(0, 0.0, bgr), spec, detector, margin=0.1)

    if detector is None:
        expected = preprocess_batch([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)], spec)
    else:
        expected = preprocess_batch(face_crops(bgr, find_faces(detector, bgr).boxes, 0.1), spec)
    assert prepared.batch.dtype == np.float32
    assert np.array_equal(prepared.batch, expected)
