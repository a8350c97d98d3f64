"""Measure the live runtime on real photos: face detection rate, crop vs whole-image accuracy, FPS.

    python -m benchmarks.live_bench [--model MODEL.onnx ...] [--face-model yunet.onnx] [--record]

Prints its figures and asserts nothing. Three parts:

1. Detection: the share of ../shared/datasets/gender-faces photos in which the Haar cascade
   and YuNet find a face, on the photo as stored (a tight face crop) and pasted into a grey
   640x480 frame (as a face appears in a camera picture).
2. Accuracy (per --model; skipped, and said so, without one): the photo as stored, the whole
   640x480 frame, and each detector's crop of the frame at several margins. A --exclude
   folder (e.g. the model's training data) leaves out photos with the same bytes.
3. Speed: a video of real photos (one per frame, in a 640x480 frame, MJPG) run through the
   live loop without and with face detection, against the bare model's single-image rate
   measured in the same run; and once paced at 30 FPS like a camera (drops and latency).
   Target: the loop sustains at least 0.9x the single-image rate when the model is the
   bottleneck (whole frames, every frame in order). `--record` writes this part's table into
   benchmarks/results/ (benchmarks.results).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np

from benchmarks import results
from benchmarks.common import FRAME_H, FRAME_W, Photo, bare_rate, load_photos, write_video
from gclf.runtime.classifier import Classifier
from gclf.runtime.decode import decode_image
from gclf.runtime.faces import FaceDetector, HaarFaceDetector, YuNetFaceDetector, face_crops, find_faces
from gclf.runtime.live.frames import FrameResult
from gclf.runtime.live.loop import run_live
from gclf.runtime.live.sinks import JsonLinesSink
from gclf.runtime.live.sources import CaptureSource, LatestFrameGrabber, OrderedFrameReader, PacedSource

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_DATA = SHARED / "datasets" / "gender-faces"
DEFAULT_YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
FACE_H = 240  # the photo's height inside the frame: a face at arm's length from a webcam
MARGINS = (0.0, 0.1, 0.2)


def sampled_photos(data: Path, sample: int | None, exclude: list[Path], seed: int = 0) -> list[Photo]:
    """DATA's photos less any whose bytes are in an `exclude` folder, `sample` of them at random."""
    excluded = {_sha(p) for folder in exclude for p in folder.rglob("*") if p.is_file()}
    photos = load_photos([data])
    photos = [p for p in photos if _sha(p.path) not in excluded] if excluded else photos
    if sample is not None and sample < len(photos):
        photos = random.Random(seed).sample(photos, sample)
    return photos


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def in_frame(bgr: np.ndarray, x_offset: int = 0) -> np.ndarray:
    """The photo scaled to FACE_H rows and pasted into a grey FRAME_W x FRAME_H frame."""
    width = min(FRAME_W, round(bgr.shape[1] * FACE_H / bgr.shape[0]))
    frame = np.full((FRAME_H, FRAME_W, 3), 90, dtype=np.uint8)
    x = max(0, min(FRAME_W - width, (FRAME_W - width) // 2 + x_offset))
    y = (FRAME_H - FACE_H) // 2
    frame[y : y + FACE_H, x : x + width] = cv2.resize(bgr, (width, FACE_H), interpolation=cv2.INTER_AREA)
    return frame


def largest(boxes):
    return max(boxes, key=lambda b: b[2] * b[3])


# --- 1. detection ---------------------------------------------------------------------


def detection_rates(photos: list[Photo], detectors: dict[str, FaceDetector]) -> dict[str, dict]:
    """Per detector: found-a-face on the stored photo and in a frame; boxes in the frame; ms per frame."""
    out: dict[str, dict] = {name: {"raw": 0, "frame": 0, "raw_boxes": {}, "boxes": {}, "ms": []} for name in detectors}
    for photo in photos:
        bgr = cv2.cvtColor(decode_image(photo.path), cv2.COLOR_RGB2BGR)
        frame = in_frame(bgr)
        for name, det in detectors.items():
            stats = out[name]
            raw_boxes = find_faces(det, bgr).boxes
            stats["raw"] += bool(raw_boxes)
            if raw_boxes:
                stats["raw_boxes"][photo.path] = largest(raw_boxes)
            start = time.perf_counter()
            boxes = find_faces(det, frame).boxes
            stats["ms"].append(1000 * (time.perf_counter() - start))
            stats["frame"] += bool(boxes)
            if boxes:
                stats["boxes"][photo.path] = largest(boxes)
    return out


# --- 2. accuracy ----------------------------------------------------------------------


def accuracy(clf: Classifier, images: list[np.ndarray], labels: list[str], batch: int = 32) -> float:
    if not images:
        return float("nan")
    correct = 0
    for i in range(0, len(images), batch):
        preds = clf.predict_batch(images[i : i + batch])
        correct += sum(p.best == t for p, t in zip(preds, labels[i : i + batch]))
    return correct / len(images)


def accuracy_report(clf: Classifier, photos: list[Photo], detection: dict[str, dict]) -> None:
    unknown = {p.label for p in photos} - set(clf.class_names)
    if unknown:
        print(f"  skipped: the model's classes {list(clf.class_names)} do not include {sorted(unknown)}")
        return
    raw = [decode_image(p.path) for p in photos]
    labels = [p.label for p in photos]
    frames = [cv2.cvtColor(in_frame(cv2.cvtColor(r, cv2.COLOR_RGB2BGR)), cv2.COLOR_BGR2RGB) for r in raw]
    print(f"  all {len(photos)} photos: as stored {accuracy(clf, raw, labels):.3f}, "
          f"whole 640x480 frame {accuracy(clf, frames, labels):.3f}")
    for name, stats in detection.items():
        idx = [i for i, p in enumerate(photos) if p.path in stats["boxes"]]
        sub_labels = [labels[i] for i in idx]
        parts = [f"as stored {accuracy(clf, [raw[i] for i in idx], sub_labels):.3f}",
                 f"whole frame {accuracy(clf, [frames[i] for i in idx], sub_labels):.3f}"]
        for m in MARGINS:
            crops = [face_crops(cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR), [stats["boxes"][photos[i].path]], m)[0] for i in idx]
            parts.append(f"crop margin {m:.1f} {accuracy(clf, crops, sub_labels):.3f}")
        print(f"  {name}: the {len(idx)} photos it found a face in (in a frame): " + ", ".join(parts))
        # The stored photo as the scene: the crop cannot run into the grey of the frame, so
        # this shows how the detector's framing compares with the training photos' framing.
        idx = [i for i, p in enumerate(photos) if p.path in stats["raw_boxes"]]
        sub_labels = [labels[i] for i in idx]
        crops = [face_crops(cv2.cvtColor(raw[i], cv2.COLOR_RGB2BGR), [stats["raw_boxes"][photos[i].path]], 0.0)[0] for i in idx]
        sizes = [stats["raw_boxes"][photos[i].path][2] / raw[i].shape[1] for i in idx]
        print(f"  {name}: the {len(idx)} stored photos it found a face in: as stored "
              f"{accuracy(clf, [raw[i] for i in idx], sub_labels):.3f}, crop margin 0.0 {accuracy(clf, crops, sub_labels):.3f} "
              f"(box width / photo width, median {statistics.median(sizes) if sizes else float('nan'):.2f})")


# --- 3. speed ---------------------------------------------------------------------------


def photos_video(photos: list[Photo], path: Path, fps: float = 30.0) -> Path:
    frames = (in_frame(cv2.cvtColor(decode_image(photo.path), cv2.COLOR_RGB2BGR), x_offset=(i * 37) % 200 - 100) for i, photo in enumerate(photos))  # the face moves a little
    return write_video(frames, path, fps)


def single_image_rate(clf: Classifier, image_rgb: np.ndarray, seconds: float = 2.0) -> tuple[float, float]:
    """Images per second: the bare model (session.run on a ready input) and with preprocessing."""
    bare, _ = bare_rate(clf, image_rgb, seconds)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        clf.predict(image_rgb)
        n += 1
    return bare, n / (time.perf_counter() - start)


class LatencySink:
    needs_image = False

    def __init__(self) -> None:
        self.latencies: list[float] = []

    def write(self, result: FrameResult, annotated) -> bool:
        self.latencies.append(time.time() - result.timestamp)
        return True

    def close(self) -> None:
        pass


def speed_report(clf: Classifier, video: Path, detectors: dict[str, FaceDetector], sample_rgb: np.ndarray) -> dict[str, dict[str, str]]:
    """Prints the loop's figures; returns them per detector: "ratio" (every frame, FPS / bare)
    and "paced" (processed frames and median latency)."""
    figures: dict[str, dict[str, str]] = {}
    # The bare rate is measured again right before and after each loop run and averaged:
    # on a shared machine the load changes from minute to minute.
    for name, det in {"none (whole frames)": None, **detectors}.items():
        before, prep = single_image_rate(clf, sample_rgb)
        feed = OrderedFrameReader(CaptureSource.video(video)).start()
        # Detection on every frame, as these figures always were; benchmarks/track_bench.py
        # measures detection on every N-th frame with tracking between (the runtime's default).
        s = run_live(feed, clf, detector=det, sinks=[JsonLinesSink(io.StringIO())], detect_every=1)
        after, _ = single_image_rate(clf, sample_rgb)
        bare = (before + after) / 2
        print(f"  live loop, every frame, detector {name}: {s.processed} frames, {s.mean_fps:.1f} FPS "
              f"= {s.mean_fps / bare:.2f}x the bare model's single-image rate {bare:.1f}/s "
              f"(before {before:.1f}, after {after:.1f}; with resize + normalise {prep:.1f}/s)")
        figures[name] = {"ratio": f"{s.mean_fps / bare:.2f}x"}
    for name, det in {"none (whole frames)": None, **detectors}.items():
        source = PacedSource(CaptureSource.video(video))
        latency = LatencySink()
        s = run_live(LatestFrameGrabber(source).start(), clf, detector=det, sinks=[latency], detect_every=1)
        lat = sorted(latency.latencies)
        print(f"  paced at {source.fps:.0f} FPS like a camera, detector {name}: {s.processed} processed, "
              f"{s.dropped} dropped, {s.mean_fps:.1f} FPS; capture-to-result latency median "
              f"{1000 * statistics.median(lat):.0f} ms, max {1000 * lat[-1]:.0f} ms")
        figures[name]["paced"] = f"{s.processed}, {1000 * statistics.median(lat):.0f} ms"
    return figures


@click.command()
@click.option("--model", "models", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="gclf ONNX model(s) for accuracy and speed.")
@click.option("--face-model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_YUNET, show_default=True, help="YuNet model; skipped if absent.")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA, show_default=True)
@click.option("--sample", type=click.IntRange(min=1), default=None, help="Use this many photos (random, seed 0) instead of all.")
@click.option("--exclude", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Leave out photos with the same bytes as a file here (a model's training data).")
@click.option("--video-frames", type=click.IntRange(min=10), default=240, show_default=True, help="Frames (one photo each) in the speed video.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="onnxruntime intra-op threads (0: one per core).")
@click.option("--speed-only", is_flag=True, help="Only part 3 (speed); parts 1 and 2 take minutes on all photos.")
@click.option("--no-spin", is_flag=True, help="Part 3 also with onnxruntime's thread spinning off (as Classifier(spin=False)).")
@click.option("--record", "save_record", is_flag=True, help=results.RECORD_HELP)
def main(models, face_model: Path, data: Path, sample, exclude, video_frames: int, threads: int, speed_only: bool, no_spin: bool, save_record: bool) -> None:
    if not data.is_dir():
        print(f"skipped: no photos at {data}")
        return
    print(f"OpenCV {cv2.__version__}, {os.cpu_count()} CPU cores, data {data}")
    detectors: dict[str, FaceDetector] = {"haar": HaarFaceDetector()}
    if face_model.is_file():
        detectors["yunet"] = YuNetFaceDetector(face_model)
    else:
        print(f"YuNet skipped: no model at {face_model}")

    photos = sampled_photos(data, sample, list(exclude))
    if speed_only:
        return speed_part(models, photos, detectors, video_frames, threads, no_spin, save_record)
    print(f"\n1. Face found (share of {len(photos)} photos), as stored / in a 640x480 frame; ms per frame")
    start = time.perf_counter()
    detection = detection_rates(photos, detectors)
    for name, s in detection.items():
        print(f"  {name}: {s['raw'] / len(photos):.3f} / {s['frame'] / len(photos):.3f}; "
              f"{statistics.median(s['ms']):.1f} ms median")
    print(f"  ({time.perf_counter() - start:.0f} s)")

    print("\n2. Accuracy: photo as stored, whole frame, detector crops of the frame")
    if not models:
        print("  skipped: no --model given")
    for model in models:
        print(f" model {model}")
        accuracy_report(Classifier(model, threads=threads or None), photos, detection)

    speed_part(models, photos, detectors, video_frames, threads, no_spin, save_record)


def speed_part(models, photos: list[Photo], detectors: dict[str, FaceDetector], video_frames: int, threads: int, no_spin: bool = False,
               save_record: bool = False) -> None:
    print(f"\n3. Speed on a {video_frames}-frame 640x480 MJPG video of real photos")
    if not models:
        print("  skipped: no --model given")
        return
    speed_photos = random.Random(1).sample(photos, min(video_frames, len(photos)))
    with tempfile.TemporaryDirectory() as tmp:
        video = photos_video(speed_photos, Path(tmp) / "photos.avi")
        sample_rgb = cv2.cvtColor(in_frame(cv2.cvtColor(decode_image(speed_photos[0].path), cv2.COLOR_RGB2BGR)), cv2.COLOR_BGR2RGB)
        rows: dict[tuple[str, str], dict[bool, dict[str, str]]] = {}
        for model in models:
            for spin in (True, False) if no_spin else (True,):
                clf = Classifier(model, threads=threads or None, spin=spin)
                print(f" model {model} ({clf.spec.input_width}x{clf.spec.input_height}, {clf.metadata.variant}; onnxruntime spinning {'on' if spin else 'off'})")
                for detector, figures in speed_report(clf, video, detectors, sample_rgb).items():
                    rows.setdefault((f"{clf.metadata.variant} {clf.spec.input_width} px", detector), {})[spin] = figures
    if save_record:
        table = results.Table(["model", "detector", "FPS / bare, spinning", "FPS / bare, not spinning",
                               f"paced at 30 FPS: processed of {len(speed_photos)}, latency, spinning", "the same, not spinning"])
        for (model, detector), by_spin in rows.items():
            on, off = by_spin.get(True, {}), by_spin.get(False, {})
            table.rows.append([model, detector, on.get("ratio"), off.get("ratio"), on.get("paced"), off.get("paced")])
        results.record("benchmarks.live_bench", "The loop on a video of real photos", topic="live", table=table, conditions={
            "model": "; ".join(results.model_conditions(m, Classifier(m).metadata)["model"] for m in models), "video": f"{len(speed_photos)} frames of 640x480 MJPG, one photo of {data_name(photos)} per frame",
            "threads": threads or "onnxruntime's default"})


def data_name(photos: list[Photo]) -> str:
    return ", ".join(sorted({p.source for p in photos})) or "no data"


if __name__ == "__main__":
    sys.exit(main())
