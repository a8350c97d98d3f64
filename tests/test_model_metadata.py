"""Model metadata: a round trip through metadata_props, and the runtime refusing unusable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gclf.runtime.classifier import Classifier
from gclf.runtime.errors import BadModelError
from gclf.runtime.metadata import KEY_CLASSES, KEY_FORMAT, KEY_PREPROCESS, KEY_QUANTIZATION, KEY_TRAINING, KEY_VARIANT, ModelMetadata
from gclf.runtime.preprocess import PreprocessSpec
from gclf_testutil import TINY_TRAINING_SUMMARY, solid_bgr, write_image_file

SPEC = PreprocessSpec(input_height=32, input_width=48, mean_01=(0.5, 0.5, 0.5), std_01=(0.25, 0.25, 0.25))


@pytest.mark.parametrize(
    "metadata",
    [
        ModelMetadata(spec=SPEC, class_names=("cats", "dogs", "ünïcode"), variant="fp32", training={"epoch": 3, "init": "random"}),
        ModelMetadata(spec=SPEC, class_names=("a", "b"), variant="int8", training={}, quantization={"method": "MinMax", "calibration_count": 12}),
    ],
    ids=["fp32", "int8"],
)
def test_metadata_round_trips_through_props(metadata: ModelMetadata) -> None:
    props = metadata.to_props()

    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())  # what ONNX stores
    assert json.loads(props[KEY_PREPROCESS]) == SPEC.to_dict()  # JSON, not str(dict)
    assert (KEY_QUANTIZATION in props) == (metadata.variant == "int8")
    assert ModelMetadata.from_props(props) == metadata


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(class_names=("only",)), "at least 2 class names"),
        (dict(class_names=("a", "a")), "unique"),
        (dict(class_names=("a", "")), "non-empty"),
        (dict(class_names=("a", "b"), variant="fp16"), "variant"),
        (dict(class_names=("a", "b"), variant="int8"), "quantization"),
        (dict(class_names=("a", "b"), variant="fp32", quantization={"method": "MinMax"}), "quantization"),
    ],
)
def test_inconsistent_metadata_is_refused(kwargs: dict, problem: str) -> None:
    with pytest.raises(BadModelError, match=problem):
        ModelMetadata(spec=SPEC, **kwargs)


def test_a_valid_tiny_model_loads_and_reads_its_metadata(tiny_onnx, tmp_path: Path) -> None:
    path = tiny_onnx(class_names=("red", "blue"), input_hw=(24, 40))

    clf = Classifier(path)

    assert clf.class_names == ("red", "blue")
    assert clf.spec == PreprocessSpec(input_height=24, input_width=40)
    assert clf.metadata.variant == "fp32" and clf.metadata.training == TINY_TRAINING_SUMMARY
    image = write_image_file(tmp_path / "red.png", solid_bgr((255, 0, 0)))
    [result] = list(clf.predict_files([image]))
    assert result.prediction is not None and result.prediction.label == "red"


def test_not_an_onnx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_text("this is a text file\n")

    with pytest.raises(BadModelError, match="not a loadable ONNX model") as info:
        Classifier(path)
    assert str(path) in str(info.value)


def test_a_truncated_onnx_file_is_refused(tiny_onnx, tmp_path: Path) -> None:
    data = tiny_onnx().read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(BadModelError, match="not a loadable ONNX model") as info:
        Classifier(path)
    assert str(path) in str(info.value)


def test_a_missing_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadModelError, match="no such model file"):
        Classifier(tmp_path / "absent.onnx")


def test_an_onnx_model_without_gclf_metadata_is_refused(tiny_onnx) -> None:
    path = tiny_onnx(with_metadata=False)

    with pytest.raises(BadModelError, match="has no gclf metadata") as info:
        Classifier(path)
    assert str(path) in str(info.value)


def test_class_count_disagreeing_with_the_output_is_refused(tiny_onnx) -> None:
    path = tiny_onnx(class_names=("red", "blue"), graph_classes=3)

    with pytest.raises(BadModelError, match=r"output shape .* disagrees with its 2 class names"):
        Classifier(path)


def test_input_size_disagreeing_with_the_graph_is_refused(tiny_onnx) -> None:
    path = tiny_onnx(input_hw=(32, 32), graph_hw=(64, 64))

    with pytest.raises(BadModelError, match="input shape .* disagrees with its metadata"):
        Classifier(path)


@pytest.mark.parametrize(
    "update, message",
    [
        ({KEY_CLASSES: '["red", "blue"'}, "gclf.class_names is not valid JSON"),
        ({KEY_TRAINING: "{epoch: 1}"}, "gclf.training is not valid JSON"),
        ({KEY_PREPROCESS: "{"}, "preprocessing spec is not valid JSON"),
        ({KEY_CLASSES: '{"red": 0, "blue": 1}'}, "gclf.class_names must be a JSON list"),
        ({KEY_VARIANT: None}, "missing gclf.variant"),
        ({KEY_FORMAT: "2"}, "version '2' is not supported"),
        ({KEY_VARIANT: "int8"}, "quantization metadata"),
        ({KEY_PREPROCESS: json.dumps({**PreprocessSpec(input_height=32, input_width=32).to_dict(), "channel_order": "BGR"})}, "channel_order"),
    ],
    ids=["classes-json", "training-json", "preprocess-json", "classes-type", "missing-key", "format-version", "int8-without-quantization", "bgr-spec"],
)
def test_invalid_metadata_values_are_refused_by_name(tiny_onnx, update: dict, message: str) -> None:
    path = tiny_onnx(props_update=update)

    with pytest.raises(BadModelError, match=message) as info:
        Classifier(path)
    assert str(path) in str(info.value)

