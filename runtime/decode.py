"""Safe decoding: untrusted image bytes -> RGB uint8 (H, W, 3), or an `ImageDecodeError`.

The first step of the preprocessing contract (`gclf.runtime.preprocess`), and the one place
where untrusted bytes meet the decoders. Only regular files are read (`gclf.runtime.files`).
Before OpenCV sees a file, its format is sniffed from its signature (only formats whose
headers are checked here are decoded) and its header's size is checked the way the decoder
itself will read it, so a decompression bomb is refused by name before memory is allocated;
OpenCV's own limits, set from the same cap (`gclf.runtime.limits`), stand behind this. After
decoding, EXIF orientation, grey, 16-bit and alpha are handled explicitly, so nothing depends
on OpenCV's implicit defaults; the spec names what happened (`GREY_TO_RGB`, ...).
"""

from __future__ import annotations

import os
import re
import warnings

import cv2
import numpy as np

from gclf.runtime.errors import ImageDecodeError
from gclf.runtime.files import open_regular_file
from gclf.runtime.limits import (  # noqa: F401 (MAX_IMAGE_*, *_ENV: callers import the caps from here)
    BYTES_ENV,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    PIXELS_ENV,
    max_image_bytes,
    max_image_pixels,
    opencv_limits_in_force,
)

_COMPOSITE_ROWS_BYTES = 4 << 20  # alpha compositing works on bands of rows of about this many bytes
# 16-bit, alpha and grey handling, named so that the model's metadata says what happened.
DEPTH_16_TO_8 = "scale_65535_to_255"
ALPHA_HANDLING = "composite_on_white"
GREY_TO_RGB = "replicate"


def _label(source: str | os.PathLike | bytes, name: str | None) -> str:
    if name is not None:
        return name
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def _too_big_file(label: str, n_bytes: int, cap: int) -> ImageDecodeError:
    return ImageDecodeError(f"{label}: file too large ({n_bytes} bytes; gclf reads image files of up to {cap // 1_000_000} MB, ${BYTES_ENV} raises it)")


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """Read a file for decoding; an unreadable or too large file, or one that is not a regular
    file (a FIFO, a device, a socket: refused at once), is an `ImageDecodeError` naming it."""
    cap = max_image_bytes()
    with open_regular_file(path, error=ImageDecodeError) as fh:
        try:
            data = fh.read(cap + 1)  # never more than the cap, whatever the file's size
            if len(data) > cap:
                raise _too_big_file(str(path), os.fstat(fh.fileno()).st_size, cap)
        except OSError as exc:
            raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return data


def _too_large(label: str, width: int, height: int, cap: int) -> ImageDecodeError:
    return ImageDecodeError(
        f"{label}: image too large ({width}x{height} pixels; gclf reads images of up to "
        f"{cap // 1_000_000} megapixels, ${PIXELS_ENV} raises it)"
    )


def check_frame_size(shape: tuple[int, ...], *, source: str = "frame") -> None:
    """Refuse a decoded frame (a camera's, a network stream's) of more pixels than the cap,
    as an `ImageDecodeError` naming `source`; `shape` is the array's (height, width, ...)."""
    height, width = int(shape[0]), int(shape[1])
    cap = max_image_pixels()
    if height * width > cap:
        raise _too_large(source, width, height, cap)


_warned_unguarded = False


def _warn_once_if_opencv_unguarded() -> None:
    """OpenCV's own limits hold only when gclf.runtime was imported before cv2; say so once."""
    global _warned_unguarded
    if _warned_unguarded or opencv_limits_in_force():
        return
    _warned_unguarded = True
    warnings.warn(
        "OpenCV was imported before gclf.runtime, so its decoders run without gclf's image-size limits "
        "(OPENCV_IO_MAX_IMAGE_PIXELS); gclf's header check still refuses images over the cap. "
        "Import gclf.runtime before cv2 to have both.",
        RuntimeWarning,
        stacklevel=3,
    )


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
    try:
        _refuse_huge(_header_size(kind, data), len(data), label)
    except _Unreadable as exc:
        raise ImageDecodeError(f"{label}: not a readable image ({exc})") from None
    _warn_once_if_opencv_unguarded()
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
        if "MAX_IMAGE_" in str(exc):  # OpenCV's own limit (validateInputImageSize), set from the cap
            raise ImageDecodeError(
                f"{label}: image too large (OpenCV's decoder refused its size; gclf reads images of up to "
                f"{max_image_pixels() // 1_000_000} megapixels, ${PIXELS_ENV} raises it)"
            ) from None
        raise ImageDecodeError(f"{label}: not a readable image ({_first_line(exc)})") from None
    except MemoryError:
        raise ImageDecodeError(f"{label}: not enough memory to decode this image") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1].strip() if text else type(exc).__name__


