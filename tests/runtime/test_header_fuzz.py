"""Fuzzing gclf's header parsers against the decoders' own answer: whatever a mutated file's
header says, the parse must never find a smaller image than `cv2.imdecode` decodes.

A parse that says "smaller" is a way around the pixel cap (a file that tells gclf one size
and the decoder another). Seeds are small images of every decoded format, including the
structures of the decoder bombs at harmless sizes (JPEG stuffing after SOI, a raw VP8L
stream, PNM comments ending in CR or past 4 KB, TIFF sizes as SLONG or repeated, an
extended WebP with many chunks). Hypothesis flips bits, overwrites header words, truncates,
deletes, inserts and repeats bytes; each case is parsed, then decoded the way
`decode_image` decodes it.

Cases whose header claims more than `SMALL` pixels are not decoded (the parse already says
"large"; decoding them would only cost time). The run is bounded and reproducible
(`derandomize=True`): GCLF_FUZZ_EXAMPLES sets the number of cases (default 2000).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import decoder_bombs
from gclf.runtime.decode import _header_size, _sniff_format, _Unreadable
from gclf.runtime.limits import opencv_limits_in_force
from gclf_testutil import encode_image, noise_bgr

EXAMPLES = int(os.environ.get("GCLF_FUZZ_EXAMPLES", "2000"))
SMALL = 4_000_000  # pixels: decoding at most this (or OpenCV's limit, 50 MP) per case
STATS = {"cases": 0, "decoded": 0, "no_format": 0, "unreadable": 0, "claims_large": 0}


def _bomb_structures() -> list[bytes]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        files = [
            decoder_bombs.jpeg_stuffing_after_soi(out / "a.jpg", side=48),
            decoder_bombs.webp_raw_vp8l(out / "b.webp", side=40),
            decoder_bombs.pbm_long_comment(out / "c.pbm", side=24),
            decoder_bombs.pbm_comment_ending_in_cr(out / "d.pbm", side=24),
            decoder_bombs.tiff_slong_size(out / "e.tif", side=30),
            decoder_bombs.tiff_duplicated_size(out / "f.tif", side=30),
            decoder_bombs.webp_many_chunks(out / "g.webp", n_chunks=40),
        ]
        return [path.read_bytes() for path in files]


def _seeds() -> list[bytes]:
    colour = noise_bgr(3, 24, 32)
    grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    rgba = np.dstack([colour, np.full((24, 32), 200, np.uint8)])
    seeds = [
        encode_image(colour, ".jpg"),
        encode_image(grey, ".jpg"),
        encode_image(colour, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        encode_image(colour, ".png"),
        encode_image(colour.astype(np.uint16) * 257, ".png"),
        encode_image(rgba, ".png"),
        encode_image(colour, ".bmp"),
        encode_image(colour, ".tif"),
        encode_image(colour, ".webp"),
        encode_image(colour, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
        encode_image(colour, ".ppm"),
        encode_image(grey, ".pgm"),
        b"P5\n# scanner\r# two\r\n32 24\n255\n" + grey.tobytes(),
    ]
    try:
        from PIL import Image

        for mode, fmt, options in [("RGB", "GIF", {}), ("RGBA", "WEBP", {"lossless": True}), ("RGB", "JPEG", {"exif": b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0"})]:
            buf = io.BytesIO()
            Image.fromarray(colour[:, :, ::-1].copy()).convert(mode).save(buf, fmt, **options)
            seeds.append(buf.getvalue())
    except ImportError:
        pass
    return seeds + _bomb_structures()


SEEDS = _seeds()
WORDS = [b"\xff\xff", b"\x00\x00", b"\x7f\xff", b"\x80\x00", b"\x00\x01", b"\xff\x00", b"\x4e\x20", b"\xff\xff\xff\xff", b"\x00\x00\x4e\x20"]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip_header", "header_word", "header_byte", "truncate", "delete", "insert", "repeat"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip_header" and data:  # headers are where sizes and lengths live
            data[at % min(len(data), 512)] ^= 1 << draw(st.integers(0, 7))
        elif op == "header_word":
            start = draw(st.integers(0, 200))
            word = draw(st.sampled_from(WORDS))
            data[start:start + len(word)] = word
        elif op == "header_byte":
            data[draw(st.integers(0, 200)):][:1] = bytes([draw(st.sampled_from([0x00, 0x01, 0x0D, 0x0A, 0x23, 0x2F, 0x20, 0xD8, 0xC0, 0xFF]))])
        elif op == "truncate":
            del data[at:]
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at % min(len(data) + 1, 512):at % min(len(data) + 1, 512)] = draw(st.binary(min_size=1, max_size=24))
        elif op == "repeat":
            data[at:at] = bytes(data[at:at + draw(st.integers(1, 32))]) * draw(st.integers(1, 8))
    return bytes(data)


@pytest.fixture(scope="module", autouse=True)
def _report():
    if not opencv_limits_in_force():
        pytest.skip("OpenCV loaded before gclf.runtime: its own limit, which bounds each decode here, is not set")
    yield
    print(f"\nheader fuzz: {STATS}")


def _check(data: bytes) -> None:
    STATS["cases"] += 1
    kind = _sniff_format(data)
    if kind is None:
        STATS["no_format"] += 1  # refused by its signature before any decoder
        return
    try:
        size = _header_size(kind, data)
    except _Unreadable:
        STATS["unreadable"] += 1  # refused before any decoder
        return
    if size is not None and size[0] * size[1] > SMALL:
        STATS["claims_large"] += 1
        return
    flags = cv2.IMREAD_COLOR if kind == "JPEG" else cv2.IMREAD_UNCHANGED  # as decode_image decodes
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return
    if img is None or img.size == 0:
        return
    STATS["decoded"] += 1
    height, width = img.shape[:2]
    assert size is not None, f"{kind}: decoded {width}x{height}, but the header parse found no size"
    # EXIF orientation may swap the sides of a JPEG: compare pixels and the longer side.
    assert size[0] * size[1] >= width * height and max(size) >= max(width, height), f"{kind}: header {size}, decoded {width}x{height}"


def test_seeds_decode_at_the_size_their_header_says() -> None:
    for data in SEEDS:
        kind = _sniff_format(data)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if kind == "JPEG" else cv2.IMREAD_UNCHANGED)
        assert img is not None, kind
        assert sorted(_header_size(kind, data)) == sorted(img.shape[:2]), kind


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
@given(mutated_images())
def test_the_header_parse_never_finds_a_smaller_image_than_the_decoder(data: bytes) -> None:
    _check(data)
