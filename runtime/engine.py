"""Inference engines: what runs a gclf ONNX file's graph, batch in, logits out.

gclf's own work (decoding, preprocessing, faces, labels) is the same whichever engine runs
the graph; an engine only turns a float32 (N, 3, H, W) batch into (N, C) logits. Two exist:

- "onnxruntime" (the default, always installed): its CPU provider. On an Intel CPU with AMX
  an int8 file's weights are laid out for MLAS's AMX kernels in memory
  (gclf.runtime.int8_amx); the answers stay the file's, bit for bit.
- "openvino" (the `openvino` extra): Intel's runtime, gclf.runtime.openvino, which
  is the only module that imports it. It reads the same ONNX file; on AMX it runs an int8
  file on AMX too, and an fp32 file at bf16 when asked (`precision="bf16"`).

Precision is what the user asks of an fp32 file: "fp32" (the default, so the answers match
the file's reference outputs closely) or "bf16" (OpenVINO only: faster on CPUs with AMX or
AVX512-BF16, with answers a little further off). An int8 file runs as it is.

Before a Classifier uses an engine, gclf.runtime.parity checks its answers on this machine
against the reference outputs the model records.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Protocol, Sequence

from gclf.runtime.cpu_class import has_amx_int8
from gclf.runtime.errors import BadModelError, UsageError

if TYPE_CHECKING:
    import numpy as np

# This module is light (gclf-infer reads its names for --help, which must start fast): numpy,
# OpenCV (through the metadata module) and the engines are imported where an engine is made.

ENGINES = ("onnxruntime", "openvino")
DEFAULT_ENGINE = "onnxruntime"
PRECISIONS = ("fp32", "bf16")  # the words gclf-train uses for its --precision
DEFAULT_PRECISION = "fp32"

Dims = Sequence["int | str | None"]  # a dimension: its size, or a name / None where it is not fixed


class Engine(Protocol):
    """What a Classifier needs of an engine."""

    name: str  # one of ENGINES
    version: str  # the engine package's version
    precision: str  # what it computes in: "fp32", "bf16" or "int8" (an int8 file)
    layout: str  # how the file was adapted for this CPU ("" if not at all), for reports

    def metadata_props(self) -> Mapping[str, str]:
        """The file's `metadata_props` (gclf's own metadata among them)."""

    def input_shapes(self) -> list[Dims]:
        ...

    def output_shapes(self) -> list[Dims]:
        ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) -> the first output, (N, C); raises BadModelError on failure."""


def describe(engine: Engine) -> str:
    """"onnxruntime 1.32.0, int8 weights laid out for AMX" or "openvino 2026.4.1 at bf16"."""
    text = f"{engine.name} {engine.version}"
    if engine.precision == "bf16":
        text += " at bf16"
    return f"{text}, {engine.layout}" if engine.layout else text


def check_choice(engine: str, precision: str) -> None:
    """A UsageError for an engine or precision that does not exist, or that cannot go together."""
    if engine not in ENGINES:
        raise UsageError(f"unknown inference engine {engine!r}: gclf runs {' or '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}: give {' or '.join(PRECISIONS)}")
    if engine == "onnxruntime" and precision != "fp32":
        raise UsageError(f"onnxruntime runs an fp32 model at fp32 on a CPU; precision {precision} needs the openvino engine")


def open_engine(path: Path, data: bytes, *, engine: str = DEFAULT_ENGINE, precision: str = DEFAULT_PRECISION,
                threads: int | None = None, spin: bool = True, amx_layout: bool | None = None) -> Engine:
    """`engine` loaded with the model file `path` whose bytes are `data`.

    `threads`: intra-op threads (None: the engine's default, one per core). `spin=False`
    leaves the cores to the caller's other threads (the live loop's setting): onnxruntime's idle
    threads do not busy-wait, OpenVINO's threads are not pinned to cores. `amx_layout` (onnxruntime, int8): None lays the weights out for AMX where
    the CPU has it, False never (benchmarks compare the two).
    """
    check_choice(engine, precision)
    if engine == "openvino":
        from gclf.runtime.openvino.engine import OpenVINOEngine  # here: only this engine imports OpenVINO

        return OpenVINOEngine(path, data, precision=precision, threads=threads, spin=spin)
    return OnnxRuntimeEngine(path, data, threads=threads, spin=spin, amx_layout=amx_layout)


class OnnxRuntimeEngine:
    """onnxruntime's CPU provider, at full graph optimisation."""

    name = "onnxruntime"

    def __init__(self, path: Path, data: bytes, *, threads: int | None = None, spin: bool = True, amx_layout: bool | None = None) -> None:
        import onnxruntime as ort

        from gclf.runtime.int8_amx import amx_weight_layout  # here: numpy (see the imports above)
        from gclf.runtime.metadata import KEY_VARIANT

        self.path = path
        self.version = ort.__version__
        self.layout = ""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = data
        if amx_layout if amx_layout is not None else has_amx_int8():
            shifted = amx_weight_layout(data)
            if shifted is not None:
                model, self.layout = shifted, "int8 weights laid out for AMX"
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several private exception types for bad files
            raise BadModelError(f"{path}: not a loadable ONNX model ({short_error(exc)})") from None
        self._input_name = self.session.get_inputs()[0].name if self.session.get_inputs() else ""
        self.precision = "int8" if self.metadata_props().get(KEY_VARIANT) == "int8" else "fp32"

    def metadata_props(self) -> Mapping[str, str]:
        return self.session.get_modelmeta().custom_metadata_map

    def input_shapes(self) -> list[Dims]:
        return [i.shape for i in self.session.get_inputs()]

    def output_shapes(self) -> list[Dims]:
        return [o.shape for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self._input_name: batch})[0]
        except Exception as exc:  # ORT raises several private exception types (Fail, RuntimeException, ...)
            raise BadModelError(f"{self.path}: onnxruntime failed running the model ({short_error(exc)})") from None


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    return msg[:300]
