"""Rewriting an ONNX file's metadata_props without the onnx package, checked against the onnx
package and onnxruntime: the keys they read are the ones written, and every other field,
the graph above all, is byte for byte what it was (also for a model of several megabytes,
whose lengths take more varint bytes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from gclf.runtime.errors import BadModelError, OutputWriteError
from gclf.runtime.onnx_metadata import encode_varint, read_metadata, read_metadata_bytes, rewrite_metadata_bytes, update_metadata
from gclf_testutil import build_tiny_onnx


def _large_model(path: Path, props: dict[str, str] | None = None) -> Path:
    """input (N, 1000) @ a 1000 x 600 float32 weight (2.4 MB) -> output (N, 600)."""
    weights = np.random.default_rng(0).standard_normal((1000, 600)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "large",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1000])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 600])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10, producer_name="test")
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(path))
    return path


def _onnx_props(path: Path) -> list[tuple[str, str]]:
    return [(p.key, p.value) for p in onnx.load(str(path)).metadata_props]


def _everything_but_metadata(path: Path) -> bytes:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    return model.SerializeToString()


def test_reading_agrees_with_onnx_and_onnxruntime(tmp_path: Path) -> None:
    model = build_tiny_onnx(tmp_path / "tiny.onnx")
    ours = read_metadata(model)
    assert ours == dict(_onnx_props(model))
    assert ours == ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map


def test_keys_are_replaced_in_place_added_and_removed_and_nothing_else_moves(tmp_path: Path) -> None:
    model = build_tiny_onnx(tmp_path / "tiny.onnx")
    before = _onnx_props(model)
    out = tmp_path / "copy.onnx"
    update_metadata(model, {"gclf.variant": "fp32", "gclf.training": None, "gclf.calibration": '{"t": "é ✓"}', "empty": ""}, out)

    after = _onnx_props(out)
    expected = [(k, v) for k, v in before if k != "gclf.training"] + [("gclf.calibration", '{"t": "é ✓"}'), ("empty", "")]
    assert after == expected
    assert _everything_but_metadata(out) == _everything_but_metadata(model)
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert model.read_bytes() != out.read_bytes() and read_metadata(model) == dict(before)  # the source is untouched


def test_a_large_model_keeps_its_graph_and_onnxruntime_reads_the_new_keys(tmp_path: Path) -> None:
    model = _large_model(tmp_path / "large.onnx", {"a": "1"})
    assert model.stat().st_size > 2_000_000
    update_metadata(model, {"gclf.calibration": '{"method": "temperature"}', "a": "2"})  # in place

    assert _onnx_props(model) == [("a", "2"), ("gclf.calibration", '{"method": "temperature"}')]
    original = onnx.load(str(_large_model(tmp_path / "original.onnx", {"a": "1"})))
    rewritten = onnx.load(str(model))
    assert rewritten.graph.SerializeToString() == original.graph.SerializeToString()
    assert (rewritten.ir_version, rewritten.producer_name, list(rewritten.opset_import)) == (original.ir_version, original.producer_name, list(original.opset_import))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == {"a": "2", "gclf.calibration": '{"method": "temperature"}'}
    x = np.ones((2, 1000), dtype=np.float32)
    expected = ort.InferenceSession(str(tmp_path / "original.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.array_equal(session.run(None, {"input": x})[0], expected)


def test_a_model_without_metadata_gets_its_first_keys(tmp_path: Path) -> None:
    model = _large_model(tmp_path / "bare.onnx")
    data = rewrite_metadata_bytes(model.read_bytes(), {"k": "v" * 300})  # a value longer than one varint byte
    assert data[: model.stat().st_size] == model.read_bytes()  # appended at the end
    loaded = onnx.load_from_string(data)
    assert [(p.key, p.value) for p in loaded.metadata_props] == [("k", "v" * 300)]


def test_random_updates_match_what_onnx_makes_of_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    model = build_tiny_onnx(tmp_path / "tiny.onnx")
    data = model.read_bytes()
    reference = onnx.load(str(model))
    keys = ["gclf.variant", "gclf.training", "x", "y", "z"]
    for _ in range(30):
        updates = {str(k): (None if rng.uniform() < 0.3 else "v" * int(rng.integers(0, 200))) for k in rng.choice(keys, size=2, replace=False)}
        data = rewrite_metadata_bytes(data, updates)
        props = {p.key: p.value for p in reference.metadata_props}
        for k, v in updates.items():
            if v is None:
                props.pop(k, None)
            else:
                props[k] = v
        assert read_metadata_bytes(data) == props
        assert {p.key: p.value for p in onnx.load_from_string(data).metadata_props} == props
        del reference.metadata_props[:]
        for k, v in props.items():
            reference.metadata_props.add(key=k, value=v)


def test_a_duplicated_key_keeps_its_first_value_and_is_written_once(tmp_path: Path) -> None:
    model = _large_model(tmp_path / "dup.onnx", {"k": "first", "m": "middle"})
    # A second "k" entry after the others (protobuf allows repeated entries anywhere).
    data = model.read_bytes() + b"".join([b"\x72", encode_varint(len(b"\x0a\x01k\x12\x06second")), b"\x0a\x01k\x12\x06second"])
    assert read_metadata_bytes(data) == {"k": "first", "m": "middle"}
    rewritten = rewrite_metadata_bytes(data, {"k": "new"})
    assert [(p.key, p.value) for p in onnx.load_from_string(rewritten).metadata_props] == [("k", "new"), ("m", "middle")]


@pytest.mark.parametrize(
    "data",
    [b"", b"not a model at all", b"\x08\x0a", b"\x08\x0a\x3a\x05abc", b"\x08\x0a\x3a\x00\x72\x03\x0a\x05a", b"\x0b\x08"],
    ids=["empty", "text", "no-graph", "truncated-graph", "truncated-entry", "group-wire-type"],
)
def test_what_is_not_an_onnx_model_is_refused_in_one_sentence(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(BadModelError, match=r"bad.onnx: not an ONNX model file \(") as caught:
        read_metadata(path)
    assert "\n" not in str(caught.value)
    with pytest.raises(BadModelError):
        update_metadata(path, {"k": "v"}, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_a_failed_rewrite_leaves_the_previous_copy(tmp_path: Path) -> None:
    previous = tmp_path / "copy.onnx"
    previous.write_bytes(b"previous")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x0a")
    with pytest.raises(BadModelError):
        update_metadata(bad, {"k": "v"}, previous)
    blocked = tmp_path / "a-file"
    blocked.write_bytes(b"")
    with pytest.raises(OutputWriteError, match="cannot write"):
        update_metadata(build_tiny_onnx(tmp_path / "tiny.onnx"), {"k": "v"}, blocked / "copy.onnx")  # its folder is a file
    assert previous.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "bad.onnx", "copy.onnx", "tiny.onnx"]  # no temporary file left
