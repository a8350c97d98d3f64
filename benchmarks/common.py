"""What the benchmark scripts share: labelled photos, camera-sized frames written as a video,
and the bare model's single-image rate."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from gclf.runtime.classifier import Classifier
from gclf.runtime.preprocess import preprocess

FRAME_W, FRAME_H = 640, 480  # the frames the live benchmarks generate: a webcam's VGA


@dataclass(frozen=True)
class Photo:
    path: Path
    label: str  # its class folder's name
    source: str = ""  # its data folder's name


def load_photos(folders: Iterable[Path], exclude: set[Path] = frozenset()) -> list[Photo]:
    """Every file of FOLDER/<class>/... (nested too; hidden files skipped), in a stable order,
    but for the resolved paths in `exclude`."""
    photos = []
    for folder in folders:
        for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
            for path in sorted(cls.rglob("*")):
                if path.is_file() and not path.name.startswith(".") and path.resolve() not in exclude:
                    photos.append(Photo(path, cls.name, folder.name))
    return photos


def write_video(frames: Iterable[np.ndarray], path: Path, fps: float = 30.0) -> Path:
    """BGR frames (all of the first one's size) as an MJPG .avi that OpenCV reads back anywhere."""
    writer = None
    for frame in frames:
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    if writer is not None:
        writer.release()
    return path


def bare_rate(clf: Classifier, sample_rgb: np.ndarray, seconds: float = 1.0) -> tuple[float, float]:
    """The bare model's single-image rate (session.run on a ready input, per second) and its
    CPU ms per inference."""
    x = preprocess(sample_rgb, clf.spec)[None]
    for _ in range(5):
        clf.logits(x)  # warm-up: ORT allocates on first runs
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        clf.logits(x)
        n += 1
    return n / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / n
