"""int8 files on the engines: an int8 model quantized by gclf's own quantize_int8 runs as it is
on OpenVINO, and on an AMX CPU onnxruntime's weights are laid out for AMX
(gclf.runtime.int8_amx) without changing an answer, on whatever CPU runs the test.

Here, not in tests/runtime: quantizing needs onnx and onnxruntime's quantization tools, the
export side of gclf.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gclf.runtime import Classifier
from gclf.runtime.cpu_class import has_amx_int8
from gclf.runtime.engine import open_engine
from gclf.runtime.errors import UsageError
from gclf.runtime.int8_amx import amx_weight_layout
from gclf.runtime.parity import pattern_inputs, record_references
from gclf_testutil import write_image_file

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason='OpenVINO is not installed (pip install ".[openvino]")')


@needs_openvino
@pytest.mark.own_process
def test_an_int8_model_runs_as_it_is_on_openvino(tmp_path: Path) -> None:
    _, int8 = _conv_models(tmp_path)
    with pytest.raises(UsageError, match="int8 model, which runs as it is"):
        Classifier(int8, engine="openvino", precision="bf16")
    clf = Classifier(int8, engine="openvino")
    assert clf.engine.precision == "int8" and clf.parity.passed and clf.parity.against == "recorded"


# --- int8 on AMX: the same weights, the general kernels ------------------------------------------


def _conv_models(tmp_path: Path) -> tuple[Path, Path]:
    """A small Conv-ReLU-Conv-pool-classifier with gclf metadata, and its int8 copy by gclf's
    quantize_int8 (7-bit symmetric weights), both with reference outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from gclf.export.onnx_export import set_metadata
    from gclf.export.quantize import QuantizeOptions, quantize_int8
    from gclf.runtime.metadata import ModelMetadata
    from gclf.runtime.preprocess import PreprocessSpec

    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(0, 0.2, (16, 3, 3, 3)), "w2": rng.normal(0, 0.1, (32, 16, 3, 3)), "fc": rng.normal(0, 0.3, (32, 2))}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["r2"]),
         helper.make_node("GlobalAveragePool", ["r2"], ["p"]), helper.make_node("Flatten", ["p"], ["f"], axis=1),
         helper.make_node("MatMul", ["f", "fc"], ["logits"])],
        "small_conv", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    spec = PreprocessSpec(input_height=32, input_width=32)
    meta = ModelMetadata(spec=spec, class_names=("a", "b"), training={"note": "test"})
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    set_metadata(proto, meta)
    fp32, int8 = tmp_path / "net.onnx", tmp_path / "net.int8.onnx"
    onnx.save_model(proto, str(fp32))
    photos = [write_image_file(tmp_path / f"cal{i}.png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for i in range(12)]
    quantize_int8(fp32, int8, photos, spec, "input", QuantizeOptions())
    q = onnx.load(str(int8))
    set_metadata(q, ModelMetadata(spec=spec, class_names=("a", "b"), variant="int8", training={"note": "test"}, quantization={"format": "QDQ"}))
    onnx.save_model(q, str(int8))
    record_references(fp32)
    record_references(int8)
    return fp32, int8


def test_amx_layout_moves_symmetric_weights_to_zero_point_one_and_keeps_every_answer(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    fp32, int8 = _conv_models(tmp_path)
    data = int8.read_bytes()
    shifted = amx_weight_layout(data)
    assert shifted is not None and len(shifted) == len(data)
    before = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(int8)).graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in onnx.load_from_string(shifted).graph.initializer}
    changed = sorted(k for k in before if not np.array_equal(before[k], after[k]))
    weights = [k for k in changed if k.endswith("_quantized")]
    assert len(weights) == 3 and len(changed) == 6  # two Conv weights and the classifier's, and their zero points
    for name in weights:
        np.testing.assert_array_equal(after[name].astype(np.int16), before[name].astype(np.int16) + 1)
        assert (after[name.replace("_quantized", "_zero_point")] == 1).all()
    # Same logits, bit for bit, whichever kernels this CPU picks for each layout.
    x = pattern_inputs(Classifier(int8).spec, list(range(8)))
    plain = open_engine(int8, data, amx_layout=False)
    laid_out = open_engine(int8, data, amx_layout=True)
    assert plain.layout == "" and laid_out.layout.endswith("for AMX")
    np.testing.assert_array_equal(laid_out.run(x), plain.run(x))
    # The default follows the CPU; fp32 files and what is not an ONNX model are left alone.
    assert bool(Classifier(int8).engine.layout) == has_amx_int8()
    assert amx_weight_layout(fp32.read_bytes()) is None
    assert amx_weight_layout(b"\x08\x07not a model") is None


def test_amx_layout_leaves_weights_that_reach_127(tmp_path: Path) -> None:
    from benchmarks.ort_avx2 import write_qdq_conv

    assert amx_weight_layout(write_qdq_conv(tmp_path / "w127.onnx", 127).read_bytes()) is None
    assert amx_weight_layout(write_qdq_conv(tmp_path / "w64.onnx", 64).read_bytes()) is not None


