"""Reading files the user names: their sha256.

One home for what is done to a file's bytes as a whole, so that every file gclf pins (a
face detector a model records, a model an int8 copy comes from) is hashed the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
