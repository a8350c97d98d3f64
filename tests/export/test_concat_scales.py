"""Concat inputs on the Concat's own scale (gclf.export.quantize.share_concat_scales): the
inception-style join is a byte copy in int8, and the answers stay those of the float model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gclf.export.quantize import QuantizeOptions, quantize_int8, share_concat_scales
from gclf.runtime.preprocess import PreprocessSpec
from gclf_testutil import write_image_file


def _branching_net(path: Path) -> Path:
    """Two convolution branches of very different output ranges joined by a Concat, then a
    convolution and a classifier (a miniature inception block). The second branch's output
    also feeds a side MaxPool, so its quantization parameters are not the Concat's alone."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "wa": rng.normal(0, 0.5, (8, 3, 3, 3)),  # wide outputs
        "wb": rng.normal(0, 0.05, (8, 3, 1, 1)),  # narrow outputs
        "wc": rng.normal(0, 0.2, (8, 3, 3, 3)),
        "wd": rng.normal(0, 0.2, (8, 24, 3, 3)),
        "fc": rng.normal(0, 0.3, (8, 2)),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "wa"], ["a"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["a"], ["ar"]),
            helper.make_node("Conv", ["input", "wb"], ["b"]),
            helper.make_node("Relu", ["b"], ["br"]),
            helper.make_node("Conv", ["input", "wc"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["cr"]),
            helper.make_node("MaxPool", ["cr"], ["side"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
            helper.make_node("Concat", ["ar", "br", "cr"], ["joined"], axis=1),
            helper.make_node("Conv", ["joined", "wd"], ["d"], pads=[1, 1, 1, 1]),
            helper.make_node("Add", ["d", "side"], ["ds"]),
            helper.make_node("Relu", ["ds"], ["dr"]),
            helper.make_node("GlobalAveragePool", ["dr"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"], axis=1),
            helper.make_node("MatMul", ["f", "fc"], ["logits"]),
        ],
        "branching",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))
    return path


def _concat_params(path: Path) -> tuple[list[tuple[float, int]], tuple[float, int]]:
    """(scale, zero point) of each Concat input's DequantizeLinear, and of the Quantize after it."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    concat = next(n for n in graph.node if n.op_type == "Concat")
    after = next(n for n in graph.node if concat.output[0] in n.input)
    param = lambda node: (float(inits[node.input[1]]), int(inits[node.input[2]]))
    return [param(producer[name]) for name in concat.input], param(after)


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("concat")
    rng = np.random.default_rng(1)
    photos = [write_image_file(tmp / f"cal{i}.png", rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)) for i in range(24)]
    fp32 = _branching_net(tmp / "net.onnx")
    spec = PreprocessSpec(input_height=32, input_width=32)
    out = {"fp32": fp32, "shared": tmp / "shared.onnx", "own": tmp / "own.onnx"}
    quantize_int8(fp32, out["shared"], photos, spec, "input", QuantizeOptions())
    quantize_int8(fp32, out["own"], photos, spec, "input", QuantizeOptions(share_concat_scales=False))
    return out


def test_concat_inputs_take_the_output_scale_unless_shared_elsewhere(quantized) -> None:
    own_inputs, own_output = _concat_params(quantized["own"])
    assert len({s for s, _ in own_inputs}) == 3  # onnxruntime's quantizer: a range per tensor
    inputs, output = _concat_params(quantized["shared"])
    assert output == own_output
    assert inputs[0] == output and inputs[1] == output  # the branches that feed only the Concat
    assert inputs[2] == own_inputs[2] != output  # "cr" also feeds the side MaxPool: left alone


def test_shared_scales_keep_the_answers(quantized) -> None:
    x = np.random.default_rng(2).uniform(-2.1, 2.6, (64, 3, 32, 32)).astype(np.float32)
    ref = _logits(quantized["fp32"], x)
    own, shared = _logits(quantized["own"], x), _logits(quantized["shared"], x)
    spread = np.abs(ref).max()
    # int8 noise of the same size either way; one rounding onto the output grid, not two
    assert np.abs(shared - ref).max() <= 1.5 * np.abs(own - ref).max() + 1e-3 * spread
    assert (shared.argmax(1) == ref.argmax(1)).mean() >= (own.argmax(1) == ref.argmax(1)).mean() - 2 / len(x)


def test_a_second_pass_changes_nothing(tmp_path: Path, quantized) -> None:
    import shutil

    copy = shutil.copy(quantized["shared"], tmp_path / "again.onnx")
    before = Path(copy).read_bytes()
    assert share_concat_scales(Path(copy)) == 0  # already shared: nothing to change, file untouched
    assert Path(copy).read_bytes() == before
