"""A model file is untrusted input too: metadata values no check foresaw, an input size that
needs more memory than there is, and outputs that are not numbers each end in one sentence
naming the model (BadModelError, exit 6), never a traceback, and never a NaN in the output.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gclf.runtime.classifier import Classifier
from gclf.runtime.cli.infer import main as infer_main
from gclf.runtime.errors import EXIT_BAD_MODEL, BadModelError
from gclf.runtime.metadata import KEY_PREPROCESS, KEY_TRAINING
from gclf.runtime.preprocess import PreprocessSpec
from gclf_testutil import solid_bgr, write_image_file

SPEC_JSON = PreprocessSpec(input_height=32, input_width=32).to_json()


@pytest.mark.parametrize(
    "update, message",
    [
        # A JSON integer too large for a float (OverflowError when made a float).
        ({KEY_PREPROCESS: SPEC_JSON.replace("0.485", "1" + "0" * 400)}, "preprocessing spec is invalid: mean_01 must be three finite numbers"),
        # 1e400 reads as infinity.
        ({KEY_PREPROCESS: SPEC_JSON.replace("0.485", "1e400")}, "mean_01 must be three finite numbers"),
        # More digits than Python converts to an int (ValueError, not a JSON error).
        ({KEY_PREPROCESS: SPEC_JSON.replace("0.485", "1" * 5000)}, "preprocessing spec is not valid JSON"),
        # Nesting deeper than the JSON parser's recursion (RecursionError).
        ({KEY_TRAINING: "[" * 100_000 + "]" * 100_000}, "gclf.training is nested too deeply"),
        ({KEY_TRAINING: '{"a":' * 100_000 + "1" + "}" * 100_000}, "gclf.training is nested too deeply"),
        ({KEY_PREPROCESS: "[" * 100_000 + "]" * 100_000}, "preprocessing spec is nested too deeply"),
        # A face-crop record whose margin is an integer too large for a float.
        ({KEY_TRAINING: json.dumps({"input_kind": "faces", "face_crop": {"kind": "haar", "model_file": "x.xml", "model_sha256": "0" * 64, "margin": 10 ** 400, "min_face_fraction": 0.1, "score_threshold": None}})}, "face_crop is not a face-crop record"),
    ],
    ids=["mean-int-overflow", "mean-inf", "mean-too-many-digits", "training-nested-list", "training-nested-object", "spec-nested", "margin-overflow"],
)
def test_metadata_values_nobody_foresaw_are_one_sentence_exit_6(tiny_onnx, tmp_path: Path, update: dict, message: str) -> None:
    model = tiny_onnx(props_update=update)
    image = write_image_file(tmp_path / "a.png", solid_bgr((250, 0, 0)))

    with pytest.raises(BadModelError, match=message) as info:
        Classifier(model)
    run = CliRunner().invoke(infer_main, [str(model), str(image)])

    assert str(model) in str(info.value) and len(str(info.value)) < 400
    assert run.exit_code == EXIT_BAD_MODEL, run.output
    assert run.stderr.startswith(f"error: {model}: ") and message in run.stderr and "Traceback" not in run.output


RUN_IN_2_GB = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # as a unit's MemoryMax would: 2 GB of address space
from gclf.runtime.cli.infer import main
sys.argv = ["gclf-infer", *sys.argv[1:]]
main()
"""


def test_a_4096x4096_model_input_that_does_not_fit_in_memory_is_one_sentence_exit_6(tiny_onnx, tmp_path: Path) -> None:
    """A batch of 16 such inputs is 3.2 GB of float32: in a child limited to 2 GB it cannot
    be had, and the error names the model and the way out."""
    model = tiny_onnx("big-input.onnx", input_hw=(4096, 4096))
    for i in range(4):
        write_image_file(tmp_path / "photos" / f"{i}.png", solid_bgr((250, 0, 0)))

    run = subprocess.run([sys.executable, "-c", RUN_IN_2_GB, str(model), str(tmp_path / "photos")], capture_output=True, text=True, timeout=120)

    assert run.returncode == EXIT_BAD_MODEL, run.stderr[-2000:]
    assert f"error: {model}: not enough memory to run this model, whose 4096x4096 input takes 201 MB an image" in run.stderr
    assert "Traceback" not in run.stderr and "MemoryError" not in run.stderr


def _model_with_weights(tiny_onnx, name: str, weights: np.ndarray) -> Path:
    """The tiny model with its 3x2 weight matrix replaced (NaN, infinity, ...)."""
    import onnx
    from onnx import numpy_helper

    path = tiny_onnx(name)
    model = onnx.load(str(path))
    for i, init in enumerate(model.graph.initializer):
        if init.name == "weights":
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(weights.astype(np.float32), "weights"))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_non_finite_outputs_never_reach_json_the_model_is_named_exit_6(tiny_onnx, tmp_path: Path, bad: float) -> None:
    weights = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    weights[0, 0] = bad  # "red" scores NaN (or infinity: softmax of it is NaN)
    model = _model_with_weights(tiny_onnx, "damaged.onnx", weights)
    image = write_image_file(tmp_path / "a.png", solid_bgr((250, 0, 0)))

    with pytest.raises(BadModelError, match=r"damaged\.onnx: the model's output is not a number \(NaN or infinity\) for 1 of 1 inputs"):
        Classifier(model).predict(image)
    run = CliRunner().invoke(infer_main, [str(model), "--json", str(image)])

    assert run.exit_code == EXIT_BAD_MODEL, run.output
    assert run.stdout == ""  # no line at all rather than one with NaN in it
    assert f"error: {model}: the model's output is not a number" in run.stderr and "Traceback" not in run.output


def test_a_healthy_model_prints_valid_json(tiny_onnx, tmp_path: Path) -> None:
    image = write_image_file(tmp_path / "a.png", solid_bgr((250, 0, 0)))

    run = CliRunner().invoke(infer_main, [str(tiny_onnx()), "--json", str(image)])

    assert run.exit_code == 0, run.output
    record = json.loads(run.stdout, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))
    assert record["label"] == "red" and 0.5 < record["confidence"] <= 1.0
