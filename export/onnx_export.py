"""Write a gclf checkpoint as an ONNX model that carries its own preprocessing and classes."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import onnx
import torch

from gclf.runtime.calibration import KEY_CALIBRATION
from gclf.runtime.metadata import KEY_CLASSES, KEY_DECISION, KEY_FORMAT, KEY_PREPROCESS, KEY_QUANTIZATION, KEY_REFERENCE, KEY_TRAINING, KEY_VARIANT, ModelMetadata

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MAX_LOGIT_DIFF = 1e-4  # torch vs onnxruntime, absolute, on real images
# The metadata keys `ModelMetadata` writes, and set_metadata replaces.
# A calibration and a decision threshold are owned too: each file fits its own (an int8 copy
# answers a little differently from its parent), so neither is ever inherited unseen.
OWNED_KEYS = frozenset({KEY_FORMAT, KEY_PREPROCESS, KEY_CLASSES, KEY_VARIANT, KEY_TRAINING, KEY_QUANTIZATION, KEY_REFERENCE, KEY_CALIBRATION, KEY_DECISION})



def set_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Replace the keys `ModelMetadata` owns (OWNED_KEYS) in `metadata_props` with `metadata`,
    keeping every other key: what was recorded beside them (`gclf.card`) travels from an fp32
    file into the int8 copy made from it."""
    props = metadata.to_props()
    kept = [p for p in model.metadata_props if p.key not in OWNED_KEYS]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def read_metadata(model: onnx.ModelProto, source: str) -> ModelMetadata:
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, source=source)


def to_onnx_model(model: torch.nn.Module, input_hw: tuple[int, int]) -> onnx.ModelProto:
    """Trace `model` (in eval mode, so GoogLeNet returns plain logits) with a dynamic batch axis."""
    model = model.eval().cpu()
    example = torch.zeros(2, 3, *input_hw)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter narrates each step on stdout; keep the user's terminal for gclf's own lines.
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
        )
    return program.model_proto


def max_logit_difference(model: torch.nn.Module, onnx_path: Path, batch: np.ndarray) -> float:
    """Largest |torch - onnxruntime| logit difference on `batch` (float32 NCHW)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model.eval().cpu()(torch.from_numpy(batch)).numpy()
    got = session.run(None, {INPUT_NAME: batch})[0]
    return float(np.abs(expected - got).max())
