"""Detection at the model's pace: the live loop with the face detector on every N-th frame.

    python -m benchmarks.track_bench --model M.int8.onnx [--accuracy-model FACES.onnx]
        [--every 1 --every 2 ...] [--rounds 3] [--clips 6 --clip-frames 50] [--json OUT]

Prints its figures (markdown tables) and asserts nothing.

- **Video.** Clips of 640x480 frames, each a generated background (benchmarks/scene_bench.py's
  `background`) with one or two real face photos (../shared/datasets, through scene_bench's
  `paste_face`, so the faces are framed and blended as in scene_bench) moving along known
  paths: a straight line at 1-6 px per frame, bouncing off the edges, and growing and
  shrinking by up to 20% (walking closer and away), with fresh sensor noise on every frame;
  each frame JPEG-encoded and decoded, then the whole written as an MJPG video. The true box of
  each face on each frame is known (scene_bench's reference box, mapped by the paste).
- **Smaller copies.** Each detector alone on every frame at several working sizes (the longer
  side of the copy it detects on; 320 is the runtime's DETECT_MAX_SIDE): recall at IoU >= 0.5
  against the true boxes, and milliseconds per frame.
- **Finding faces alone.** Each detector through `FaceTracker` for each N over every frame, in
  this thread: CPU ms per frame of detection plus tracking, and how often the detector ran.
- **Loop.** `run_live` on the video, every frame in order (as `gclf-infer --video`), for each
  detector and each `--every` N (gclf.runtime.tracking.FaceTracker), and on whole frames.
  Rounds are interleaved: in each round every configuration runs once, each between two
  measurements of the bare model's single-image rate (`session.run` on a ready input), and
  the ratio loop FPS / bare rate of that run is kept; the medians over rounds are reported.
  The machine may be shared, so the CPU time of this process per frame (all its threads:
  video decoding, detection, tracking, crops, model) is given too; other processes' load does
  not count in it.
- **Faces.** Per configuration: recall at IoU >= 0.5 against the true boxes (every frame,
  every face), how many boxes were carried, and per face on each frame the model's label
  compared with the label that detection on every frame (N=1, same detector) gives for that
  face: agreement on the faces both found, and accuracy against the photo's true label with a
  missed face counted as wrong. `--accuracy-model` (a faces model that tells the classes
  apart) is used for this part if given; the speed model otherwise.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np

from benchmarks.common import FRAME_H, FRAME_W, Photo, bare_rate, load_photos, write_video
from benchmarks.scene_bench import DEFAULT_DATA, DEFAULT_YUNET, as_camera_frame, background, iou, match, paste_face, reference_box
from gclf.runtime.classifier import Classifier
from gclf.runtime.decode import decode_image
from gclf.runtime.faces import Box, FaceDetector, HaarFaceDetector, YuNetFaceDetector
from gclf.runtime.live import FrameResult, run_live
from gclf.runtime.tracking import FaceTracker
from gclf.runtime.video_sources import CaptureSource, OrderedFrameReader

IOU = 0.5
FACE_H_RANGE = (90, 300)  # pasted photo height at the start of a clip, pixels
SPEED_RANGE = (1.0, 6.0)  # pixels per frame: at 30 FPS, 30 to 180 px/s
COPY_SIDES = (320, 256, 224, 192, 160)


@dataclass
class Truth:
    boxes: list[Box]  # per face on this frame
    labels: list[str]
    clip: int


# --- the video -----------------------------------------------------------------------------


def make_clips(chosen: list[tuple[Photo, np.ndarray, Box]], pool: list[Photo], n_clips: int, clip_frames: int, two_faces: float,
               rng: random.Random, nprng: np.random.Generator) -> tuple[list[np.ndarray], list[Truth]]:
    frames: list[np.ndarray] = []
    truths: list[Truth] = []
    it = iter(chosen)
    for clip in range(n_clips):
        corner = cv2.cvtColor(decode_image(pool[rng.randrange(len(pool))].path), cv2.COLOR_RGB2BGR)
        bg, _ = background(rng, nprng, corner)
        faces = [next(it) for _ in range(2 if rng.random() < two_faces else 1)]
        paths = []
        for k, (photo, bgr, ref) in enumerate(faces):
            h0 = math.exp(rng.uniform(*map(math.log, FACE_H_RANGE))) / (1.4 if len(faces) == 2 else 1.0)
            w0 = h0 * bgr.shape[1] / bgr.shape[0]
            # Two faces start in different halves of the frame; overlap while moving is allowed
            # (one passes in front of the other, as people do).
            lo = 0 if len(faces) == 1 else k * FRAME_W / 2
            hi = FRAME_W - w0 if len(faces) == 1 else (k + 1) * FRAME_W / 2 - w0
            x, y = rng.uniform(lo, max(lo, hi)), rng.uniform(0, FRAME_H - h0)
            angle, speed = rng.uniform(0, 2 * math.pi), rng.uniform(*SPEED_RANGE)
            paths.append([x, y, w0, h0, speed * math.cos(angle), speed * math.sin(angle), rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.2)])
        for t in range(clip_frames):
            frame = bg.astype(np.float32) + nprng.normal(0, 2.0, bg.shape).astype(np.float32)
            boxes, labels = [], []
            for (photo, bgr, ref), p in zip(faces, paths):
                x, y, w0, h0, vx, vy, phase, grow = p
                s = 1.0 + grow * math.sin(phase + 2 * math.pi * t / clip_frames)
                ph = max(16, round(h0 * s))
                pw = max(8, round(w0 * s))
                # Move, bouncing off the frame's edges.
                x, y = x + vx, y + vy
                if x < 0 or x + pw > FRAME_W:
                    vx, x = -vx, min(max(x, 0), FRAME_W - pw)
                if y < 0 or y + ph > FRAME_H:
                    vy, y = -vy, min(max(y, 0), FRAME_H - ph)
                p[0], p[1], p[4], p[5] = x, y, vx, vy
                boxes.append(paste_face(frame, bgr, ref, (round(x), round(y), pw, ph)))
                labels.append(photo.label)
            frames.append(as_camera_frame(frame))
            truths.append(Truth(boxes, labels, clip))
    return frames, truths


# --- measuring -----------------------------------------------------------------------------


class Recorder:
    needs_image = False

    def __init__(self) -> None:
        self.results: list[FrameResult] = []

    def write(self, result: FrameResult, annotated) -> bool:
        self.results.append(result)
        return True

    def close(self) -> None:
        pass


def loop_run(clf: Classifier, video: Path, detector: FaceDetector | None, every: int) -> tuple[float, float, list[FrameResult]]:
    """FPS, CPU ms per frame, and the results of one run over every frame of the video."""
    rec = Recorder()
    feed = OrderedFrameReader(CaptureSource.video(video)).start()
    cpu = time.process_time()
    s = run_live(feed, clf, detector=detector, sinks=[rec], detect_every=every)
    return s.mean_fps, 1000 * (time.process_time() - cpu) / max(1, s.processed), rec.results


def face_outcomes(results: list[FrameResult], truths: list[Truth]) -> list[list[tuple[str | None, bool | None, float]]]:
    """Per frame, per true face: (label of the matched box or None if missed, detected flag, IoU)."""
    out = []
    for r, t in zip(results, truths):
        boxes = [f.box for f in r.faces]
        pairs = match(t.boxes, boxes, IOU)
        out.append([(r.faces[pairs[i]].label, r.detected[pairs[i]] if r.detected else None, iou(t.boxes[i], boxes[pairs[i]]))
                    if i in pairs else (None, None, 0.0) for i in range(len(t.boxes))])
    return out


def label_stability(outcomes, truths: list[Truth]) -> float | None:
    """Share of faces found on two frames in a row (same clip) that got the same label on both:
    how much the labels flicker from frame to frame anyway, for reading the agreement figures."""
    same = n = 0
    for k in range(1, len(outcomes)):
        if truths[k].clip != truths[k - 1].clip:
            continue
        for (label, _, _), (prev, _, _) in zip(outcomes[k], outcomes[k - 1]):
            if label is not None and prev is not None:
                n += 1
                same += label == prev
    return same / n if n else None


def summarise_faces(outcomes, reference, truths: list[Truth]) -> dict:
    n = found = carried_found = both = agree = correct = 0
    ious: dict[bool, list[float]] = {True: [], False: []}
    for frame_o, frame_ref, t in zip(outcomes, reference, truths):
        for (label, det, overlap), (ref_label, _, _), true in zip(frame_o, frame_ref, t.labels):
            n += 1
            if label is None:
                continue
            found += 1
            carried_found += det is False
            ious[bool(det)].append(overlap)
            correct += label == true
            if ref_label is not None:
                both += 1
                agree += label == ref_label
    return {"faces": n, "recall": found / n, "carried_share": carried_found / found if found else 0.0,
            "agreement": agree / both if both else None, "accuracy_all": correct / n,
            "iou_detected": statistics.mean(ious[True]) if ious[True] else None,
            "iou_carried": statistics.mean(ious[False]) if ious[False] else None,
            "same_label_as_previous_frame": label_stability(outcomes, truths)}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


# --- the command ---------------------------------------------------------------------------


@click.command()
@click.option("--model", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The model the loop runs (speed), e.g. an int8 224 px faces model.")
@click.option("--accuracy-model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="A faces model for the per-face labels (default: --model).")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_DATA, show_default=True)
@click.option("--face-model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=DEFAULT_YUNET, show_default=True, help="YuNet ONNX (detector and true boxes).")
@click.option("--every", "everys", multiple=True, type=click.IntRange(min=1), default=(1, 2, 3, 5), show_default=True)
@click.option("--detector", "detector_names", multiple=True, type=click.Choice(["haar", "yunet"]), default=("haar", "yunet"), show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--clips", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--clip-frames", type=click.IntRange(min=2), default=50, show_default=True)
@click.option("--two-faces", type=click.FloatRange(0, 1), default=0.34, show_default=True, help="Share of clips with two faces.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--skip-copies", is_flag=True, help="Leave out the smaller-copy part.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(model, accuracy_model, data, face_model, everys, detector_names, rounds, clips, clip_frames, two_faces, threads, seed, skip_copies, json_out) -> None:
    rng, nprng = random.Random(seed), np.random.default_rng(seed)
    reference = YuNetFaceDetector(face_model, max_side=1024)
    pool = load_photos([Path(d) for d in data], set())
    rng.shuffle(pool)
    chosen = []
    for photo in pool:
        if len(chosen) == 2 * clips:
            break
        bgr = cv2.cvtColor(decode_image(photo.path), cv2.COLOR_RGB2BGR)
        ref = reference_box(bgr, reference)
        if ref is not None:
            chosen.append((photo, bgr, ref))
    frames, truths = make_clips(chosen, pool, clips, clip_frames, two_faces, rng, nprng)
    n_faces = sum(len(t.boxes) for t in truths)
    cpu_name = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                     if line.startswith("Model name")), "unknown CPU")
    print(f"OpenCV {cv2.__version__}, {os.cpu_count()} CPU cores ({cpu_name}); load average at start {os.getloadavg()[0]:.2f}")
    print(f"{clips} clips x {clip_frames} frames {FRAME_W}x{FRAME_H}, {n_faces} face-frames; model {model}")
    out: dict = {"cpu": cpu_name, "load_start": os.getloadavg(), "frames": len(frames), "face_frames": n_faces, "copies": {}, "loop": {}}

    def make(name: str, side: int = 320) -> FaceDetector:
        return HaarFaceDetector(max_side=side) if name == "haar" else YuNetFaceDetector(face_model, max_side=side)

    if not skip_copies:
        print(f"\n### Detection on smaller copies (every frame, detector alone): recall IoU>={IOU}, ms per frame (median)\n")
        print("| detector | " + " | ".join(f"copy {s} px" for s in COPY_SIDES) + " |")
        print("|---|" + "---|" * len(COPY_SIDES))
        for name in detector_names:
            cells = []
            for side in COPY_SIDES:
                det, hits, ms = make(name, side), 0, []
                for f, t in zip(frames, truths):
                    start = time.perf_counter()
                    found = det.detect(f)
                    ms.append(1000 * (time.perf_counter() - start))
                    hits += len(match(t.boxes, found, IOU))
                out["copies"][f"{name}@{side}"] = {"recall": hits / n_faces, "ms": statistics.median(ms)}
                cells.append(f"{100 * hits / n_faces:.1f}%, {statistics.median(ms):.1f} ms")
            print(f"| {name} | " + " | ".join(cells) + " |")

    print("\n### Finding faces alone (FaceTracker called in turn, no model): CPU ms per frame, detector runs\n")
    print("| detector | " + " | ".join(f"N={n}" for n in everys) + " |")
    print("|---|" + "---|" * len(everys))
    for name in detector_names:
        cells = []
        for n in everys:
            tracker = FaceTracker(make(name), n)
            cpu = time.process_time()
            for f in frames:
                tracker.faces(f)
            ms = 1000 * (time.process_time() - cpu) / len(frames)
            out.setdefault("finding", {})[f"{name} N={n}"] = {"cpu_ms": ms, "detections": tracker.counts.detections, "lost": tracker.counts.lost}
            cells.append(f"{ms:.1f} ms, {tracker.counts.detections} runs ({tracker.counts.lost} brought forward)")
        print(f"| {name} | " + " | ".join(cells) + " |")

    clf = Classifier(model, threads=threads or None, spin=False)  # as gclf-infer's live loop
    sample = cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB)
    configs = [("whole frames", None, 1)] + [(f"{d} N={n}", d, n) for d in detector_names for n in everys]
    detectors = {d: make(d) for d in detector_names}
    runs: dict[str, dict[str, list]] = {c[0]: {"ratio": [], "face_ratio": [], "cpu_share": [], "fps": [], "cpu_ms": [], "bare": [], "bare_cpu_ms": []}
                                        for c in configs}
    first_results: dict[str, list[FrameResult]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(frames, Path(tmp) / "moving.avi")
        for r in range(rounds):
            for label, dname, n in configs:
                b0, c0 = bare_rate(clf, sample)
                fps, cpu_ms, results = loop_run(clf, video, detectors[dname] if dname else None, n)
                b1, c1 = bare_rate(clf, sample)
                bare, bare_cpu = (b0 + b1) / 2, (c0 + c1) / 2
                per_frame = sum(len(x.faces) for x in results) / max(1, len(results))  # model inputs per frame
                run = runs[label]
                run["ratio"].append(fps / bare)
                # The model classifies every face: the loop's faces per second against the bare
                # single-image rate, and the model's share of the loop's CPU time.
                run["face_ratio"].append(fps * per_frame / bare)
                run["cpu_share"].append(bare_cpu * per_frame / cpu_ms)
                run["fps"].append(fps)
                run["cpu_ms"].append(cpu_ms)
                run["bare"].append(bare)
                run["bare_cpu_ms"].append(bare_cpu)
                first_results.setdefault(label, results)
            print(f"  round {r + 1} of {rounds} done, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
        acc_results = first_results
        if accuracy_model is not None:
            acc_clf = Classifier(accuracy_model, threads=threads or None, spin=False)
            acc_results = {label: loop_run(acc_clf, video, detectors[d] if d else None, n)[2] for label, d, n in configs if d}

    print(f"\n### The loop, every frame of the video in order: medians of {rounds} interleaved rounds; load average at the end {os.getloadavg()[0]:.2f}\n")
    print("| detector | detect every N | loop FPS | bare model /s | FPS / bare (range) | faces/s / bare | CPU ms per frame (bare: per inference) | model's share of the CPU | recall IoU>=0.5 | boxes carried | mean IoU detected / carried | label agrees with N=1 | accuracy, missed = wrong |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, dname, n in configs:
        run = runs[label]
        row = {k: statistics.median(v) for k, v in run.items()}
        row["ratios"] = run["ratio"]
        if dname is not None:
            ref = face_outcomes(acc_results[f"{dname} N=1"], truths) if f"{dname} N=1" in acc_results else None
            mine = face_outcomes(acc_results[label], truths)
            row.update(summarise_faces(mine, ref or mine, truths))
            if ref is None:
                row["agreement"] = None
        out["loop"][label] = row
        ious = " / ".join("-" if row.get(k) is None else f"{row[k]:.2f}" for k in ("iou_detected", "iou_carried")) if dname else ""
        faces = (f"{100 * row['recall']:.1f}% | {100 * row['carried_share']:.0f}% | {ious} | "
                 f"{_pct(row.get('agreement'))} | {100 * row['accuracy_all']:.1f}%") if dname else "- | - | - | - | -"
        print(f"| {dname or 'none (whole frames)'} | {n if dname else '-'} | {row['fps']:.1f} | {row['bare']:.1f} | **{row['ratio']:.2f}x** "
              f"({min(run['ratio']):.2f}-{max(run['ratio']):.2f}) | {row['face_ratio']:.2f}x | {row['cpu_ms']:.2f} ({row['bare_cpu_ms']:.2f}) | "
              f"{row['cpu_share']:.2f} | {faces} |")
    for dname in detector_names:
        row = out["loop"].get(f"{dname} N=1")
        if row is not None:
            print(f"\n{dname}, N=1: a face found on two frames in a row got the same label on both in "
                  f"{_pct(row['same_label_as_previous_frame'])} of cases (how much labels flicker anyway)")
    out["load_end"] = os.getloadavg()
    if json_out is not None:
        from gclf.runtime.files import write_json_atomic

        write_json_atomic(json_out, out)


if __name__ == "__main__":
    sys.exit(main())