# --- cheap header parsing: refuse huge images before a decoder allocates them -----------
#
# Each parser reads a header the way the decoder OpenCV calls reads it (libjpeg, libwebp,
# libtiff, OpenCV's own PxM and PNG readers), so that a file cannot tell gclf one size and
# the decoder another; the fuzz tests hold every parser to the size the decoder decodes. None
# means "no size found": the decoder then fails on the file, or OpenCV's own limit applies.

# The formats gclf decodes (IMAGE_EXTENSIONS' formats, plus GIF); anything else is refused
# by its signature, so only decoders whose headers are checked below ever see user bytes.
DECODED_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WebP", "PNM", "GIF")

# A parser looks at no more than this many segments, chunks, directory entries or comments:
# real files have a few dozen before their size, so a file that needs more is refused as
# unreadable instead of walked whole (a 100 MB file can hold 12 million empty chunks).
MAX_HEADER_ITEMS = 4096


class _Unreadable(Exception):
    """A header no decoder should be given (the reason is the message)."""


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
    """(width, height) as the decoder will read it, or None where no size was found (the
    decoder then fails on the file, or OpenCV's own limit applies); `_Unreadable` for a
    header that cannot be read in bounded work."""
    if kind == "PNG":
        _check_png_chunks(data)
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
_NOT_FF = re.compile(rb"[^\xff]")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The first frame header's size, found as libjpeg's marker reader finds it (jdmarker.c):
    bytes up to the next 0xFF are skipped, 0xFF fill bytes too, and `FF 00` is stuffing, not
    a marker; RSTn and TEM have no length; a length under 2 skips just the length bytes."""
    at = 2
    for _ in range(MAX_HEADER_ITEMS):
        at = data.find(b"\xff", at)
        code = _NOT_FF.search(data, at + 1) if at >= 0 else None
        if code is None:
            return None
        marker, at = data[code.start()], code.start() + 1  # `at`: just after the marker
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stuffing, TEM, RSTn
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # a second SOI, EOI, or scan data before any frame header: libjpeg fails
            return None
        if marker in _JPEG_SOF:
            height, width = _u16(data, at + 3, "big"), _u16(data, at + 5, "big")
            return (width, height) if width is not None and height is not None else None
        length = _u16(data, at, "big")
        if length is None:
            return None
        at += max(length, 2)
    raise _Unreadable(f"more than {MAX_HEADER_ITEMS} JPEG segments before its frame header")


# TIFF field types libtiff reads a one-number tag from (TIFFReadDirEntryLong): size in
# bytes, signed. A negative value, another type or a count other than 1 fails in libtiff.
_TIFF_INTEGERS = {1: (1, False), 3: (2, False), 4: (4, False), 6: (1, True), 8: (2, True), 9: (4, True), 13: (4, False), 16: (8, False), 17: (8, True), 18: (8, False)}


def _tiff_value(data: bytes, entry: int, order: str) -> int | None:
    """The number a classic TIFF directory entry holds, as libtiff reads it, or None."""
    kind, count = _u16(data, entry + 2, order), _u32(data, entry + 4, order)
    if kind not in _TIFF_INTEGERS or count != 1:
        return None
    size, signed = _TIFF_INTEGERS[kind]
    at = entry + 8 if size <= 4 else _u32(data, entry + 8, order)  # 8-byte values sit at an offset
    if at + size > len(data):
        return None
    value = int.from_bytes(data[at:at + size], order, signed=signed)
    return value if value >= 0 else None


def _tiff_ifd0(data: bytes, *, strict: bool = False) -> tuple[str, dict[int, int | None]] | None:
    """(byte order, {tag: value}) of a TIFF structure's first directory (also EXIF's). Each
    tag's first entry counts, as in libtiff, which ignores a repeated tag; None for a value
    libtiff cannot read as a number. `strict`: a directory of more than MAX_HEADER_ITEMS
    entries is `_Unreadable` (else only those are read)."""
    order = {b"II": "little", b"MM": "big"}.get(data[:2])
    if order is None:
        return None
    offset = _u32(data, 4, order)
    count = _u16(data, offset, order) if offset is not None else None
    if count is None:
        return None
    if count > MAX_HEADER_ITEMS and strict:
        raise _Unreadable(f"its first TIFF directory has {count} entries")
    tags: dict[int, int | None] = {}
    for i in range(min(count, MAX_HEADER_ITEMS)):
        entry = offset + 2 + 12 * i
        if entry + 12 > len(data):
            break
        tag = _u16(data, entry, order)
        if tag not in tags:
            tags[tag] = _tiff_value(data, entry, order)
    return order, tags


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    parsed = _tiff_ifd0(data, strict=True)
    if parsed is None:
        return None
    tags = parsed[1]
    width, height = tags.get(256), tags.get(257)
    if width is None or height is None:
        return None  # libtiff fails on a missing or unreadable size
    # ImageWidth, ImageLength; a tiled file's decoder allocates whole tiles, which may be larger.
    return max(width, tags.get(322) or 0), max(height, tags.get(323) or 0)


def _riff_chunks(data: bytes, *, strict: bool = False):
    """(fourcc, start, size) of a RIFF (WebP) file's chunks, at most MAX_HEADER_ITEMS of them;
    `strict`: a file with more is `_Unreadable`."""
    riff_end = min(len(data), 8 + (_u32(data, 4, "little") or 0))
    at = 12
    for _ in range(MAX_HEADER_ITEMS):
        if at + 8 > riff_end:
            return
        size = _u32(data, at + 4, "little")
        yield data[at:at + 4], at + 8, size
        at += 8 + size + (size & 1)
    if strict and at + 8 <= riff_end:
        raise _Unreadable(f"more than {MAX_HEADER_ITEMS} RIFF chunks")


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The size libwebp's WebPGetFeatures reads (OpenCV's decoder calls it on the first 32
    bytes): an extended file's canvas (VP8X), else the bitstream's own header, in a "VP8 " or
    "VP8L" chunk or, with no chunk header at all, right after "WEBP"."""
    fourcc = data[12:16]
    if fourcc == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        if len(data) < 30:
            return None
        # libwebp's demuxer (OpenCV reads EXIF through it) stores every chunk of an extended file.
        for _ in _riff_chunks(data, strict=True):
            pass
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    at = 20 if fourcc in (b"VP8 ", b"VP8L") else 12
    stream = data[at:at + 10]
    if len(stream) < 10:
        return None
    # A "VP8L" chunk is lossless; without a chunk header, the lossless signature decides.
    lossless = fourcc == b"VP8L" or (fourcc != b"VP8 " and stream[0] == 0x2F and stream[4] >> 5 == 0)
    if lossless:  # 14-bit width-1 and height-1 after the 0x2f signature
        bits = int.from_bytes(stream[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    # lossy: 14-bit sizes after the 3-byte frame tag and the start code
    return int.from_bytes(stream[6:8], "little") & 0x3FFF, int.from_bytes(stream[8:10], "little") & 0x3FFF


_PNM_SPACE = re.compile(rb"[ \t\n\r\v\f]+")  # C's isspace
_PNM_COMMENT = re.compile(rb"#[^\n\r]*")
_PNM_DIGITS = re.compile(rb"[0-9]+")


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    """Width and height as OpenCV's PxM reader reads them (grfmt_pxm.cpp, ReadNumber): the
    first two numbers after "Pn", between white space and comments that run from "#" to a
    "\n" or a "\r"; the byte after each number is consumed with it."""
    numbers: list[int] = []
    at = 2
    for _ in range(MAX_HEADER_ITEMS):
        if len(numbers) == 2:
            return numbers[0], numbers[1]
        char = data[at:at + 1]
        if not char:
            return None
        if char == b"#":
            at = _PNM_COMMENT.match(data, at).end() + 1  # and its "\n" or "\r"
        elif char.isspace():
            at = _PNM_SPACE.match(data, at).end()
        elif char.isdigit():
            digits = _PNM_DIGITS.match(data, at)
            significant = digits.group().lstrip(b"0") or b"0"
            # OpenCV refuses a number over INT_MAX; any such number is far over the cap too.
            numbers.append(int(significant) if len(significant) <= 10 else 1 << 40)
            at = digits.end() + 1
        else:
            return None  # OpenCV fails on it
    raise _Unreadable(f"more than {MAX_HEADER_ITEMS} comments and gaps in its PNM header")


# A header may claim far more pixels than its file could hold: a corrupt file, or a
# "decompression bomb". Real photos have well under 10 pixels per file byte, and even a
# one-colour PNG under 10,000, so more than this (beyond a floor that no small image reaches)
# is refused rather than allocated.
MAX_PIXELS_PER_FILE_BYTE = 10_000
BOMB_CHECK_FLOOR_PIXELS = 16_000_000


def _check_png_chunks(data: bytes) -> None:
    """Refuse a PNG whose chunk lengths cannot be right, for the chunks OpenCV's PNG reader reads
    itself, allocating each chunk's declared length before reading it (a few flipped bits could
    cost gigabytes): those up to the first IDAT, and for an animation (acTL) up to its second
    frame or IEND. The rest is libpng's, which bounds what it allocates."""
    at, animated, seen_idat = 8, False, False
    for _ in range(MAX_HEADER_ITEMS):
        if at + 8 > len(data):
            return
        size, kind = _u32(data, at, "big"), data[at + 4:at + 8]
        remaining = len(data) - at - 12  # after this chunk's length, type and CRC
        if size > remaining:
            raise _Unreadable(f"corrupt or truncated PNG data: chunk {kind.decode('latin-1')!r} claims {size} bytes, {max(remaining, 0)} follow")
        if kind == b"IEND" or (kind == b"IDAT" and not animated) or (kind == b"fcTL" and seen_idat):
            return
        animated |= kind == b"acTL" and not seen_idat
        seen_idat |= kind == b"IDAT"
        at += 12 + size
    raise _Unreadable(f"more than {MAX_HEADER_ITEMS} PNG chunks before its image data")


def _refuse_huge(size: tuple[int, int] | None, n_bytes: int, label: str) -> None:
    if size is None:
        return
    pixels = size[0] * size[1]
    cap = max_image_pixels()
    if pixels > cap:
        raise _too_large(label, size[0], size[1], cap)
    if pixels > max(BOMB_CHECK_FLOOR_PIXELS, MAX_PIXELS_PER_FILE_BYTE * n_bytes):
        raise ImageDecodeError(
            f"{label}: not a readable image (its header claims {size[0]}x{size[1]} pixels, "
            f"far more than {n_bytes} bytes can hold: corrupt, or a decompression bomb)"
        )


# --- EXIF orientation for PNG and WebP (OpenCV applies it to JPEG and TIFF itself) -------


def _exif_orientation(kind: str, data: bytes) -> int:
    """The EXIF Orientation tag (1..8) of a PNG eXIf or WebP EXIF chunk; 1 when absent (or
    beyond the first MAX_HEADER_ITEMS chunks)."""
    exif = _png_chunk(data, b"eXIf") if kind == "PNG" else next((data[at:at + size] for fourcc, at, size in _riff_chunks(data) if fourcc == b"EXIF"), None)
    if not exif:
        return 1
    parsed = _tiff_ifd0(exif.removeprefix(b"Exif\x00\x00"))
    value = parsed[1].get(0x0112) if parsed else None
    return value if value is not None and 1 <= value <= 8 else 1


def _png_chunk(data: bytes, wanted: bytes) -> bytes | None:
    at = 8
    for _ in range(MAX_HEADER_ITEMS):
        if at + 8 > len(data):
            return None
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
        raise _too_large(label, img.shape[1], img.shape[0], max_image_pixels())
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
