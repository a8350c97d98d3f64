"""Fuzzing the runtime's image path: mutated image bytes never crash decode, preprocess, predict.

Seeds are real photos from ../shared/datasets/gender-faces (where present) and generated
files of every decoded format (JPEG, PNG 8/16-bit, grey, RGBA, palette, BMP, TIFF, WebP,
PNM, GIF). Hypothesis flips bits, overwrites header words with extreme values, truncates,
deletes, inserts and repeats bytes, then sends the result through `decode_image`, the
preprocessing and a tiny ONNX classifier. Every case must either predict (finite
probabilities) or raise `ImageDecodeError` with a message naming the input; any other
exception, or a crash of the process, is a failure.

The run is bounded and reproducible (`derandomize=True`): GCLF_FUZZ_EXAMPLES sets the number
of cases (default 3000, about half a minute on two slow cores).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gclf.runtime.classifier import Classifier
from gclf.runtime.decode import decode_image
from gclf.runtime.errors import ImageDecodeError
from gclf.runtime.preprocess import preprocess
from gclf_testutil import build_tiny_onnx, encode_image, noise_bgr
from gclf_testutil import SHARED

DATASET = SHARED / "datasets" / "gender-faces"
EXAMPLES = int(os.environ.get("GCLF_FUZZ_EXAMPLES", "3000"))
LABEL = "fuzz.img"
STATS = {"cases": 0, "predicted": 0, "refused": 0}


def _generated_seeds() -> list[bytes]:
    colour = noise_bgr(7, 24, 32)
    grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    rgba = np.dstack([colour, np.linspace(0, 255, 32, dtype=np.uint8)[None, :].repeat(24, 0)])
    seeds = [
        encode_image(colour, ".jpg"),
        encode_image(grey, ".jpg"),
        encode_image(colour, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        encode_image(colour, ".png"),
        encode_image(grey, ".png"),
        encode_image(colour.astype(np.uint16) * 257, ".png"),
        encode_image(rgba, ".png"),
        encode_image(colour, ".bmp"),
        encode_image(colour, ".tif"),
        encode_image(rgba, ".tif"),
        encode_image(colour, ".webp"),
        encode_image(colour, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless
        encode_image(colour, ".ppm"),
        encode_image(grey, ".pgm"),
    ]
    try:
        from PIL import Image

        for mode, fmt, options in [("P", "PNG", {}), ("RGB", "GIF", {}), ("CMYK", "JPEG", {}), ("RGB", "PNG", {"exif": b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0"})]:
            buf = io.BytesIO()
            Image.fromarray(colour[:, :, ::-1].copy()).convert(mode).save(buf, fmt, **options)
            seeds.append(buf.getvalue())
    except ImportError:
        pass
    return seeds


def _real_seeds(count: int = 12) -> list[bytes]:
    if not DATASET.is_dir():
        return []
    photos = sorted(DATASET.glob("*/*.jpg"))
    return [p.read_bytes() for p in photos[:: max(1, len(photos) // count)][:count]]


SEEDS = _real_seeds() + _generated_seeds()
HEADER_WORDS = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x01\x00\x00", b"\xff\xff"]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "flip_header", "header_word", "truncate", "delete", "insert", "repeat"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "flip_header" and data:  # headers decide how much a decoder allocates
            data[at % min(len(data), 256)] ^= 1 << draw(st.integers(0, 7))
        elif op == "header_word":
            start = draw(st.integers(0, 96))
            word = draw(st.sampled_from(HEADER_WORDS))
            data[start:start + len(word)] = word
        elif op == "truncate":
            del data[at:]
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 256))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif op == "repeat":
            data[at:at] = bytes(data[at:at + draw(st.integers(1, 64))]) * draw(st.integers(1, 8))
    return bytes(data)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Classifier]:
    yield Classifier(build_tiny_onnx(tmp_path_factory.mktemp("fuzz") / "tiny.onnx"), threads=1)
    print(f"\nfuzz: {STATS['cases']} cases from {len(SEEDS)} seeds: {STATS['predicted']} predicted, {STATS['refused']} refused by name")


def _check_one(data: bytes, classifier: Classifier) -> None:
    STATS["cases"] += 1
    try:
        rgb = decode_image(data, name=LABEL)
    except ImageDecodeError as exc:
        STATS["refused"] += 1
        message = str(exc)
        assert message.startswith(f"{LABEL}: ") and len(message) > len(LABEL) + 5, message
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.flags.c_contiguous
    assert np.isfinite(preprocess(rgb, classifier.spec)).all()
    prediction = classifier.predict(rgb)
    assert prediction.label in classifier.class_names
    assert np.isfinite(list(prediction.probabilities.values())).all() and 0.0 <= prediction.confidence <= 1.0
    STATS["predicted"] += 1


def test_seeds_are_valid_images(classifier: Classifier) -> None:
    for seed in SEEDS:
        assert decode_image(seed).size > 0


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=mutated_images())
def test_mutated_images_predict_or_are_refused_by_name(data: bytes, classifier: Classifier) -> None:
    _check_one(data, classifier)


def test_predict_files_reports_every_mutated_file_by_name(tmp_path: Path, classifier: Classifier) -> None:
    """The threaded file path of gclf-infer: results in order, errors naming each file."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(60):
        data = bytearray(SEEDS[i % len(SEEDS)])
        for at in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
            data[at] ^= 1 << int(rng.integers(0, 8))
        if i % 3 == 0:
            del data[int(rng.integers(0, len(data))):]
        paths.append(tmp_path / f"{i:02d}.jpg")
        paths[-1].write_bytes(bytes(data))

    results = list(classifier.predict_files(paths, batch_size=8))

    assert sorted(r.path for r in results) == paths
    for result in results:
        assert (result.prediction is None) == (result.error is not None)
        if result.error is not None:
            assert result.error.startswith(f"{result.path}: ")
