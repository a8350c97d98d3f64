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
