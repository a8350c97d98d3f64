"""decode_image: every file becomes RGB uint8 (H, W, 3), or an ImageDecodeError naming it."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from gclf.runtime.decode import decode_image
from gclf.runtime.errors import ImageDecodeError
from gclf_testutil import encode_image, solid_bgr


def _assert_rgb8(img: np.ndarray, height: int, width: int) -> None:
    assert img.dtype == np.uint8
    assert img.shape == (height, width, 3)


def test_grey_png_is_replicated_into_three_equal_channels(tmp_path: Path, write_image) -> None:
    grey = np.arange(6 * 7, dtype=np.uint8).reshape(6, 7) * 5
    path = write_image(tmp_path / "grey.png", grey)

    img = decode_image(path)

    _assert_rgb8(img, 6, 7)
    for channel in range(3):
        assert np.array_equal(img[:, :, channel], grey)


def test_grey_jpeg_is_replicated_into_three_equal_channels(tmp_path: Path, write_image) -> None:
    grey = np.tile(np.linspace(0, 250, 24, dtype=np.uint8), (16, 1))
    path = write_image(tmp_path / "grey.jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED).ndim == 2  # really a 1-channel JPEG

    img = decode_image(path)

    _assert_rgb8(img, 16, 24)
    assert np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 1], img[:, :, 2])
    assert np.abs(img[:, :, 0].astype(int) - grey).max() <= 4  # lossy, but the same picture


def test_16bit_png_is_scaled_to_8bit_with_rounding(tmp_path: Path, write_image) -> None:
    # 65535 -> 255, 32896 (= 128 * 257) -> 128, 257 -> 1, 386 (1.502) -> 2, 0 -> 0
    grey16 = np.array([[0, 257, 386, 32896, 65535]], dtype=np.uint16)
    colour16 = np.zeros((1, 2, 3), dtype=np.uint16)
    colour16[0, 0] = (65535, 0, 32896)  # BGR: blue full, red half
    colour16[0, 1] = (0, 65535, 257)

    grey = decode_image(write_image(tmp_path / "grey16.png", grey16))
    colour = decode_image(write_image(tmp_path / "colour16.png", colour16))

    _assert_rgb8(grey, 1, 5)
    assert grey[0, :, 0].tolist() == [0, 1, 2, 128, 255]
    _assert_rgb8(colour, 1, 2)
    assert colour[0, 0].tolist() == [128, 0, 255]  # RGB order
    assert colour[0, 1].tolist() == [1, 255, 0]


def test_rgba_png_is_composited_on_white(tmp_path: Path, write_image) -> None:
    bgra = np.zeros((1, 4, 4), dtype=np.uint8)
    bgra[0, 0] = (0, 0, 255, 255)  # opaque red
    bgra[0, 1] = (0, 255, 0, 0)  # fully transparent green: junk colour, must vanish
    bgra[0, 2] = (0, 0, 0, 128)  # half-transparent black: 255 * (1 - 128/255) = 127
    bgra[0, 3] = (255, 0, 0, 51)  # 20 % blue over white: R = G = 0.8 * 255 = 204

    img = decode_image(write_image(tmp_path / "rgba.png", bgra))

    _assert_rgb8(img, 1, 4)
    assert img[0].tolist() == [[255, 0, 0], [255, 255, 255], [127, 127, 127], [204, 204, 255]]


def test_pure_red_png_decodes_to_red_in_rgb_order(tmp_path: Path, write_image) -> None:
    img = decode_image(write_image(tmp_path / "red.png", solid_bgr((255, 0, 0))))

    assert np.all(img[:, :, 0] == 255)
    assert np.all(img[:, :, 1:] == 0)


def test_pure_red_jpeg_decodes_to_red_in_rgb_order(tmp_path: Path, write_image) -> None:
    img = decode_image(write_image(tmp_path / "red.jpg", solid_bgr((255, 0, 0)), [cv2.IMWRITE_JPEG_QUALITY, 95]))

    assert img[:, :, 0].min() >= 240
    assert img[:, :, 1:].max() <= 15


def _jpeg_with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment holding only the Orientation tag (0x0112) after SOI."""
    assert jpeg[:2] == b"\xff\xd8"
    ifd_entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)  # tag, SHORT, count 1, value, pad
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + ifd_entry + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    # 20 rows x 40 columns, blue, with a red top-left quarter.
    bgr = solid_bgr((0, 0, 255), height=20, width=40)
    bgr[:10, :20] = (0, 0, 255)
    plain = encode_image(bgr, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_with_exif_orientation(plain, 6))  # 6: rotate 90 degrees clockwise to view

    unrotated = decode_image(plain)
    img = decode_image(path)

    _assert_rgb8(unrotated, 20, 40)
    _assert_rgb8(img, 40, 20)
    # Clockwise: the red top-left quarter ends at the top-right.
    assert img[2, -3, 0] > 200 and img[2, -3, 2] < 50
    assert img[2, 2, 2] > 200 and img[2, 2, 0] < 50


def test_empty_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")

    with pytest.raises(ImageDecodeError, match="empty file") as info:
        decode_image(path)
    assert str(path) in str(info.value)


def test_text_file_with_jpg_extension_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")

    with pytest.raises(ImageDecodeError, match="not a readable image") as info:
        decode_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg_is_refused_by_name(tmp_path: Path, keep: float) -> None:
    noisy = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    data = encode_image(noisy, ".jpg")
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: int(len(data) * keep)])

    with pytest.raises(ImageDecodeError) as info:
        decode_image(path)
    assert str(path) in str(info.value)


def test_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "absent.png"

    with pytest.raises(ImageDecodeError, match="cannot read file") as info:
        decode_image(path)
    assert str(path) in str(info.value)


def test_bytes_are_labelled_with_the_given_name() -> None:
    with pytest.raises(ImageDecodeError, match=r"^upload-7\.jpg: "):
        decode_image(b"GIF89a-not-really", name="upload-7.jpg")
