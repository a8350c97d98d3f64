"""Whatever is in a photo folder: every file is decoded correctly or refused by name.

Odd but valid images (1x1, extreme aspect ratios, palette, grey+alpha, CMYK, 1-bit, EXIF
orientations) decode to what a photo viewer shows; broken or hostile ones (huge headers,
float pixels, cut-off data) are an `ImageDecodeError` naming the file. gclf-train's scan and
gclf-infer go through the same `decode_image`, and report the same files.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from gclf.runtime.cli.infer import main as infer_main
from gclf.runtime.decode import MAX_IMAGE_PIXELS, composite_on_white, decode_image
from gclf.runtime.errors import EXIT_PARTIAL, ImageDecodeError, UsageError
from gclf.runtime.preprocess import PreprocessSpec, preprocess
from gclf.train.scan import ImageStore, scan_folders
from gclf_testutil import MEASURE_PEAK, encode_image, noise_bgr, rgba_png_of_zeros, solid_bgr

Image = pytest.importorskip("PIL.Image", reason="Pillow (a matplotlib dependency) writes the odd formats OpenCV cannot")
ImageOps = pytest.importorskip("PIL.ImageOps")

SPEC = PreprocessSpec(input_height=32, input_width=32)
RED, WHITE = (255, 0, 0), (255, 255, 255)


def _pil_bytes(image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def _palette_png(transparent: bool) -> bytes:
    image = Image.new("P", (6, 4), 0)
    image.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    return _pil_bytes(image, "PNG", **({"transparency": 0} if transparent else {}))


# name -> (file bytes, RGB colour of every pixel after decoding)
ODD_BUT_VALID = {
    "palette.png": (_palette_png(False), RED),
    "palette-transparent.png": (_palette_png(True), WHITE),  # the transparent entry composites to white
    "grey-alpha.png": (_pil_bytes(Image.new("LA", (5, 3), (0, 0)), "PNG"), WHITE),
    "one-bit.png": (_pil_bytes(Image.new("1", (9, 2), 1), "PNG"), WHITE),
    "cmyk.jpg": (_pil_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95), RED),
    "cmyk.tif": (_pil_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "TIFF"), RED),
    "red.gif": (_pil_bytes(Image.new("RGB", (7, 5), RED), "GIF"), RED),
    "red.webp": (_pil_bytes(Image.new("RGB", (7, 5), RED), "WEBP", lossless=True), RED),
    "red.bmp": (encode_image(solid_bgr(RED, 3, 4), ".bmp"), RED),
    "red.ppm": (encode_image(solid_bgr(RED, 3, 4), ".ppm"), RED),
}


@pytest.mark.parametrize("name", sorted(ODD_BUT_VALID))
def test_odd_but_valid_formats_decode_to_what_a_viewer_shows(name: str) -> None:
    data, colour = ODD_BUT_VALID[name]

    img = decode_image(data, name=name)

    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert np.abs(img.astype(int) - colour).max() <= 3, img[0, 0]
    assert preprocess(img, SPEC).shape == (3, 32, 32)


@pytest.mark.parametrize("height, width", [(1, 1), (1, 4000), (4000, 1), (2, 3)])
def test_tiny_and_extreme_aspect_images_are_squashed_to_the_input(height: int, width: int) -> None:
    data = encode_image(noise_bgr(1, height, width), ".png")

    x = preprocess(decode_image(data), SPEC)

    assert x.shape == (3, 32, 32) and np.isfinite(x).all()


def test_float_and_32_bit_pixels_are_refused_by_name() -> None:
    for mode in ("F", "I"):
        with pytest.raises(ImageDecodeError, match=r"^odd\.tif: unsupported pixel type"):
            decode_image(_pil_bytes(Image.new(mode, (4, 3)), "TIFF"), name="odd.tif")


# --- EXIF orientation: as a viewer shows the photo, for every format that carries it --------


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_is_applied_like_a_photo_viewer(fmt: str, orientation: int) -> None:
    rgb = np.random.default_rng(orientation).integers(0, 256, size=(20, 40, 3), dtype=np.uint8)
    rgb[:10, :20] = RED  # a marker in the top-left quarter, so every turn and mirror differs
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"tiffinfo": {0x0112: orientation}} if fmt == "TIFF" else {"exif": exif.tobytes()}
    if fmt == "WEBP":
        options["lossless"] = True
    data = _pil_bytes(Image.fromarray(rgb), fmt, **options)
    viewer = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))

    img = decode_image(data)

    assert img.shape == viewer.shape
    assert np.abs(img.astype(int) - viewer).max() <= 2


# --- huge headers: refused from the header, before any decoder allocates ----------------------


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _jpeg_header(width: int, height: int) -> bytes:
    small = encode_image(noise_bgr(2, 8, 8), ".jpg")
    sof = small.index(b"\xff\xc0")
    return small[: sof + 5] + struct.pack(">HH", height, width) + small[sof + 9:]


def _bmp_header(width: int, height: int) -> bytes:
    data = bytearray(encode_image(noise_bgr(3, 4, 4), ".bmp"))
    data[18:26] = struct.pack("<ii", width, -height)  # negative height: top-down rows
    return bytes(data)


def _tiff_header(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (279, 4, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 16) + b"\0" * 8 + ifd


def _webp_header(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


HUGE = {
    "png": _png_header(50000, 50000),
    "jpeg": _jpeg_header(60000, 60000),
    "bmp": _bmp_header(40000, 40000),
    "tiff": _tiff_header(100000, 100000),
    "webp": _webp_header(16000000, 30),
    "pnm": b"P6\n# a comment\n30000 30000\n255\n" + b"\0" * 64,
    "gif": b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\0" * 32,
}


@pytest.mark.parametrize("fmt", sorted(HUGE))
def test_a_header_claiming_a_huge_image_is_refused_before_decoding(fmt: str) -> None:
    started = time.monotonic()

    with pytest.raises(ImageDecodeError, match=rf"^huge\.{fmt}: image too large \(\d+x\d+ pixels") as info:
        decode_image(HUGE[fmt], name=f"huge.{fmt}")

    assert time.monotonic() - started < 1.0  # nothing was allocated or decoded
    assert f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels" in str(info.value)


def test_a_large_but_allowed_header_is_left_to_the_decoder() -> None:
    # 2000x2000 is fine: the header check passes, and the broken data fails in the decoder.
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        decode_image(_png_header(2000, 2000), name="big.png")


def test_a_tiny_file_claiming_millions_of_pixels_is_refused_as_a_bomb() -> None:
    data = _png_header(7000, 7000)  # 49 megapixels (allowed) in under 150 bytes (impossible)

    with pytest.raises(ImageDecodeError, match=r"^bomb\.png: .*7000x7000 pixels.*decompression bomb"):
        decode_image(data, name="bomb.png")


def test_a_large_one_colour_image_that_compresses_well_is_not_a_bomb() -> None:
    data = encode_image(np.full((4000, 4200), 200, dtype=np.uint8), ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert 4000 * 4200 / len(data) > 100  # far beyond any photo's pixels per byte

    assert decode_image(data).shape == (4000, 4200, 3)


def test_a_png_chunk_claiming_gigabytes_is_refused_before_decoding() -> None:
    # Found by the fuzz test: OpenCV's PNG reader allocated a chunk's declared length (here
    # 2 GB) before reading it, so a 100-byte file cost gigabytes of memory and seconds.
    data = bytearray(_png_header(32, 24))
    idat = data.index(b"IDAT") - 4
    data[idat:idat + 4] = struct.pack(">I", 0x7FFFFFFF)
    started = time.monotonic()

    with pytest.raises(ImageDecodeError, match=r"^cut\.png: .*chunk 'IDAT' claims 2147483647 bytes"):
        decode_image(bytes(data), name="cut.png")
    assert time.monotonic() - started < 1.0


def test_unknown_formats_are_refused_by_their_signature() -> None:
    with pytest.raises(ImageDecodeError, match=r"^x\.jpg: not a readable image \(not JPEG, PNG"):
        decode_image(b"%PDF-1.7 not a photo", name="x.jpg")


# --- training and inference report the same files -------------------------------------------


def _photo_folder(root: Path) -> tuple[set[str], set[str]]:
    """Two classes of good images plus every kind of bad file; returns (good, bad) names."""
    good, bad = set(), set()
    for cls, colour in (("red", RED), ("blue", (0, 0, 255))):
        for i in range(3):
            path = root / cls / f"{cls}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_image(solid_bgr(colour, 6 + i, 9), ".png"))
            good.add(path.name)
    files = {
        "red/odd-palette.png": _palette_png(False),
        "red/huge.png": HUGE["png"],
        "red/empty.jpg": b"",
        "red/notes.jpg": b"shopping list\n",
        "blue/cut.jpg": encode_image(noise_bgr(5, 32, 32), ".jpg")[:200],
        "blue/float.tif": _pil_bytes(Image.new("F", (4, 3)), "TIFF"),
        "blue/flipped.png": bytes(b ^ 0xFF if 30 < i < 60 else b for i, b in enumerate(encode_image(noise_bgr(6, 8, 8), ".png"))),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
        (good if name.endswith("palette.png") else bad).add(Path(name).name)
    return good, bad


def test_training_scan_and_gclf_infer_skip_the_same_files_by_name(tmp_path: Path, tiny_onnx) -> None:
    good, bad = _photo_folder(tmp_path / "photos")

    scan = scan_folders([tmp_path / "photos"], ImageStore(SPEC))
    infer = CliRunner().invoke(infer_main, [str(tiny_onnx()), str(tmp_path / "photos")])

    assert {s.path.name for s in scan.samples} == good
    assert {Path(p).name for p, _ in scan.skipped} == bad
    assert infer.exit_code == EXIT_PARTIAL, infer.output
    skipped_lines = [line for line in infer.stderr.splitlines() if line.startswith("skipped: ")]
    assert {Path(line.removeprefix("skipped: ").split(":")[0]).name for line in skipped_lines} == bad
    assert f"{len(good)} classified, {len(bad)} skipped" in infer.stderr
    assert "Traceback" not in infer.output


# --- limits for a small device ------------------------------------------------------------------


def test_a_small_png_declaring_20000x20000_rgba_is_refused_by_name_in_bounded_memory(tmp_path: Path, tiny_onnx, write_image) -> None:
    """The issue's probe: 1.5 MB on disk, 1.6 GB decoded, more with float alpha copies."""
    import subprocess
    import sys

    photos = tmp_path / "photos"
    photos.mkdir()
    bomb = rgba_png_of_zeros(photos / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 2_000_000
    write_image(photos / "ok.png", solid_bgr((0, 0, 255)))
    run = subprocess.run(
        [sys.executable, "-c", MEASURE_PEAK, sys.executable, "-m", "gclf.runtime.cli", str(tiny_onnx()), str(photos)],
        capture_output=True, text=True, timeout=300,
    )
    *messages, peak = run.stderr.strip().splitlines()
    assert run.returncode == EXIT_PARTIAL, run.stderr
    assert any(f"{bomb}: image too large (20000x20000 pixels" in line for line in messages), messages
    assert "ok.png" in run.stdout and "bomb.png" not in run.stdout  # the other photo is classified
    assert int(peak) <= 700_000_000, f"peak memory {int(peak) / 1e6:.0f} MB"


def test_alpha_compositing_makes_no_float_copy_of_the_image() -> None:
    import tracemalloc

    rgba = np.random.default_rng(0).integers(0, 256, (1500, 1200, 4), dtype=np.uint8)
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255
    expected = np.rint(rgba[:, :, :3].astype(np.float32) * alpha + 255 * (1 - alpha)).astype(np.uint8)[:, :, ::-1]
    del alpha
    tracemalloc.start()
    try:
        got = composite_on_white(rgba)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(got, expected)  # the same rounding as the float formula
    output = 1500 * 1200 * 3
    assert peak < output + 12_000_000  # the result and one band of uint16 rows; a float32 RGB copy alone is 21.6 MB


def test_the_limits_can_be_raised_or_lowered_for_a_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode_image(noise_bgr(0, 30, 40), ".png")
    monkeypatch.setenv("GCLF_MAX_IMAGE_BYTES", str(len(data) - 1))
    with pytest.raises(ImageDecodeError, match=r"^x\.png: file too large .*GCLF_MAX_IMAGE_BYTES"):
        decode_image(data, name="x.png")
    monkeypatch.setenv("GCLF_MAX_IMAGE_BYTES", str(len(data)))
    assert decode_image(data).shape == (30, 40, 3)
    monkeypatch.setenv("GCLF_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageDecodeError, match=r"image too large \(40x30 pixels.*GCLF_MAX_IMAGE_PIXELS raises it"):
        decode_image(data, name="x.png")
    monkeypatch.setenv("GCLF_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(UsageError, match="GCLF_MAX_IMAGE_PIXELS must be a positive whole number"):
        decode_image(data)


def test_a_file_over_the_size_cap_is_not_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + bytes(5000))
    monkeypatch.setenv("GCLF_MAX_IMAGE_BYTES", "1000")
    with pytest.raises(ImageDecodeError, match=rf"^{big}: file too large \(5003 bytes"):
        decode_image(big)
