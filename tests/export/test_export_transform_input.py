"""torchvision's ImageNet GoogLeNet weights switch on `transform_input`, which re-normalises the
input inside the model. The exported ONNX graph must do the same as PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gclf.export.pipeline import export_fp32, locate_run
from gclf.runtime.classifier import Classifier
from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.checkpoint import make_checkpoint, save_checkpoint
from gclf.train.model import new_googlenet


@pytest.mark.slow
def test_transform_input_model_exports_with_matching_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = new_googlenet(3, transform_input=True, init_weights=True)
    # Fresh BatchNorm statistics make a random network's output nearly constant; a few
    # forward passes in train mode give it statistics, so inputs change the logits.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average: exact statistics in 3 passes
        model.train()
        for _ in range(3):
            model(torch.randn(8, 3, 64, 64))
    model.eval()
    spec = PreprocessSpec(input_height=64, input_width=64)
    ckpt = make_checkpoint(
        model, class_names=["a", "b", "c"], spec=spec.to_dict(),
        init={"kind": "imagenet", "source": "test", "transform_input": True, "description": "test"},
        transform_input=True, extra={},
    )
    save_checkpoint(tmp_path / "best.pt", ckpt)
    lines: list[str] = []
    result = export_fp32(locate_run(tmp_path), tmp_path / "model.onnx", log=lines.append)
    assert result.max_logit_diff <= 1e-4

    # The same inputs through the runtime's model file and through PyTorch, with and
    # without the transform: the ONNX file must match only the model that has it.
    x = np.random.default_rng(1).normal(size=(4, 3, 64, 64)).astype(np.float32)
    onnx_logits = Classifier(tmp_path / "model.onnx").logits(x)
    with torch.no_grad():
        with_transform = model(torch.from_numpy(x)).numpy()
        model.transform_input = False
        without_transform = model(torch.from_numpy(x)).numpy()
    assert np.abs(onnx_logits - with_transform).max() <= 1e-4
    assert np.abs(onnx_logits - without_transform).max() > 1e-3
