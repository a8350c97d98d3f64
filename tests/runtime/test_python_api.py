"""The Python API an app embeds: `from gclf.runtime import Classifier`, the README's example
run as written, and the promises it makes (explicit colour order, typed results, faces
largest first, gclf's own errors, a lazy import).

Uses the tiny hand-built model (class "red" scores the red channel, "blue" the blue one), so
the expected labels are known.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gclf.runtime import Classifier, GclfError, ImageDecodeError, Prediction
from gclf_testutil import solid_bgr, write_image_file
from gclf_testutil import REPO

README = REPO / "README.md"
FACES_MODEL = {"gclf.training": json.dumps({"input_kind": "faces"})}  # tiny_onnx(props_update=...)


def _readme_example() -> str:
    readme = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    reference = (README.parent / "docs" / "cli.md").read_text().split("## The Python API", 1)[1].split("\n## ", 1)[0]
    section = readme + reference  # the README's example and the reference it links to
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the README's Python API section should hold one python example"
    return blocks[0]


def test_the_readme_example_runs_as_written(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    # The files the example names, made here: a whole-image model, a faces model, images.
    work = tmp_path / "app"
    for name, props in (("gender", None), ("faces", FACES_MODEL)):
        model = tiny_onnx(f"{name}.onnx", props_update=props)
        (work / "runs" / name).mkdir(parents=True)
        model.rename(work / "runs" / name / "model.onnx")
    write_image_file(work / "photo.jpg", solid_bgr((230, 20, 20), height=40, width=60))  # red
    write_image_file(work / "other.png", solid_bgr((10, 20, 240)))  # blue
    (work / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    monkeypatch.chdir(work)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_readme_example(), "README.md (Python API)", "exec"), {})

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("red ")  # label and confidence of photo.jpg
    assert set(eval(lines[1])) == {"red", "blue"}  # the probabilities, one per class
    assert lines[2:4] == ["red", "blue"]  # predict_batch, in input order
    assert lines[4].startswith("skipped: broken.jpg: ")
    # predict_files(faces=True): plain colours hold no face, so both are classified whole.
    assert lines[5:] == ["photo.jpg [] whole_image", "other.png [] whole_image"]


def _red_blue(tmp_path: Path) -> tuple[Path, np.ndarray]:
    path = write_image_file(tmp_path / "red.png", solid_bgr((240, 10, 10), height=20, width=30))
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[..., 0] = 240  # red, in RGB order
    return path, rgb


def test_a_path_an_rgb_array_and_a_bgr_frame_give_the_same_prediction(tiny_onnx, tmp_path: Path) -> None:
    clf = Classifier(tiny_onnx())
    path, rgb = _red_blue(tmp_path)

    from_path, from_rgb = clf.predict(path), clf.predict(rgb)
    from_bgr = clf.predict(np.ascontiguousarray(rgb[..., ::-1]), color="bgr")

    assert from_path.label == from_rgb.label == from_bgr.label == "red"
    assert from_rgb == from_bgr
    # The same BGR array read as RGB is another image: the order is never guessed.
    assert clf.predict(np.ascontiguousarray(rgb[..., ::-1])).label == "blue"


def test_a_prediction_is_typed_frozen_and_carries_every_class(tiny_onnx, tmp_path: Path) -> None:
    clf = Classifier(tiny_onnx())
    result = clf.predict(_red_blue(tmp_path)[1])

    assert isinstance(result, Prediction)
    assert list(result.probabilities) == ["red", "blue"]  # the model's class order
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert result.confidence == result.probabilities[result.label] == max(result.probabilities.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.label = "blue"  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.probabilities["red"] = 0.0  # type: ignore[index]


def test_predict_batch_keeps_input_order_across_files_and_frames(tiny_onnx, tmp_path: Path) -> None:
    clf = Classifier(tiny_onnx())
    path, rgb = _red_blue(tmp_path)
    blue_bgr = np.zeros((9, 7, 3), dtype=np.uint8)
    blue_bgr[..., 0] = 250

    labels = [p.label for p in clf.predict_batch([blue_bgr, path, blue_bgr, rgb[..., ::-1].copy()], color="bgr")]

    assert labels == ["blue", "red", "blue", "red"]  # files decode to RGB whatever `color` says
    assert clf.predict_batch([]) == []


def test_bad_input_raises_gclf_errors_or_value_errors(tiny_onnx, tmp_path: Path) -> None:
    clf = Classifier(tiny_onnx())
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")

    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        clf.predict(broken)
    with pytest.raises(ValueError, match="color"):
        clf.predict(np.zeros((4, 4, 3), dtype=np.uint8), color="BGR")
    with pytest.raises(ValueError, match="uint8"):
        clf.predict(np.zeros((4, 4), dtype=np.float32))
    not_a_model = tmp_path / "model.onnx"
    not_a_model.write_bytes(b"nope")
    with pytest.raises(GclfError) as info:
        Classifier(not_a_model)
    assert "--" not in str(info.value)  # a library error names the file, never a command-line option


class TwoFacesOfTwoSizes:
    """A stand-in detector: a small blue face on the left, a large red one on the right."""

    name = "fake"

    def detect(self, bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        return [(2, 2, 10, 10), (30, 5, 30, 30)]  # left to right, as detectors return them


def test_predict_faces_returns_each_face_with_its_box_largest_first(tiny_onnx) -> None:
    clf = Classifier(tiny_onnx(props_update=FACES_MODEL))
    bgr = np.zeros((40, 64, 3), dtype=np.uint8)
    bgr[:, :20] = (230, 0, 0)  # blue, in BGR
    bgr[:, 25:] = (0, 0, 230)  # red

    faces = clf.predict_faces(bgr, color="bgr", detector=TwoFacesOfTwoSizes())

    assert [(f.box, f.label) for f in faces] == [((30, 5, 30, 30), "red"), ((2, 2, 10, 10), "blue")]
    assert faces[0].confidence == faces[0].probabilities["red"]
    rgb_faces = clf.predict_faces(np.ascontiguousarray(bgr[..., ::-1]), detector=TwoFacesOfTwoSizes())
    assert rgb_faces == faces


def test_predict_faces_finds_nothing_in_an_empty_picture_with_the_default_detector(tiny_onnx) -> None:
    clf = Classifier(tiny_onnx(props_update=FACES_MODEL))

    assert clf.predict_faces(np.full((120, 160, 3), 90, dtype=np.uint8)) == []


def test_predict_faces_refuses_a_model_not_trained_on_faces(tiny_onnx) -> None:
    clf = Classifier(tiny_onnx())  # no input_kind recorded

    with pytest.raises(GclfError, match="not trained on face crops"):
        clf.predict_faces(np.zeros((20, 20, 3), dtype=np.uint8))


def test_importing_the_api_loads_nothing_heavy_until_a_name_is_used() -> None:
    code = (
        "import sys, gclf.runtime\n"
        "before = sorted(m for m in ('cv2', 'onnxruntime', 'numpy') if m in sys.modules)\n"
        "from gclf.runtime import Classifier\n"
        "print(before, Classifier.__module__, 'onnxruntime' in sys.modules)\n"
        "try:\n    gclf.runtime.NoSuchName\nexcept AttributeError as exc:\n    print('AttributeError', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "[] gclf.runtime.classifier False"  # onnxruntime waits for the first Classifier
    assert second.startswith("AttributeError") and "NoSuchName" in second


def test_every_type_the_readme_tells_users_to_pass_or_receive_is_exported() -> None:
    import gclf.runtime

    readme = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    reference = (README.parent / "docs" / "cli.md").read_text().split("## The Python API", 1)[1].split("\n## ", 1)[0]
    section = readme + reference  # the README's example and the reference it links to
    named = set(re.findall(r"\b(?:[A-Z][a-z]+)+(?:Detector|Result|Error|Spec|Classifier|Prediction)\b|\bClassifier\b|\bPrediction\b|\bdefault_face_model\b", section))
    assert {"Classifier", "HaarFaceDetector", "YuNetFaceDetector", "FileResult"} <= named  # the docs' own words
    missing = sorted(n for n in named - {"ValueError"} if n not in gclf.runtime.__all__)  # a builtin
    assert missing == [], f"the README's Python API names {missing}, which gclf.runtime does not export"
    for name in named - {"ValueError"}:
        assert getattr(gclf.runtime, name) is not None
