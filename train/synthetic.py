"""A small generated two-class photo set, so gclf can show its whole job with no download.

Class "circles": warm-coloured round blobs; class "squares": cool-coloured rotated squares
(colour makes the task learnable from scratch in a minute; shape keeps grey images
answerable). Sizes, image shapes, backgrounds and noise vary at random, and a share of the images are grey, so the
set exercises the same decode/squash/grey-to-RGB path as real photos. Files are written
as JPEG and PNG, like a user's folder.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circles", "squares")


def draw_image(kind: str, rng: np.random.Generator, *, min_side: int = 64, max_side: int = 320) -> np.ndarray:
    """One BGR uint8 image of `kind` ("circles" or "squares")."""
    h, w = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    # muted backgrounds, saturated shapes
    top, bottom = rng.integers(60, 200, size=3), rng.integers(60, 200, size=3)
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = (top * (1 - ramp) + bottom * ramp).repeat(w, axis=1)
    for _ in range(int(rng.integers(1, 4))):
        # OpenCV hue is 0..179: warm 0..30, cool 60..130
        hue = rng.integers(0, 31) if kind == "circles" else rng.integers(60, 131)
        hsv = np.uint8([[[hue, rng.integers(170, 256), rng.integers(140, 256)]]])
        color = tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])
        cx, cy = int(rng.integers(w // 5, w - w // 5 + 1)), int(rng.integers(h // 5, h - h // 5 + 1))
        r = int(rng.integers(min(h, w) // 6, min(h, w) // 3 + 1))
        if kind == "circles":
            cv2.circle(img, (cx, cy), r, color, thickness=-1, lineType=cv2.LINE_AA)
        else:
            box = cv2.boxPoints(((cx, cy), (2 * r, 2 * r), float(rng.uniform(0, 90))))
            cv2.fillPoly(img, [np.intp(box)], color, lineType=cv2.LINE_AA)
    img += rng.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_shapes_dataset(root: Path, *, per_class: int = 60, seed: int = 0, grey_share: float = 0.15, min_side: int = 64, max_side: int = 320) -> Path:
    """Write `root/<class>/<n>.jpg|png` and return `root`."""
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        folder = Path(root) / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = draw_image(kind, rng, min_side=min_side, max_side=max_side)
            if rng.random() < grey_share:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            ext = ".png" if i % 4 == 3 else ".jpg"
            ok, data = cv2.imencode(ext, img)
            assert ok
            (folder / f"{kind}_{i:04d}{ext}").write_bytes(data.tobytes())
    return Path(root)
