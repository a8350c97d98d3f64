"""Safe decoding: untrusted image bytes -> RGB uint8 (H, W, 3), or an `ImageDecodeError`.

The first step of the preprocessing contract (`gclf.runtime.preprocess`), and the one place
where untrusted bytes meet the decoders. Before OpenCV sees a file, its format is sniffed
from its signature (only formats whose headers are checked here are decoded) and its header's
size is checked, so a decompression bomb is refused before memory is allocated. After
decoding, EXIF orientation, grey, 16-bit and alpha are handled explicitly, so nothing depends
on OpenCV's implicit defaults; the spec names what happened (`GREY_TO_RGB`, ...).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from gclf.runtime.errors import ImageDecodeError, UsageError

# Sized for a small device (a Raspberry Pi with 1 to 4 GB): an image of more pixels, or a file
# of more bytes, is refused by name before a decoder allocates anything. The largest allowed
# 8-bit RGBA image needs about 200 MB decoded plus 150 MB as RGB. Raise them for a larger
# machine with $GCLF_MAX_IMAGE_PIXELS and $GCLF_MAX_IMAGE_BYTES (docs/security.md).
MAX_IMAGE_PIXELS = 50_000_000  # e.g. 8192x6104; phone photos are 12 to 50 megapixels
MAX_IMAGE_BYTES = 100_000_000
PIXELS_ENV = "GCLF_MAX_IMAGE_PIXELS"
BYTES_ENV = "GCLF_MAX_IMAGE_BYTES"
_COMPOSITE_ROWS_BYTES = 4 << 20  # alpha compositing works on bands of rows of about this many bytes
# 16-bit, alpha and grey handling, named so that the model's metadata says what happened.
DEPTH_16_TO_8 = "scale_65535_to_255"
ALPHA_HANDLING = "composite_on_white"
GREY_TO_RGB = "replicate"


def _label(source: str | os.PathLike | bytes, name: str | None) -> str:
    if name is not None:
        return name
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def _limit(env: str, default: int) -> int:
    text = os.environ.get(env)
    if not text:
        return default
    if not text.strip().isdigit() or int(text) <= 0:
        raise UsageError(f"${env} must be a positive whole number, got {text!r}")
    return int(text)


def max_image_pixels() -> int:
    """The pixel cap: MAX_IMAGE_PIXELS, or $GCLF_MAX_IMAGE_PIXELS where set."""
    return _limit(PIXELS_ENV, MAX_IMAGE_PIXELS)


def max_image_bytes() -> int:
    """The file-size cap: MAX_IMAGE_BYTES, or $GCLF_MAX_IMAGE_BYTES where set."""
    return _limit(BYTES_ENV, MAX_IMAGE_BYTES)


def _too_big_file(label: str, n_bytes: int, cap: int) -> ImageDecodeError:
    return ImageDecodeError(f"{label}: file too large ({n_bytes} bytes; gclf reads image files of up to {cap // 1_000_000} MB, ${BYTES_ENV} raises it)")


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """Read a file for decoding; an unreadable or too large file is an `ImageDecodeError` naming it."""
    cap = max_image_bytes()
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap + 1)  # never more than the cap, whatever the file's size
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if len(data) > cap:
        raise _too_big_file(str(path), os.path.getsize(path), cap)
    return data


def decode_image(source: str | os.PathLike | bytes, *, name: str | None = None) -> np.ndarray:
    """Decode an image file (path or bytes) to RGB uint8, shape (H, W, 3).

    Raises `ImageDecodeError` naming the file for anything that is not a usable image:
    this is the one place where untrusted bytes meet the decoders, so nothing else escapes.
    """
    label = _label(source, name)
    data = source if isinstance(source, (bytes, bytearray, memoryview)) else read_image_bytes(source)
    if len(data) == 0:
        raise ImageDecodeError(f"{label}: empty file")
    if len(data) > max_image_bytes():
        raise _too_big_file(label, len(data), max_image_bytes())
    data = bytes(data)
    kind = _sniff_format(data)
    if kind is None:
        raise ImageDecodeError(f"{label}: not a readable image (not {', '.join(DECODED_FORMATS)})")
    _refuse_huge(_header_size(kind, data), len(data), label)
    problem = _png_chunk_problem(data) if kind == "PNG" else None
    if problem:
        raise ImageDecodeError(f"{label}: not a readable image (corrupt or truncated PNG data: {problem})")
    try:
        # JPEG: IMREAD_COLOR applies the EXIF orientation and converts grey/CMYK to 3
        # channels; JPEG has no alpha or 16-bit to lose. Other formats: decode unchanged
        # and convert depth and channels explicitly below. IMREAD_UNCHANGED skips the EXIF
        # orientation (TIFF's decoder applies its own tag), so PNG and WebP get it below.
        flags = cv2.IMREAD_COLOR if kind == "JPEG" else cv2.IMREAD_UNCHANGED
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
        if img is None or img.size == 0:
            raise ImageDecodeError(f"{label}: not a readable image (corrupt or truncated {kind} data)")
        if kind in ("PNG", "WebP"):
            img = _apply_exif_orientation(img, _exif_orientation(kind, data))
        return _to_rgb8(img, label)
    except cv2.error as exc:
        reason = "image too large" if "MAX_IMAGE_PIXELS" in str(exc) else f"not a readable image ({_first_line(exc)})"
        raise ImageDecodeError(f"{label}: {reason}") from None
    except MemoryError:
        raise ImageDecodeError(f"{label}: not enough memory to decode this image") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1].strip() if text else type(exc).__name__


# --- cheap header parsing: refuse huge images before a decoder allocates them -----------

# The formats gclf decodes (IMAGE_EXTENSIONS' formats, plus GIF); anything else is refused
# by its signature, so only decoders whose headers are checked below ever see user bytes.
DECODED_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WebP", "PNM", "GIF")


def _sniff_format(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return "PNM"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _u16(data: bytes, at: int, order: str) -> int | None:
    return int.from_bytes(data[at:at + 2], order) if at + 2 <= len(data) else None


def _u32(data: bytes, at: int, order: str) -> int | None:
    return int.from_bytes(data[at:at + 4], order) if at + 4 <= len(data) else None


def _header_size(kind: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file header, or None where the header is unreadable (the
    decoder then fails on it, or OpenCV's own pixel limit applies)."""
    if kind == "PNG":
        return (_u32(data, 16, "big"), _u32(data, 20, "big")) if data[12:16] == b"IHDR" and len(data) >= 24 else None
    if kind == "JPEG":
        return _jpeg_size(data)
    if kind == "BMP":
        if _u32(data, 14, "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            width, height = _u16(data, 18, "little"), _u16(data, 20, "little")
        else:
            width, height = _u32(data, 18, "little"), _u32(data, 22, "little")
        if width is None or height is None:
            return None
        # Signed 32-bit: a negative height means rows are stored top-down.
        return abs(width - (1 << 32) if width >= 1 << 31 else width), abs(height - (1 << 32) if height >= 1 << 31 else height)
    if kind == "TIFF":
        return _tiff_size(data)
    if kind == "WebP":
        return _webp_size(data)
    if kind == "PNM":
        return _pnm_size(data)
    if kind == "GIF":
        width, height = _u16(data, 6, "little"), _u16(data, 8, "little")
        return (width, height) if height is not None else None
    return None


# JPEG start-of-frame markers (SOF0..SOF15 less DHT C4, JPG C8 and DAC CC) carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:  # junk between segments: libjpeg skips to the next 0xFF, so do we
            at = data.find(b"\xff", at)
            if at < 0:
                return None
            continue
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length field
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        if marker in _JPEG_SOF:
            height, width = _u16(data, at + 5, "big"), _u16(data, at + 7, "big")
            return (width, height) if width is not None else None
        at += 2 + _u16(data, at + 2, "big")
    return None


def _tiff_ifd0(data: bytes) -> tuple[str, dict[int, int]] | None:
    """(byte order, {tag: first value}) of a TIFF structure's first IFD (also EXIF's)."""
    order = {b"II": "little", b"MM": "big"}.get(data[:2])
    if order is None:
        return None
    offset = _u32(data, 4, order)
    count = _u16(data, offset, order) if offset is not None else None
    if count is None:
        return None
    tags: dict[int, int] = {}
    for i in range(count):
        entry = offset + 2 + 12 * i
        if entry + 12 > len(data):
            break
        tag, kind = _u16(data, entry, order), _u16(data, entry + 2, order)
        # SHORT (3) values sit in the first 2 bytes of the value field, LONG (4) fill it.
        if kind == 3:
            tags[tag] = _u16(data, entry + 8, order)
        elif kind == 4:
            tags[tag] = _u32(data, entry + 8, order)
    return order, tags


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    parsed = _tiff_ifd0(data)
    if parsed is None or 256 not in parsed[1] or 257 not in parsed[1]:
        return None
    tags = parsed[1]
    # ImageWidth, ImageLength; a tiled file's decoder allocates whole tiles, which may be larger.
    return max(tags[256], tags.get(322, 0)), max(tags[257], tags.get(323, 0))


def _riff_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(fourcc, start, size) of each chunk of a RIFF (WebP) file."""
    chunks, at = [], 12
    while at + 8 <= len(data):
        size = _u32(data, at + 4, "little")
        chunks.append((data[at:at + 4], at + 8, size))
        at += 8 + size + (size & 1)
    return chunks


def _webp_size(data: bytes) -> tuple[int, int] | None:
    for fourcc, at, _ in _riff_chunks(data):
        if len(data) < at + 10:
            return None
        if fourcc == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
            return int.from_bytes(data[at + 4:at + 7], "little") + 1, int.from_bytes(data[at + 7:at + 10], "little") + 1
        if fourcc == b"VP8L":  # lossless: 14-bit width-1 and height-1 after the 0x2f signature
            bits = int.from_bytes(data[at + 1:at + 5], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if fourcc == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
            return _u16(data, at + 6, "little") & 0x3FFF, _u16(data, at + 8, "little") & 0x3FFF
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    """Width and height: the first two ASCII numbers after "Pn", skipping # comments."""
    numbers: list[int] = []
    at, end = 2, min(len(data), 4096)
    while len(numbers) < 2 and at < end:
        char = data[at:at + 1]
        if char == b"#":
            newline = data.find(b"\n", at, end)
            at = end if newline < 0 else newline + 1
        elif char.isdigit():
            start = at
            while at < end and data[at:at + 1].isdigit():
                at += 1
            numbers.append(int(data[start:at]))
        elif char.isspace():
            at += 1
        else:
            return None
    return (numbers[0], numbers[1]) if len(numbers) == 2 else None


# A header may claim far more pixels than its file could hold: a corrupt file, or a
# "decompression bomb". Real photos have well under 10 pixels per file byte, and even a
# one-colour PNG under 10,000, so more than this (beyond a floor that no small image reaches)
# is refused rather than allocated.
MAX_PIXELS_PER_FILE_BYTE = 10_000
BOMB_CHECK_FLOOR_PIXELS = 16_000_000


def _png_chunk_problem(data: bytes) -> str | None:
    """Why a PNG's chunk lengths cannot be right, or None. OpenCV's PNG reader allocates a
    chunk's declared length before reading it: a few flipped bits could cost gigabytes."""
    at = 8
    while at + 8 <= len(data):
        size, kind = _u32(data, at, "big"), data[at + 4:at + 8].decode("latin-1")
        remaining = len(data) - at - 12  # after this chunk's length, type and CRC
        if size > remaining:
            return f"chunk {kind!r} claims {size} bytes, {max(remaining, 0)} follow"
        if kind == "IEND":
            return None
        at += 12 + size
    return None


def _refuse_huge(size: tuple[int, int] | None, n_bytes: int, label: str) -> None:
    if size is None:
        return
    pixels = size[0] * size[1]
    cap = max_image_pixels()
    if pixels > cap:
        raise ImageDecodeError(
            f"{label}: image too large ({size[0]}x{size[1]} pixels; gclf reads images of up to "
            f"{cap // 1_000_000} megapixels, ${PIXELS_ENV} raises it)"
        )
    if pixels > max(BOMB_CHECK_FLOOR_PIXELS, MAX_PIXELS_PER_FILE_BYTE * n_bytes):
        raise ImageDecodeError(
            f"{label}: not a readable image (its header claims {size[0]}x{size[1]} pixels, "
            f"far more than {n_bytes} bytes can hold: corrupt, or a decompression bomb)"
        )


# --- EXIF orientation for PNG and WebP (OpenCV applies it to JPEG and TIFF itself) -------


def _exif_orientation(kind: str, data: bytes) -> int:
    """The EXIF Orientation tag (1..8) of a PNG eXIf or WebP EXIF chunk; 1 when absent."""
    exif = _png_chunk(data, b"eXIf") if kind == "PNG" else next((data[at:at + size] for fourcc, at, size in _riff_chunks(data) if fourcc == b"EXIF"), None)
    if not exif:
        return 1
    parsed = _tiff_ifd0(exif.removeprefix(b"Exif\x00\x00"))
    value = parsed[1].get(0x0112, 1) if parsed else 1
    return value if 1 <= value <= 8 else 1


def _png_chunk(data: bytes, wanted: bytes) -> bytes | None:
    at = 8
    while at + 8 <= len(data):
        size, kind = _u32(data, at, "big"), data[at + 4:at + 8]
        if kind == wanted:
            return data[at + 8:at + 8 + size]
        if kind == b"IEND":
            return None
        at += 12 + size
    return None


def _apply_exif_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image the way a photo viewer shows it (EXIF orientations 1..8)."""
    if orientation == 1:
        return img
    turned = {
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # rotated 180 degrees
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: a.swapaxes(0, 1)[:, ::-1],  # rotated 90 degrees clockwise
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # transversed
        8: lambda a: a.swapaxes(0, 1)[::-1],  # rotated 90 degrees counter-clockwise
    }[orientation](img)
    return np.ascontiguousarray(turned)  # OpenCV needs contiguous rows


def _to_rgb8(img: np.ndarray, label: str) -> np.ndarray:
    if img.shape[0] * img.shape[1] > max_image_pixels():
        raise ImageDecodeError(f"{label}: image too large ({img.shape[1]}x{img.shape[0]} pixels)")
    if img.dtype == np.uint16:
        img = cv2.convertScaleAbs(img, alpha=255.0 / 65535.0)  # rounds to nearest
    elif img.dtype != np.uint8:
        raise ImageDecodeError(f"{label}: unsupported pixel type {img.dtype} (use 8- or 16-bit images)")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img.reshape(img.shape[0], img.shape[1]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return composite_on_white(img)
    raise ImageDecodeError(f"{label}: unsupported number of channels ({channels})")


def composite_on_white(bgra: np.ndarray) -> np.ndarray:
    """BGRA uint8 -> RGB uint8 composited onto white (transparent pixels often hold junk
    colour; viewers show them on white): round(c * a / 255 + 255 * (1 - a / 255)).

    Integer arithmetic on bands of rows: besides the result, only one band's uint16
    temporaries (a few MB) are allocated, never a float copy of the whole image.
    """
    height, width = bgra.shape[:2]
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, _COMPOSITE_ROWS_BYTES // max(1, width * 8))
    for top in range(0, height, rows):
        band = bgra[top:top + rows]
        alpha = band[:, :, 3:4].astype(np.uint16)
        mixed = band[:, :, 2::-1] * alpha  # BGR -> RGB; at most 255 * 255, fits uint16
        mixed += (255 - alpha) * 255 + 127  # + white * (1 - a); +127: round half up (x / 255 is never .5)
        mixed //= 255
        out[top:top + rows] = mixed
    return out
