"""Faces on photo files: `gclf-infer MODEL PHOTOS` with a faces model, and the Python API's
`Classifier.predict_files(faces=True)`, detect each photo's faces and classify every one.

Most tests use the tiny hand-built model (class "red" scores the red channel, "blue" the blue
one) and a stand-in detector that calls every strongly coloured patch a face, so boxes and
labels are known. The last tests use real face photos from ../shared/datasets/gender-faces
pasted onto a larger picture, with OpenCV's Haar cascade and YuNet, and are skipped with the
reason where ../shared is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

import gclf.runtime.faces
from gclf.runtime.classifier import NO_FACE_ACTIONS, Classifier
from gclf.runtime.cli.infer import NO_FACE_ACTIONS as CLI_NO_FACE_ACTIONS
from gclf.runtime.cli.infer import main
from gclf.runtime.errors import EXIT_PARTIAL, EXIT_USAGE
from gclf_testutil import write_image_file
from gclf_testutil import SHARED

FACES_MODEL = {"gclf.training": json.dumps({"input_kind": "faces"})}  # tiny_onnx(props_update=...)
DATASET = SHARED / "datasets" / "gender-faces"
YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"

BLUE, RED, DIM_BLUE = (230, 30, 30), (30, 30, 230), (90, 50, 50)  # BGR


class ColouredPatches:
    """A stand-in face detector: every strongly coloured patch (connected) is a face."""

    name = "patches"

    def detect(self, bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        vivid = (bgr.max(axis=2).astype(int) - bgr.min(axis=2)) > 100
        n, _, stats, _ = cv2.connectedComponentsWithStats(vivid.astype(np.uint8))
        return sorted(tuple(int(v) for v in stats[i, :4]) for i in range(1, n))  # left to right


def _picture(patches: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]], background=(0, 0, 0)) -> np.ndarray:
    image = np.zeros((60, 90, 3), dtype=np.uint8)
    image[:] = background
    for (x, y, w, h), colour in patches:
        image[y : y + h, x : x + w] = colour
    return image


SMALL_BLUE, LARGE_RED = (5, 5, 12, 12), (40, 10, 40, 40)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_image_file(folder / "a_two.png", _picture([(SMALL_BLUE, BLUE), (LARGE_RED, RED)]))
    write_image_file(folder / "b_none.png", _picture([], background=DIM_BLUE))  # no vivid patch: no face
    write_image_file(folder / "c_one.png", _picture([((10, 10, 20, 20), BLUE)]))
    return folder


@pytest.fixture
def faces_model(tiny_onnx) -> Path:
    return tiny_onnx("faces.onnx", props_update=FACES_MODEL)


@pytest.fixture
def patches_detector(monkeypatch) -> None:
    """gclf-infer's detector is the stand-in (the command builds it with make_detector)."""
    monkeypatch.setattr(gclf.runtime.faces.detectors, "make_detector", lambda face_model: ColouredPatches())


