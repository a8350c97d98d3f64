"""gclf's ONNX file run by OpenVINO's CPU plugin: batch in, logits out (gclf.runtime.engine.Engine).

The file is read from the bytes gclf already holds (the ones its parity check hashed), by
OpenVINO's ONNX front end; its metadata is read by gclf's own protobuf reader. Compiled for
latency (one stream), with `threads` inference threads, at the precision asked:
INFERENCE_PRECISION_HINT f32 for "fp32" (OpenVINO's own default on AMX CPUs is bf16, whose
answers drift further from the file's) or bf16. An int8 file's quantized layers run in int8
(AMX's TDPBUSD where the CPU has it) and its other layers at f32, as onnxruntime runs them.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Mapping

import numpy as np

from gclf.runtime.cpu_class import has_bf16
from gclf.runtime.errors import BadModelError, MissingDependencyError, UsageError, install_hint
from gclf.runtime.log import warn
from gclf.runtime.metadata import KEY_VARIANT
from gclf.runtime.onnx_metadata import read_metadata_bytes

HINTS = {"fp32": "f32", "bf16": "bf16"}


def import_openvino():
    """The openvino module, or MissingDependencyError naming the extra to install."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependencyError(f"the openvino engine needs OpenVINO, which is not installed ({exc}): {install_hint('openvino')}") from None
    return openvino


class OpenVINOEngine:
    name = "openvino"

    def __init__(self, path: Path, data: bytes, *, precision: str = "fp32", threads: int | None = None, spin: bool = True) -> None:
        """`spin=False` (the live loop's setting, as for onnxruntime): OpenVINO's threads are not
        pinned to cores, which leaves the cores to the capture and preparation threads."""
        ov = import_openvino()
        self.path = path
        self.version = ov.get_version().split("-")[0]
        self._props = read_metadata_bytes(data, source=str(path))
        int8 = self._props.get(KEY_VARIANT) == "int8"
        if int8 and precision != "fp32":
            raise UsageError(f"{path.name} is an int8 model, which runs as it is; precision {precision} applies to fp32 models")
        if precision == "bf16" and not has_bf16():
            warn("this CPU has no bf16 instructions (AMX-BF16 or AVX512-BF16): bf16 would be emulated, slower than fp32")
        self.precision = "int8" if int8 else precision
        self.layout = ""
        config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": HINTS[precision]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if not spin:
            config["ENABLE_CPU_PINNING"] = False
        core = ov.Core()
        try:
            model = core.read_model(io.BytesIO(data))
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types for files it cannot read
            raise BadModelError(f"{path}: OpenVINO cannot load this model ({_short(exc)})") from None
        self._inputs = [_dims(i.get_partial_shape()) for i in self._compiled.inputs]
        self._outputs = [_dims(o.get_partial_shape()) for o in self._compiled.outputs]
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: one call at a time

    def metadata_props(self) -> Mapping[str, str]:
        return self._props

    def input_shapes(self) -> list[list[int | None]]:
        return self._inputs

    def output_shapes(self) -> list[list[int | None]]:
        return self._outputs

    def run(self, batch: np.ndarray) -> np.ndarray:
        try:
            with self._lock:
                result = self._request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
                return np.array(result[0], dtype=np.float32, copy=True)  # the request's buffer is reused by the next call
        except Exception as exc:
            raise BadModelError(f"{self.path}: OpenVINO failed running the model ({_short(exc)})") from None


def _dims(shape) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in shape]


def _short(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
