"""Image files that tell gclf's header check one size and the decoder another, or that cost
memory before any pixel is decoded: the decoder bombs the tests and
`benchmarks/decode_attack.py` share (one builder each).

Every builder writes a small, real file that OpenCV decodes (or tries to) at the size its
decoder reads, far over gclf's pixel cap, and returns its path; `BOMBS` names them all. The
builders that take `side` also make the same structure at a harmless size (the fuzz seeds).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

SIDE = 20000  # the size the decoders read: 400 megapixels, 1.2 GB as 8-bit RGB


def jpeg_stuffing_after_soi(path: Path, side: int = SIDE) -> Path:
    """`FF 00` and two bytes after SOI: a parser that reads it as a segment with a length skips
    the real frame header; libjpeg discards the pair as stuffing and decodes 20000x20000."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2  # height, width
    path.write_bytes(b"\xff\xd8\xff\x00\xfe\xfe" + bytes(data[2:]))
    return path


def _lossless_vp8l(width: int, height: int) -> bytes:
    """A VP8L bitstream of one colour that decodes at any size: a 16x16 lossless encoding
    whose entropy codes have one symbol each (zero bits a pixel), its header rewritten."""
    webp = cv2.imencode(".webp", np.zeros((16, 16, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    at = webp.index(b"VP8L") + 8
    bits = int.from_bytes(webp[at + 1:at + 5], "little")
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    return webp[at:at + 1] + bits.to_bytes(4, "little") + webp[at + 5:]


def _riff(body: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_raw_vp8l(path: Path, side: int = 16384) -> Path:
    """A raw VP8L bitstream right after `WEBP`, without a chunk header: libwebp reads it as
    the image (16384x16384, the format's largest), a parser that expects chunks finds none."""
    path.write_bytes(_riff(_lossless_vp8l(side, side) + bytes(16)))  # libwebp's header read wants 32 bytes
    return path


def webp_many_chunks(path: Path, n_chunks: int = 12_000_000) -> Path:
    """A 16x16 extended WebP with millions of empty chunks between its header and its image:
    every chunk listed costs memory in a parser that lists them, and in libwebp's demuxer."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (15).to_bytes(3, "little") * 2
    image = _lossless_vp8l(16, 16)
    vp8l = b"VP8L" + struct.pack("<I", len(image)) + image + bytes(len(image) & 1)
    with open(path, "wb") as out:
        out.write(b"RIFF" + struct.pack("<I", 4 + len(vp8x) + 8 * n_chunks + len(vp8l)) + b"WEBP" + vp8x)
        empty = b"JUNK\0\0\0\0" * 65536
        for start in range(0, n_chunks, 65536):
            out.write(empty[:8 * min(65536, n_chunks - start)])
        out.write(vp8l)
    return path


def _pbm(path: Path, header: bytes, side: int) -> Path:
    """A binary PBM of side x side white pixels (one bit each: 50 MB at SIDE, written sparse)."""
    with open(path, "wb") as out:
        out.write(header)
        out.truncate(len(header) + (side + 7) // 8 * side)
    return path


def pbm_long_comment(path: Path, side: int = SIDE) -> Path:
    """A comment longer than 4 KB before the size: a parser that reads only the first 4 KB
    finds no size; OpenCV reads on to 20000x20000."""
    return _pbm(path, b"P4\n#" + b"x" * 5000 + f"\n{side} {side}\n".encode(), side)


def pbm_comment_ending_in_cr(path: Path, side: int = SIDE) -> Path:
    """A comment ended by a carriage return: OpenCV ends comments at `\\r` as at `\\n`; a parser
    that waits for `\\n` swallows the size into the comment."""
    return _pbm(path, f"P4\n# made by a scanner\r{side} {side}\n".encode(), side)


def _tiff(entries: list[tuple[int, int, int]], n_strips: int, strip: bytes) -> bytes:
    """A little-endian TIFF whose first directory holds `entries` (tag, type, value) and whose
    `n_strips` strips all point at the same compressed `strip`."""
    # Entries whose value needs the strip tables, filled in once their offsets are known.
    table_tags = {273: 4, 279: 4}  # StripOffsets, StripByteCounts: LONG arrays
    ifd_at = 8
    n = len(entries) + len(table_tags)
    offsets_at = ifd_at + 2 + 12 * n + 4
    counts_at = offsets_at + 4 * n_strips
    strip_at = counts_at + 4 * n_strips
    ifd = struct.pack("<H", n)
    for tag, kind, value in sorted([*entries, (273, 4, -1), (279, 4, -1)], key=lambda e: e[0]):
        if tag == 273:
            ifd += struct.pack("<HHII", tag, 4, n_strips, offsets_at)
        elif tag == 279:
            ifd += struct.pack("<HHII", tag, 4, n_strips, counts_at)
        elif kind == 3:  # SHORT: in the first two bytes of the value field
            ifd += struct.pack("<HHIHH", tag, kind, 1, value, 0)
        else:  # LONG (4) or SLONG (9)
            ifd += struct.pack("<HHI", tag, kind, 1) + struct.pack("<i" if kind == 9 else "<I", value)
    ifd += struct.pack("<I", 0)  # no next directory
    tables = struct.pack(f"<{n_strips}I", *[strip_at] * n_strips) + struct.pack(f"<{n_strips}I", *[len(strip)] * n_strips)
    return b"II*\x00" + struct.pack("<I", ifd_at) + ifd + tables + strip


def _grey_deflate_tiff(size_entries: list[tuple[int, int, int]], side: int) -> bytes:
    """side x side grey pixels in strips of 2 rows of zeros, deflated (about 80 KB at SIDE)."""
    rows_per_strip = 2
    strip = zlib.compress(bytes(side * rows_per_strip), 9)
    common = [(258, 3, 8), (259, 3, 8), (262, 3, 1), (277, 3, 1), (278, 4, rows_per_strip)]
    return _tiff(size_entries + common, (side + rows_per_strip - 1) // rows_per_strip, strip)


def tiff_slong_size(path: Path, side: int = SIDE) -> Path:
    """ImageWidth and ImageLength stored as SLONG: libtiff reads any integer type."""
    path.write_bytes(_grey_deflate_tiff([(256, 9, side), (257, 9, side)], side))
    return path


def tiff_duplicated_size(path: Path, side: int = SIDE) -> Path:
    """ImageWidth and ImageLength each twice, `side` then 16: libtiff keeps the first."""
    path.write_bytes(_grey_deflate_tiff([(256, 4, side), (256, 4, 16), (257, 4, side), (257, 4, 16)], side))
    return path


# name (the file's name in a folder) -> builder
BOMBS: dict[str, Callable[[Path], Path]] = {
    "stuffing.jpg": jpeg_stuffing_after_soi,
    "raw-vp8l.webp": webp_raw_vp8l,
    "long-comment.pbm": pbm_long_comment,
    "cr-comment.pbm": pbm_comment_ending_in_cr,
    "slong.tif": tiff_slong_size,
    "duplicated.tif": tiff_duplicated_size,
    "many-chunks.webp": webp_many_chunks,
}


def write_bombs(folder: Path) -> dict[str, Path]:
    """Every bomb in `folder`, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    return {name: build(folder / name) for name, build in BOMBS.items()}