def _infer(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _by_name(results) -> dict:
    return {r.path.name: r for r in results}


# --- the Python API ------------------------------------------------------------------------


def test_every_face_of_every_photo_is_classified_largest_first(faces_model: Path, photos: Path) -> None:
    clf = Classifier(faces_model)

    results = _by_name(clf.predict_files(sorted(photos.iterdir()), faces=True, detector=ColouredPatches()))

    two = results["a_two.png"]
    assert [(f.box, f.label) for f in two.faces] == [(LARGE_RED, "red"), (SMALL_BLUE, "blue")]
    assert two.prediction is None and two.error is None and two.fallback is None
    assert [(f.box, f.label) for f in results["c_one.png"].faces] == [((10, 10, 20, 20), "blue")]
    assert all(f.confidence == f.probabilities[f.label] > 0.5 for f in two.faces)


def test_a_photo_without_a_face_is_classified_whole_by_default(faces_model: Path, photos: Path) -> None:
    clf = Classifier(faces_model)
    files = sorted(photos.iterdir())

    none = _by_name(clf.predict_files(files, faces=True, detector=ColouredPatches()))["b_none.png"]
    whole = _by_name(clf.predict_files(files))["b_none.png"]  # no detection: the whole image

    assert none.faces == () and none.fallback == "whole_image"
    assert none.prediction == whole.prediction  # the same preprocessing and answer as --no-faces
    assert none.prediction.label == "blue"


def test_a_photo_without_a_face_can_be_left_unclassified(faces_model: Path, photos: Path) -> None:
    clf = Classifier(faces_model)

    results = _by_name(clf.predict_files(sorted(photos.iterdir()), faces=True, detector=ColouredPatches(), no_face="skip"))

    none = results["b_none.png"]
    assert none.faces == () and none.prediction is None and none.error is None
    assert none.fallback == "none"
    assert len(results["a_two.png"].faces) == 2  # the others are unaffected


def test_all_faces_of_a_batch_of_photos_go_through_one_inference_call(faces_model: Path, photos: Path, monkeypatch) -> None:
    clf = Classifier(faces_model)
    calls: list[int] = []
    original = clf.predict_input
    monkeypatch.setattr(clf, "predict_input", lambda batch: calls.append(len(batch)) or original(batch))

    list(clf.predict_files(sorted(photos.iterdir()), faces=True, detector=ColouredPatches(), batch_size=16))

    assert calls == [4]  # 2 + 1 faces and the faceless photo's whole image


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_results_do_not_depend_on_the_batch_size(faces_model: Path, photos: Path, batch_size: int) -> None:
    clf = Classifier(faces_model)
    files = sorted(photos.iterdir()) * 2

    results = list(clf.predict_files(files, faces=True, detector=ColouredPatches(), batch_size=batch_size))
    reference = list(clf.predict_files(files, faces=True, detector=ColouredPatches(), batch_size=64))

    assert [r.path for r in results] == files  # in input order
    assert [(r.faces, r.prediction) for r in results] == [(r.faces, r.prediction) for r in reference]


def test_predict_faces_on_an_array_agrees_with_the_file_path(faces_model: Path, photos: Path) -> None:
    clf = Classifier(faces_model)
    files = sorted(photos.iterdir())
    by_file = _by_name(clf.predict_files(files, faces=True, detector=ColouredPatches(), margin=0.2))

    for path in files:
        bgr = cv2.imread(str(path))
        assert clf.predict_faces(bgr, color="bgr", detector=ColouredPatches(), margin=0.2) == list(by_file[path.name].faces)


def test_the_margin_widens_the_crop_not_the_reported_box(faces_model: Path, photos: Path) -> None:
    clf = Classifier(faces_model)
    files = [photos / "a_two.png"]

    tight = next(clf.predict_files(files, faces=True, detector=ColouredPatches(), margin=0.0))
    wide = next(clf.predict_files(files, faces=True, detector=ColouredPatches(), margin=0.5))

    assert [f.box for f in wide.faces] == [f.box for f in tight.faces]
    # The widened crop takes in black background: the face's colour weighs less.
    assert wide.faces[0].confidence < tight.faces[0].confidence


def test_an_unknown_no_face_action_is_refused(faces_model: Path, photos: Path) -> None:
    with pytest.raises(ValueError, match="no_face"):
        list(Classifier(faces_model).predict_files([photos / "a_two.png"], faces=True, no_face="guess"))


def test_the_command_offers_the_librarys_no_face_actions() -> None:
    assert CLI_NO_FACE_ACTIONS == NO_FACE_ACTIONS


# --- gclf-infer ----------------------------------------------------------------------------


def test_the_table_has_a_row_per_face_and_says_when_no_face_was_found(faces_model, photos: Path, patches_detector) -> None:
    result = _infer(faces_model, photos)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["image", "face", "box", "x,y,w,h", "label", "confidence"]
    rows = [(Path(line.split()[0]).name, *line.split()[1:]) for line in lines[1:]]
    assert [r[:4] for r in rows if r[1] != "-"] == [
        ("a_two.png", "1", "40,10,40,40", "red"),
        ("a_two.png", "2", "5,5,12,12", "blue"),
        ("c_one.png", "1", "10,10,20,20", "blue"),
    ]
    (none,) = [line for line in lines if "b_none.png" in line]
    assert "no face found (whole image: blue " in none
    assert "3 read, 0 skipped: 3 faces classified, 1 photo without a face (classified as whole images)" in result.stderr
    assert "patches detector, margin 0" in result.stderr


def test_json_gives_each_photos_faces_and_the_fallback(faces_model, photos: Path, patches_detector) -> None:
    result = _infer(faces_model, photos, "--json")

    assert result.exit_code == 0, result.output
    records = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    two = records["a_two.png"]
    assert set(two) == {"path", "faces"}
    assert [(f["box"], f["label"]) for f in two["faces"]] == [([40, 10, 40, 40], "red"), ([5, 5, 12, 12], "blue")]
    for face in two["faces"]:
        assert set(face) == {"box", "label", "confidence", "probabilities"}
        assert face["confidence"] == face["probabilities"][face["label"]]
    none = records["b_none.png"]
    assert set(none) == {"path", "faces", "fallback", "label", "confidence", "probabilities"}
    assert none["faces"] == [] and none["fallback"] == "whole_image" and none["label"] == "blue"


def test_if_no_face_skip_reports_the_photo_unclassified(faces_model, photos: Path, patches_detector) -> None:
    table = _infer(faces_model, photos, "--if-no-face", "skip")
    as_json = _infer(faces_model, photos, "--if-no-face", "skip", "--json")

    assert table.exit_code == 0 and as_json.exit_code == 0, table.output + as_json.output
    assert any("b_none.png" in line and "no face found (not classified)" in line for line in table.stdout.splitlines())
    assert "1 photo without a face (not classified)" in table.stderr
    none = {Path(r["path"]).name: r for r in map(json.loads, as_json.stdout.splitlines())}["b_none.png"]
    assert none == {"path": str(photos / "b_none.png"), "faces": [], "fallback": "none"}


def test_the_command_and_the_api_agree(faces_model, photos: Path, patches_detector) -> None:
    result = _infer(faces_model, photos, "--json", "--face-margin", "0.3")

    clf = Classifier(faces_model)
    for record in map(json.loads, result.stdout.splitlines()):
        faces = clf.predict_faces(cv2.imread(record["path"]), color="bgr", detector=ColouredPatches(), margin=0.3)
        assert [(f["box"], f["label"], f["confidence"]) for f in record["faces"]] == [
            (list(f.box), f.label, round(f.confidence, 6)) for f in faces
        ]


def test_no_faces_classifies_whole_images_as_before(faces_model, photos: Path, patches_detector) -> None:
    result = _infer(faces_model, photos, "--json", "--no-faces")

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 3
    for record in records:
        assert set(record) == {"path", "label", "confidence", "probabilities"}
    assert "3 classified, 0 skipped" in result.stderr


def test_faces_detects_on_a_model_that_does_not_record_it(tiny_onnx, photos: Path, patches_detector) -> None:
    plain = tiny_onnx()  # no input_kind: whole images by default

    default = _infer(plain, photos, "--json")
    forced = _infer(plain, photos, "--json", "--faces")

    assert all("faces" not in json.loads(line) for line in default.stdout.splitlines())
    assert "does not record whether it expects face crops" in default.stderr
    assert all("faces" in json.loads(line) for line in forced.stdout.splitlines())


def test_an_unreadable_photo_is_still_exit_5(faces_model, photos: Path, patches_detector) -> None:
    broken = photos / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 cut short")

    result = _infer(faces_model, photos)

    assert result.exit_code == EXIT_PARTIAL
    assert f"skipped: {broken}" in result.stderr and str(broken) not in result.stdout
    assert "3 read, 1 skipped" in result.stderr


def test_if_no_face_is_refused_for_live_sources_and_unused_without_faces(faces_model, photos: Path, tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    video.write_bytes(b"")  # --video needs an existing file; the option check comes first

    live = _infer(faces_model, "--video", video, "--if-no-face", "skip")
    unused = _infer(faces_model, photos, "--no-faces", "--if-no-face", "skip")

    assert live.exit_code == EXIT_USAGE and "--if-no-face applies to image files" in live.output
    assert unused.exit_code == 0 and "--if-no-face not used" in unused.stderr


# --- real face photos ----------------------------------------------------------------------

needs_photos = pytest.mark.skipif(not DATASET.is_dir(), reason=f"real photos not found at {DATASET}")
needs_yunet = pytest.mark.skipif(not YUNET.is_file(), reason=f"YuNet model not found at {YUNET}")
FACE_PHOTOS = (("man/face_0.jpg", (60, 80), 200), ("woman/face_1.jpg", (420, 140), 130))  # photo, (x, y), height


def _scene(path: Path) -> list[tuple[int, int, int, int]]:
    """Two real face photos of different sizes on a 640x400 grey picture; their boxes."""
    canvas = np.full((400, 640, 3), 110, dtype=np.uint8)
    boxes = []
    for photo, (x, y), height in FACE_PHOTOS:
        face = cv2.imread(str(DATASET / photo))
        if face is None:
            pytest.skip(f"{DATASET / photo} not found")
        width = round(face.shape[1] * height / face.shape[0])
        canvas[y : y + height, x : x + width] = cv2.resize(face, (width, height), interpolation=cv2.INTER_AREA)
        boxes.append((x, y, width, height))
    write_image_file(path, canvas)
    return boxes


def _centre_inside(box, region) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    x, y, w, h = region
    return x <= cx <= x + w and y <= cy <= y + h


@needs_photos
@pytest.mark.realdata
@pytest.mark.parametrize("face_model", [pytest.param(None, id="haar"), pytest.param(YUNET, id="yunet", marks=needs_yunet)])
def test_real_faces_in_a_photo_are_found_largest_first(faces_model, tmp_path: Path, face_model) -> None:
    photo = tmp_path / "scene.png"
    large, small = _scene(photo)
    args = ["--face-model", face_model] if face_model is not None else []

    result = _infer(faces_model, photo, "--json", *args)

    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    boxes = [f["box"] for f in record["faces"]]
    assert len(boxes) == 2, record
    assert _centre_inside(boxes[0], large) and _centre_inside(boxes[1], small)
    assert boxes[0][2] * boxes[0][3] > boxes[1][2] * boxes[1][3]
    clf = Classifier(faces_model)
    detector = gclf.runtime.faces.make_detector(face_model)
    api = clf.predict_faces(cv2.imread(str(photo)), color="bgr", detector=detector)
    assert [list(f.box) for f in api] == boxes


def test_an_unsure_face_says_so_in_the_table_and_the_json(tiny_onnx, tmp_path: Path, patches_detector) -> None:
    from gclf_testutil import PURPLE_RGB, decision_record

    model = tiny_onnx("faces.onnx", props_update=FACES_MODEL, decision=decision_record(0.7))
    purple_bgr = PURPLE_RGB[::-1]
    write_image_file(tmp_path / "p" / "two.png", _picture([((5, 5, 20, 20), purple_bgr), (LARGE_RED, RED)]))

    table = _infer(model, tmp_path / "p", "--face-margin", "0")
    as_json = _infer(model, tmp_path / "p", "--face-margin", "0", "--json")

    assert table.exit_code == 0 and as_json.exit_code == 0, table.output + as_json.output
    rows = [line.split()[1:] for line in table.stdout.splitlines()[1:]]
    assert [r[:4] for r in rows] == [["1", "40,10,40,40", "red", rows[0][3]], ["2", "5,5,20,20", "unsure", "(blue)"]]
    (record,) = map(json.loads, as_json.stdout.splitlines())
    large, small = record["faces"]
    assert large["label"] == "red" and "best" not in large
    assert (small["label"], small["best"]) == ("unsure", "blue") and small["confidence"] < 0.7
