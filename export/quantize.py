"""int8 copy of a gclf ONNX model with onnxruntime's own static QDQ quantization.

Calibration images come from the training split only, through the runtime's preprocessing.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from gclf.runtime.decode import decode_image
from gclf.runtime.preprocess import PreprocessSpec, preprocess_batch


# Training images that calibrate int8 (class-balanced): gclf-export's default --calibration-size,
# and what the quick start and the studies use.
CALIBRATION_SIZE = 300


@dataclass(frozen=True)
class QuantizeOptions:
    method: str = "MinMax"  # onnxruntime CalibrationMethod name: MinMax, Entropy, Percentile
    per_channel: bool = True
    batch_size: int = 8
    keep_ends_float: bool = False  # leave the first Conv and the classifier unquantized
    # 7-bit weights (onnxruntime's reduce_range): u8 x s8 sums then fit x86 AVX2's saturating
    # 16-bit lanes, so the file answers the same on AVX2, VNNI and ARM (gclf.runtime.cpu_class).
    reduce_range: bool = True
    # Each Concat's inputs quantized on the Concat's own output scale (share_concat_scales).
    share_concat_scales: bool = True


class ImageCalibrationReader:
    """onnxruntime `CalibrationDataReader` over image files, preprocessed like the runtime does."""

    def __init__(self, paths: Sequence[Path], spec: PreprocessSpec, input_name: str, batch_size: int, load: Callable[[Path], np.ndarray] = decode_image) -> None:
        self._batches = self._iter(paths, spec, input_name, batch_size, load)

    @staticmethod
    def _iter(paths, spec, input_name, batch_size, load) -> Iterator[dict[str, np.ndarray]]:
        # `load`: a file as the training saw it (decoded; a face crop for --face-crop runs).
        for start in range(0, len(paths), batch_size):
            batch = preprocess_batch([load(p) for p in paths[start : start + batch_size]], spec)
            yield {input_name: batch}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_int8(
    fp32_path: Path, dest: Path, calibration: Sequence[Path], spec: PreprocessSpec, input_name: str, options: QuantizeOptions,
    *, load: Callable[[Path], np.ndarray] = decode_image,
) -> None:
    """fp32 ONNX -> int8 QDQ ONNX at `dest` (metadata is set by the caller)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="gclf-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference and graph optimisation (fuses Conv+BatchNorm) before quantizing,
        # as onnxruntime recommends: quantization parameters then match the fused weights.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        exclude = end_nodes(pre) if options.keep_ends_float else []
        quantize_static(
            str(pre),
            str(dest),
            ImageCalibrationReader(list(calibration), spec, input_name, options.batch_size, load),
            quant_format=QuantFormat.QDQ,
            per_channel=options.per_channel,
            reduce_range=options.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, options.method),
            nodes_to_exclude=exclude,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    if options.share_concat_scales:
        share_concat_scales(dest)


def share_concat_scales(model_path: Path) -> int:
    """Quantize every input of each Concat on the Concat's own output scale and zero point,
    in place; returns how many inputs changed.

    onnxruntime's quantizer gives each tensor its own range, so a Concat of GoogLeNet's four
    inception branches runs as QLinearConcat, which requantizes every input to the output's
    scale (6% of int8's batch-1 time on a VNNI CPU). With one scale it only copies bytes. The
    branch convolutions then round once, straight onto the output's grid, instead of onto
    their own grid and again onto the output's: no less precise, and the rule TFLite's int8
    spec sets for concatenation. MinMax calibration makes the output's range the union of the
    inputs', so nothing new is clipped. Only inputs whose quantization parameters serve this
    Concat alone (a Q after their producer, a DQ into the Concat) are changed.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    changed = 0
    for concat in (n for n in graph.node if n.op_type == "Concat"):
        after = consumers.get(concat.output[0], [])
        if len(after) != 1 or after[0].op_type != "QuantizeLinear" or len(after[0].input) < 3:
            continue
        scale, zero = (numpy_helper.to_array(inits[name]) for name in after[0].input[1:3])
        for name in concat.input:
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or name in graph_outputs:
                continue
            if consumers.get(name, []) != [concat] or not all(k in inits for k in dq.input[1:3]):
                continue
            q = producer.get(dq.input[0])
            users = [u for k in dq.input[1:3] for u in consumers.get(k, [])]
            if q is None or q.op_type != "QuantizeLinear" or not all(u in (q, dq) for u in users):
                continue  # the parameters are shared with another tensor: leave them
            if any(consumers.get(out, []) != [dq] for out in q.output):
                continue  # the quantized tensor has another reader
            if np.array_equal(numpy_helper.to_array(inits[dq.input[1]]), scale) and np.array_equal(numpy_helper.to_array(inits[dq.input[2]]), zero):
                continue  # already the Concat's
            inits[dq.input[1]].CopyFrom(numpy_helper.from_array(scale.astype(np.float32), dq.input[1]))
            inits[dq.input[2]].CopyFrom(numpy_helper.from_array(zero, dq.input[2]))
            changed += 1
    if changed:
        onnx.save_model(model, str(model_path))
    return changed


def end_nodes(model_path: Path) -> list[str]:
    """Names of the first Conv and the last Gemm/MatMul: the layers most sensitive to int8
    (raw pixels in, logits out), which are the usual ones to keep in float."""
    import onnx

    nodes = onnx.load(str(model_path)).graph.node
    first_conv = next((n.name for n in nodes if n.op_type == "Conv"), None)
    last_fc = next((n.name for n in reversed(nodes) if n.op_type in ("Gemm", "MatMul")), None)
    return [n for n in (first_conv, last_fc) if n]


# u8 activations x s8 weights: AVX2's VPMADDUBSW sums two products in a saturating int16 lane,
# 2 x 255 x 64 = 32640 <= 32767 (gclf.runtime.cpu_class).
SATURATION_SAFE_MAX_WEIGHT = 64


def saturation_safe(model_path: Path) -> bool:
    """True if no int8 weight of the file can saturate AVX2's 16-bit sums: every int8
    initializer within [-64, 64] (u8 weights use exact kernels everywhere). Read from the file,
    not from the options that wrote it."""
    import onnx
    from onnx import numpy_helper

    for init in onnx.load(str(model_path)).graph.initializer:
        if init.data_type == onnx.TensorProto.INT8:
            values = numpy_helper.to_array(init)
            if values.size and int(np.abs(values.astype(np.int16)).max()) > SATURATION_SAFE_MAX_WEIGHT:
                return False
    return True
