"""benchmarks/scene_bench.py's own parts: the true box it places, and its one-to-one matching.

The benchmark's figures are only as good as its ground truth, so these check that the true box
of a placed face photo is where a detector finds the face in the frame, and that matching
neither double-counts a detection nor accepts one below the IoU threshold. Real photos and
YuNet come from ../shared (skipped with the reason when absent).
"""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from gclf_testutil import REPO, SHARED

ROOT = REPO
PHOTO = SHARED / "datasets" / "gender-faces" / "woman" / "face_1.jpg"
YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"


@pytest.fixture(scope="module")
def bench():
    from benchmarks import scene_bench  # the repository root is on pytest's pythonpath

    return scene_bench


def test_iou_and_matching_are_one_to_one_and_thresholded(bench) -> None:
    truth = [(0, 0, 100, 100), (300, 300, 50, 50)]
    found = [(10, 0, 100, 100), (5, 5, 100, 100), (300, 300, 20, 20)]

    assert bench.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert bench.iou((0, 0, 10, 10), (20, 20, 10, 10)) == 0.0
    assert bench.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    # The best pair first, and each detection at most once: the second box on face 0 is left over.
    assert bench.match(truth, found, 0.5) == {0: 1}
    assert bench.match(truth, found, 0.1) == {0: 1, 1: 2}


@pytest.mark.realdata
@pytest.mark.skipif(not (PHOTO.is_file() and YUNET.is_file()), reason=f"needs {PHOTO} and {YUNET}")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_true_box_is_where_the_detector_finds_the_face_in_the_scene(bench, seed: int) -> None:
    from gclf.runtime.faces import YuNetFaceDetector, find_faces

    reference = YuNetFaceDetector(YUNET, max_side=1024)
    bgr = cv2.imread(str(PHOTO))
    ref = bench.reference_box(bgr, reference)
    assert ref is not None
    photo = bench.Photo(PHOTO, "woman", "gender-faces")
    rng, nprng = random.Random(seed), np.random.default_rng(seed)

    scene = bench.make_scene([(photo, bgr, ref)], rng, nprng, None)

    (placed,) = scene.faces
    assert scene.bgr.shape == (bench.FRAME_H, bench.FRAME_W, 3)
    found = find_faces(YuNetFaceDetector(YUNET, max_side=1024), scene.bgr).boxes
    assert max(bench.iou(placed.box, f) for f in found) >= 0.7, (placed.box, found)


@pytest.mark.skipif(not YUNET.is_file(), reason=f"needs {YUNET}")
def test_a_photo_without_a_face_gets_no_true_box(bench) -> None:
    # Such a photo is left out of the scenes: a made-up box would count as a detector's miss.
    from gclf.runtime.faces import YuNetFaceDetector

    reference = YuNetFaceDetector(YUNET, max_side=1024)
    plain = np.full((200, 160, 3), 120, np.uint8)

    assert bench.reference_box(plain, reference) is None
