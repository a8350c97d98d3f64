"""PreprocessSpec as data (JSON round trip, strict parsing) and the tensor `preprocess` makes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gclf.runtime.errors import BadModelError
from gclf.runtime.preprocess import PreprocessSpec, preprocess, preprocess_batch, resize_to_input


def test_spec_json_round_trip_keeps_every_field() -> None:
    spec = PreprocessSpec(input_height=96, input_width=128, interpolation="area", mean_01=(0.5, 0.25, 0.125), std_01=(0.2, 0.3, 0.4))

    text = spec.to_json()
    again = PreprocessSpec.from_json(text)

    assert again == spec
    assert isinstance(again.mean_01, tuple) and isinstance(again.std_01, tuple)  # hashable, frozen
    assert json.loads(text)["input_height"] == 96  # plain JSON, not str(dict)
    assert again.to_json() == text  # deterministic


def _valid_dict() -> dict:
    return PreprocessSpec(input_height=64, input_width=48).to_dict()


def test_from_dict_accepts_its_own_output() -> None:
    assert PreprocessSpec.from_dict(_valid_dict()) == PreprocessSpec(input_height=64, input_width=48)


@pytest.mark.parametrize("field", ["mean_01", "input_height", "channel_order", "version"])
def test_from_dict_refuses_a_missing_field(field: str) -> None:
    d = _valid_dict()
    del d[field]

    with pytest.raises(BadModelError, match=field):
        PreprocessSpec.from_dict(d)


def test_from_dict_refuses_an_unknown_field() -> None:
    d = _valid_dict()
    d["crop_pct"] = 0.875

    with pytest.raises(BadModelError, match="crop_pct"):
        PreprocessSpec.from_dict(d)


@pytest.mark.parametrize(
    "field, value",
    [
        ("input_height", 0),
        ("input_height", 5000),
        ("input_height", "224"),
        ("input_height", 224.0),
        ("input_width", True),
        ("interpolation", "lanczos"),
        ("channel_order", "BGR"),
        ("resize_mode", "center_crop"),
        ("alpha", "composite_on_black"),
        ("input_format", "uint8_nhwc"),
        ("std_01", [0.2, 0.0, 0.2]),
        ("std_01", [0.2, -1.0, 0.2]),
        ("mean_01", [0.5, 0.5]),
        ("mean_01", ["a", "b", "c"]),
        ("mean_01", None),
        ("mean_01", "123"),  # a string is not three numbers, even if it iterates into three
        ("std_01", [0.2, math.nan, 0.2]),
        ("version", 2),
    ],
)
def test_from_dict_refuses_bad_values(field: str, value: object) -> None:
    d = _valid_dict()
    d[field] = value

    with pytest.raises(BadModelError, match=field):
        PreprocessSpec.from_dict(d)


@pytest.mark.parametrize("text", ["not json", "[1, 2, 3]", "null"])
def test_from_json_refuses_what_is_not_a_json_object(text: str) -> None:
    with pytest.raises(BadModelError, match="preprocessing spec"):
        PreprocessSpec.from_json(text)


def test_preprocess_shape_dtype_and_exact_normalised_values() -> None:
    spec = PreprocessSpec(input_height=16, input_width=24)  # not square: catches swapped H/W
    rgb = np.empty((30, 10, 3), dtype=np.uint8)
    rgb[:] = (255, 0, 128)

    x = preprocess(rgb, spec)

    assert x.dtype == np.float32
    assert x.shape == (3, 16, 24)
    mean, std = np.array(spec.mean_01), np.array(spec.std_01)
    expected = (np.array([255, 0, 128]) / 255.0 - mean) / std  # (x / 255 - mean) / std, per RGB channel
    for channel in range(3):
        assert np.allclose(x[channel], expected[channel], rtol=0, atol=1e-6)


def test_preprocess_squashes_without_keeping_aspect_ratio() -> None:
    # 10 rows x 40 columns: red in the left quarter, blue elsewhere. A centre crop would
    # drop the red, a letterbox would add padding rows: squash keeps everything, stretched.
    spec = PreprocessSpec(input_height=16, input_width=16, interpolation="nearest")
    rgb = np.zeros((10, 40, 3), dtype=np.uint8)
    rgb[:, :10] = (255, 0, 0)
    rgb[:, 10:] = (0, 0, 255)

    resized = resize_to_input(rgb, spec)

    assert resized.shape == (16, 16, 3)
    red = resized[:, :, 0] == 255
    assert np.array_equal(red, np.broadcast_to(np.arange(16) < 4, (16, 16)))  # a quarter of every row
    assert np.all(resized[~red] == (0, 0, 255))
    x = preprocess(rgb, spec)
    assert np.array_equal(x, preprocess(resized, spec))  # preprocess squashes the same way


def test_image_already_at_input_size_is_not_resampled() -> None:
    spec = PreprocessSpec(input_height=8, input_width=8)
    rgb = np.random.default_rng(0).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)

    assert resize_to_input(rgb, spec) is rgb


def test_preprocess_batch_is_a_stack_of_preprocess() -> None:
    spec = PreprocessSpec(input_height=12, input_width=20)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(9, 31), (40, 12), (12, 20)]]

    batch = preprocess_batch(images, spec)

    assert batch.shape == (3, 3, 12, 20) and batch.dtype == np.float32
    assert np.array_equal(batch, np.stack([preprocess(img, spec) for img in images]))
    assert preprocess_batch([], spec).shape == (0, 3, 12, 20)
