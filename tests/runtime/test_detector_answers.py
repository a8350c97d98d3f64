"""A face detector's answer is checked before it is used, in every path of the runtime.

A detector is a network: it can answer NaN, infinity, empty or inverted boxes, boxes outside
the frame and scores that are not probabilities. `find_faces` keeps only usable boxes and
counts what it drops. A stand-in detector (gclf_testutil.UntrustworthyDetector) gives one
good face among eleven such entries, through the live loop, the files job, the Python API and
YuNet's own parsing; training's crops and export's calibration are in tests/train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gclf.runtime.classifier import Classifier
from gclf.runtime.cli import files_job
from gclf.runtime.faces import YuNetFaceDetector, check_answer, find_faces
from gclf.runtime.live.loop import run_live
from gclf_testutil import FACES_MODEL, SHARED, ListFeed, UntrustworthyDetector

YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
FRAME_HW = (48, 64)
BAD = UntrustworthyDetector.BAD_PER_ANSWER


def _frames(n: int) -> list[np.ndarray]:
    return [np.full((*FRAME_HW, 3), (0, 0, 220), dtype=np.uint8) for _ in range(n)]


def test_only_usable_boxes_come_through_and_the_rest_are_counted() -> None:
    found = find_faces(UntrustworthyDetector(), _frames(1)[0])
    assert found.boxes == [UntrustworthyDetector.good_box(FRAME_HW)]
    assert found.dropped == BAD
    assert all(isinstance(v, int) for v in found.boxes[0])


@pytest.mark.parametrize(
    ("entry", "box"),
    [
        ((-10.0, -10.0, 30.0, 30.0), (0, 0, 20, 20)),  # partly outside: clipped to the frame
        ((60.0, 40.0, 100.0, 100.0), (60, 40, 4, 8)),
        ((1.4, 2.6, 10.2, 9.9), (1, 3, 11, 9)),  # whole pixels
        (np.array([3, 4, 5, 6], np.int32), (3, 4, 5, 6)),  # an OpenCV row
        ((3.0, 4.0, 5.0, 6.0, 0.0), (3, 4, 5, 6)),  # a score of 0 or 1 is a probability
        ((3.0, 4.0, 5.0, 6.0, 1.0), (3, 4, 5, 6)),
        ((0.0, 0.0, 1e308, 1e308), (0, 0, 64, 48)),  # finite, whose ends are not: the whole frame
    ],
)
def test_usable_boxes_are_clipped_and_rounded(entry, box) -> None:
    assert check_answer([entry], FRAME_HW) == ([box], 0)


def test_boxes_beyond_any_frame_are_dropped_without_overflowing() -> None:
    assert check_answer([(1e308, 0.0, 1e308, 10.0), (-1e308, -1e308, 1.0, 1.0)], FRAME_HW) == ([], 2)


def test_no_answer_is_no_face() -> None:
    assert check_answer(None, FRAME_HW) == ([], 0)
    assert check_answer((), FRAME_HW) == ([], 0)
    assert check_answer(np.empty((0, 4)), FRAME_HW) == ([], 0)


def test_the_live_loop_uses_only_the_good_face_and_its_summary_counts_the_rest(tiny_onnx) -> None:
    class Recording:
        needs_image = False

        def __init__(self) -> None:
            self.results = []

        def write(self, result, annotated) -> bool:
            self.results.append(result)
            return True

        def close(self) -> None:
            pass

    detector, sink = UntrustworthyDetector(), Recording()
    summary = run_live(ListFeed(_frames(4)), Classifier(tiny_onnx(props_update=FACES_MODEL)), detector=detector, sinks=[sink], detect_every=1)

    assert summary.processed == 4 and detector.calls == 4
    assert [[face.box for face in r.faces] for r in sink.results] == [[UntrustworthyDetector.good_box(FRAME_HW)]] * 4
    assert summary.detector_dropped == 4 * BAD
    assert f"{4 * BAD} detector answers dropped" in summary.line()


def test_the_live_loop_counts_answers_dropped_between_tracked_frames_too(tiny_onnx) -> None:
    detector = UntrustworthyDetector()
    summary = run_live(ListFeed(_frames(6)), Classifier(tiny_onnx(props_update=FACES_MODEL)), detector=detector, sinks=[], detect_every=3)
    assert summary.detector_dropped == detector.calls * BAD and detector.calls >= 2


def test_files_use_only_the_good_face_and_the_summary_counts_the_rest(tiny_onnx, tmp_path: Path, write_image, capsys) -> None:
    photos = [write_image(tmp_path / f"{i}.png", frame) for i, frame in enumerate(_frames(3))]
    clf = Classifier(tiny_onnx(props_update=FACES_MODEL))

    results = list(clf.predict_files(photos, faces=True, detector=UntrustworthyDetector()))
    assert [[face.box for face in r.faces] for r in results] == [[UntrustworthyDetector.good_box(FRAME_HW)]] * 3
    assert [r.detector_dropped for r in results] == [BAD] * 3

    opts = files_job.FileOptions(faces=True, face_model=None, face_margin=0.0, if_no_face=None, batch_size=4, as_json=True)
    assert files_job._print_faces(clf, photos, opts, UntrustworthyDetector()) == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{3 * BAD} detector answers dropped" in summary, summary


def test_a_photo_whose_answer_holds_nothing_usable_is_a_photo_without_a_face(tiny_onnx, tmp_path: Path, write_image) -> None:
    photo = write_image(tmp_path / "a.png", _frames(1)[0])
    clf = Classifier(tiny_onnx(props_update=FACES_MODEL))
    (result,) = clf.predict_files([photo], faces=True, detector=UntrustworthyDetector(good=False), no_face="whole")
    assert result.faces == () and result.fallback == "whole_image" and result.detector_dropped == BAD
    assert clf.predict_faces(photo, detector=UntrustworthyDetector(good=False)) == []


def test_the_python_api_uses_only_the_good_face(tiny_onnx) -> None:
    clf = Classifier(tiny_onnx(props_update=FACES_MODEL))
    faces = clf.predict_faces(_frames(1)[0], color="bgr", detector=UntrustworthyDetector())
    assert [face.box for face in faces] == [UntrustworthyDetector.good_box(FRAME_HW)]


@pytest.mark.skipif(not YUNET.is_file(), reason=f"needs {YUNET}")
def test_yunet_rows_with_bad_boxes_or_scores_are_dropped() -> None:
    """YuNet's own answer (rows of box, landmarks, score) reaches find_faces with its score."""

    class StandInNet:  # cv2.FaceDetectorYN's detect(), answering what a misbehaving network might
        def setInputSize(self, size) -> None:
            pass

        def detect(self, image):
            rows = np.zeros((5, 15), np.float32)
            rows[:, :4] = (8, 6, 20, 16)
            rows[:, 14] = 0.9
            rows[1, 0] = np.nan
            rows[2, 2] = np.inf
            rows[3, 14] = np.nan  # the box is fine, the score is not
            rows[4, 14] = 7.0
            return 1, rows

    detector = YuNetFaceDetector(YUNET)
    detector._net = StandInNet()
    assert find_faces(detector, _frames(1)[0]) == ([(8, 6, 20, 16)], 4)
