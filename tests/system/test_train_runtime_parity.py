"""Training's evaluation tensors are bit-identical to the runtime's `preprocess(decode_image(path))`.

This is the preprocessing contract: a model is evaluated during training on exactly what
the runtime will feed it on a device.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gclf.runtime.decode import decode_image
from gclf.runtime.preprocess import PreprocessSpec, preprocess
from gclf.train.dataset import ImageDataset
from gclf.train.scan import ImageStore, scan_folders
from gclf.train.synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Half grey, a quarter PNG, odd sizes: every decode and resize path is exercised.
    return make_shapes_dataset(tmp_path_factory.mktemp("parity") / "data", per_class=8, grey_share=0.5, min_side=24, max_side=90)


def _is_grey_file(path: Path) -> bool:
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED).ndim == 2


@pytest.mark.parametrize("memory_budget_bytes", [4 << 30, 0], ids=["decoded-in-memory", "decoded-again-from-disk"])
def test_evaluation_dataset_equals_runtime_preprocess(shapes: Path, memory_budget_bytes: int) -> None:
    spec = PreprocessSpec(input_height=40, input_width=56)
    store = ImageStore(spec, memory_budget_bytes)
    scan = scan_folders([shapes], store)
    dataset = ImageDataset(scan.samples, store, spec)  # no augment: the evaluation path
    paths = [s.path for s in scan.samples]
    assert len(paths) == 16
    assert any(p.suffix == ".png" for p in paths) and any(p.suffix == ".jpg" for p in paths)
    assert any(_is_grey_file(p) for p in paths) and not all(_is_grey_file(p) for p in paths)

    for i, sample in enumerate(scan.samples):
        x, label = dataset[i]
        expected = preprocess(decode_image(sample.path), spec)
        assert x.dtype.is_floating_point and x.numpy().dtype == np.float32
        assert np.array_equal(x.numpy(), expected), sample.path
        assert label == scan.class_names.index(sample.path.parent.name)


def test_augmented_path_runs_the_same_preprocess_after_augmenting(shapes: Path) -> None:
    spec = PreprocessSpec(input_height=32, input_width=32)
    store = ImageStore(spec)
    scan = scan_folders([shapes], store)
    flip = lambda rgb, rng: np.ascontiguousarray(rgb[:, ::-1])  # noqa: E731  a deterministic "augmentation"
    dataset = ImageDataset(scan.samples, store, spec, augment=flip)

    for i, sample in enumerate(scan.samples[:4]):
        x, _ = dataset[i]
        decoded = decode_image(sample.path)
        assert np.array_equal(x.numpy(), preprocess(np.ascontiguousarray(decoded[:, ::-1]), spec))
