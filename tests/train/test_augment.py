"""Augmentation works on decoded RGB images and keeps them valid for the preprocessing contract."""

from __future__ import annotations

import numpy as np

from gclf.runtime.preprocess import PreprocessSpec, preprocess
from gclf.train.augment import PRESETS, AugmentConfig, augment


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    img[:, :, 0] = 200  # strongly red, so grey conversion is visible
    return img


def test_none_is_identity_and_disabled() -> None:
    img = _image()
    assert not PRESETS["none"].enabled
    assert np.array_equal(augment(img, np.random.default_rng(1), PRESETS["none"]), img)


def test_flip_mirrors_exactly() -> None:
    img = _image()
    outs = [augment(img, np.random.default_rng(s), AugmentConfig(flip=True)) for s in range(20)]
    assert any(np.array_equal(o, img[:, ::-1]) for o in outs) and any(np.array_equal(o, img) for o in outs)


def test_grey_always_makes_equal_channels() -> None:
    out = augment(_image(), np.random.default_rng(0), AugmentConfig(grey_p=1.0))
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])


def test_crop_keeps_at_least_the_requested_area() -> None:
    img = _image()
    for seed in range(20):
        out = augment(img, np.random.default_rng(seed), AugmentConfig(crop_scale=0.5))
        assert out.shape[0] <= 60 and out.shape[1] <= 90
        assert out.shape[0] * out.shape[1] >= 0.5 * 60 * 90 * 0.75  # area share, less aspect rounding


def test_same_seed_same_result_and_contract_accepts_it() -> None:
    img, cfg = _image(), PRESETS["standard"]
    a = augment(img, np.random.default_rng(7), cfg)
    b = augment(img, np.random.default_rng(7), cfg)
    assert np.array_equal(a, b)
    x = preprocess(a, PreprocessSpec(input_height=32, input_width=32))
    assert x.shape == (3, 32, 32) and np.isfinite(x).all()
