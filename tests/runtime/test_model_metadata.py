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
        ({KEY_FORMAT: "9"}, "was written by a newer gclf"),
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



# --- a model that loads and then fails when run -----------------------------------------------------


def _model_failing_at_run_time(path: Path, tail: str) -> Path:
    """A gclf model that passes every load check and fails in onnxruntime when run:
    "reshape": its Reshape pairs up 3 values an image; "huge": its ConstantOfShape wants a
    40000x40000 float tensor (6.4 GB) at every run."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.eye(3, 2, dtype=np.float32), "w")]
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"], axis=1)]
    if tail == "reshape":
        inits.append(numpy_helper.from_array(np.array([-1, 2], np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["flat", "shape"], ["logits"]))  # (N, 3) -> (?, 2): 3 values do not pair
    else:  # the size comes from the input's shape, so nothing is folded at load time
        inits += [numpy_helper.from_array(np.array([40000], np.int64), "side"), numpy_helper.from_array(np.array([0], np.int64), "zero")]
        nodes += [
            helper.make_node("Shape", ["input"], ["in_shape"], start=0, end=1),  # [N]
            helper.make_node("Mul", ["in_shape", "side"], ["rows"]),  # [N * 40000]
            helper.make_node("Concat", ["rows", "side"], ["big_shape"], axis=0),
            helper.make_node("ConstantOfShape", ["big_shape"], ["big"]),
            helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
            helper.make_node("MatMul", ["flat", "w"], ["scores"]),
            helper.make_node("Add", ["scores", "total"], ["logits"]),
        ]
    graph = helper.make_graph(
        nodes,
        "fails",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    meta = ModelMetadata(spec=PreprocessSpec(input_height=32, input_width=32), class_names=("red", "blue"), variant="fp32", training=dict(TINY_TRAINING_SUMMARY))
    for key, value in meta.to_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(path))
    return path


def test_a_model_failing_at_run_time_is_one_sentence_naming_it_exit_6(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gclf.runtime.cli.infer import main
    from gclf.runtime.errors import EXIT_BAD_MODEL

    model = _model_failing_at_run_time(tmp_path / "odd-batch.onnx", "reshape")
    clf = Classifier(model)  # loads: nothing is wrong until it runs
    with pytest.raises(BadModelError, match=r"odd-batch\.onnx: onnxruntime failed running the model \("):
        clf.predict(solid_bgr((255, 0, 0)))
    image = write_image_file(tmp_path / "a.png", solid_bgr((255, 0, 0)))
    result = CliRunner().invoke(main, [str(model), str(image)])
    assert result.exit_code == EXIT_BAD_MODEL
    assert "odd-batch.onnx: onnxruntime failed running the model" in result.stderr and "Traceback" not in result.output


RUN_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # 3 GB: the 6.4 GB tensor cannot be had
from gclf.runtime.cli.infer import main
sys.argv = ["gclf-infer", *sys.argv[1:]]
main()
"""


def test_a_model_that_allocates_more_than_there_is_fails_with_its_name_not_a_traceback(tmp_path: Path) -> None:
    """The issue's probe (a 40000x40000 ConstantOfShape), in a child whose memory is capped
    as a unit's MemoryMax would, so that no machine is asked for 6.4 GB."""
    import subprocess
    import sys

    from gclf.runtime.errors import EXIT_BAD_MODEL

    model = _model_failing_at_run_time(tmp_path / "huge.onnx", "huge")
    image = write_image_file(tmp_path / "a.png", solid_bgr((255, 0, 0)))
    run = subprocess.run([sys.executable, "-c", RUN_LIMITED, str(model), str(image)], capture_output=True, text=True, timeout=120)
    assert run.returncode == EXIT_BAD_MODEL, run.stderr[-2000:]
    assert "huge.onnx: onnxruntime failed running the model" in run.stderr and "Traceback" not in run.stderr
