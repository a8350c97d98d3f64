"""Training augmentation on the decoded RGB image, before the preprocessing contract.

Each transform is switchable; presets name common combinations. "grey" turns a share of
training images grey (replicated to RGB, exactly as grey photos arrive at the runtime): the
remedy for the study's weaker accuracy on grey photos.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = False  # horizontal flip, p = 0.5
    crop_scale: float = 1.0  # random crop keeping at least this share of the area (1.0: off)
    rotate_deg: float = 0.0  # uniform random rotation in [-rotate_deg, rotate_deg]
    brightness: float = 0.0  # multiply by 1 +/- brightness
    contrast: float = 0.0  # scale around the mean by 1 +/- contrast
    grey_p: float = 0.0  # probability of turning the image grey

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig()


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),  # the study's: no augmentation
    "light": AugmentConfig(flip=True, crop_scale=0.8),
    "standard": AugmentConfig(flip=True, crop_scale=0.7, rotate_deg=10, brightness=0.2, contrast=0.2, grey_p=0.2),
}


def augment_config(preset: str, overrides: Mapping[str, Any] | None = None) -> AugmentConfig:
    """A named preset with some transforms switched or tuned (gclf-train --flip/--grey-p ...)."""
    from gclf.runtime.errors import UsageError

    if preset not in PRESETS:
        raise UsageError(f"--augment must be one of {sorted(PRESETS)}, got {preset!r}")
    overrides = dict(overrides or {})
    known = {f.name for f in fields(AugmentConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UsageError(f"unknown augmentation option(s) {unknown}; known: {sorted(known)}")
    cfg = replace(PRESETS[preset], **overrides)
    problems = [
        f"{name} {value} is outside [{lo}, {hi}]"
        for name, value, lo, hi in (
            ("crop_scale", cfg.crop_scale, 0.05, 1.0), ("rotate_deg", cfg.rotate_deg, 0.0, 180.0),
            ("brightness", cfg.brightness, 0.0, 1.0), ("contrast", cfg.contrast, 0.0, 1.0), ("grey_p", cfg.grey_p, 0.0, 1.0),
        )
        if not lo <= value <= hi
    ]
    if problems:
        raise UsageError("augmentation: " + "; ".join(problems))
    return cfg


def augment(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """One random variant of a decoded RGB uint8 image (any size; the contract resizes later)."""
    img = rgb
    h, w = img.shape[:2]
    if cfg.crop_scale < 1.0:
        area = rng.uniform(cfg.crop_scale, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch = int(round(min(h, np.sqrt(area * h * w / aspect))))
        cw = int(round(min(w, np.sqrt(area * h * w * aspect))))
        ch, cw = max(ch, 1), max(cw, 1)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = img[y : y + ch, x : x + cw]
    if cfg.flip and rng.random() < 0.5:
        img = img[:, ::-1]
    if cfg.rotate_deg > 0:
        angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
        hh, ww = img.shape[:2]
        matrix = cv2.getRotationMatrix2D((ww / 2, hh / 2), angle, 1.0)
        img = cv2.warpAffine(np.ascontiguousarray(img), matrix, (ww, hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if cfg.brightness > 0 or cfg.contrast > 0:
        f = img.astype(np.float32)
        if cfg.contrast > 0:
            mean = f.mean()
            f = (f - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
        if cfg.brightness > 0:
            f = f * rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
        img = np.clip(f, 0, 255).astype(np.uint8)
    if cfg.grey_p > 0 and rng.random() < cfg.grey_p:
        img = grey_copy(img)
    return np.ascontiguousarray(img)


def grey_copy(rgb: np.ndarray) -> np.ndarray:
    """The photo as a grey photo reaches the model: luminance, replicated to three channels
    (what decode_image does with a grey file)."""
    return cv2.cvtColor(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
