"""Real-scene accuracy: face photos placed in generated scenes at known boxes, then detected.

    python -m benchmarks.scene_bench --model MODEL.onnx [--frames 300] [--margin 0 --margin 0.2 (default: 0 and the model's trained margin)]
        [--face-model PATH|yunet] [--data DIR ...] [--exclude-manifest RUN/manifest.json] [--json OUT] [--record]

Prints its figures (markdown tables) and asserts nothing; `--record` also writes them into
benchmarks/results/ (benchmarks.results). A user's photos show a person in a
scene, not a face crop; this builds such frames with a known answer:

- **Frames.** 640x480. Each holds one face photo (a share `--two-faces` of them two), drawn
  from ../shared/datasets/utkface-dev and gender-faces (`--data`), scaled to a height drawn
  log-uniformly from 48 to 400 px, at a random position, pasted with a feathered edge (so the
  photo's border is not a hard rectangle a detector could key on), on a generated background:
  a gradient with noise, blurred random shapes, or the blown-up corner of another photo. The
  frame is then JPEG-encoded at quality 85 and decoded, as a camera or a photo file would be.
- **Ground truth.** A pasted face photo is not a face box: both sets are face crops, but
  framed differently (UTKFace's 200x200 chips: YuNet's box about 85% of the width and the full
  height; gender-faces: crops of every size and tightness, some with hair and shoulders). So
  the true box of a placed face is YuNet's box on that photo *alone* (padded with a grey
  border, detected at full resolution, clipped to the photo), mapped into the frame by the
  paste's scale and offset.
  Photos in which that reference finds no face are not used (counted). This box is YuNet's
  framing, and Haar frames a face tighter (eyebrows to mouth), so detections are matched at two
  IoU thresholds: 0.5 (the usual one) and 0.3 (a box on the face with another framing); the
  median of (detected box side / true box side) shows each detector's framing.
- **Detection.** Per detector (Haar, YuNet; both through gclf.runtime.faces.make_detector, at
  the runtime's defaults): recall = true faces matched by a detection, precision = detections
  that match a true face (one-to-one, greedy by IoU), recall by true face height, ms per frame.
- **Accuracy** (the `--model`, a gclf model trained on face photos): per face matched at IoU
  >= 0.3, the class of the detector's crop (gclf.runtime.faces.face_crops, each `--margin`)
  against the class of the face photo itself classified whole, and the true label. "All
  faces" counts a missed face as wrong: what a user gets per face in the scene. The whole
  frame classified as one image (what `gclf-infer` did before face detection) is given for
  the one-face frames.

`--exclude-manifest RUN/manifest.json` leaves out the photos a model was trained and
validated on (its train and val splits; the test split stays in).
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import cv2
import numpy as np

from benchmarks import results as records  # `results` is main's dict of figures
from benchmarks.common import FRAME_H, FRAME_W, Photo, load_photos
from gclf.runtime.classifier import Classifier
from gclf.runtime.faces import Box, FaceDetector, YuNetFaceDetector, face_crops, find_faces, make_detector
from gclf.runtime.decode import decode_image

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_DATA = (SHARED / "datasets" / "utkface-dev", SHARED / "datasets" / "gender-faces")
DEFAULT_YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
PHOTO_H_RANGE = (48, 400)  # pasted photo height in pixels, drawn log-uniformly
IOU_STRICT, IOU_LOOSE = 0.5, 0.3
JPEG_QUALITY = 85
SIZE_BUCKETS = ((0, 64), (64, 128), (128, 10_000))  # true face height in pixels


@dataclass
class PlacedFace:
    photo: Photo
    box: Box  # true face box in the frame (the reference box, mapped)


@dataclass
class Scene:
    bgr: np.ndarray
    faces: list[PlacedFace]
    background: str
    detections: dict[str, list[Box]] = field(default_factory=dict)


# --- photos and their reference boxes -------------------------------------------------------


def manifest_exclusions(manifest: Path | None) -> set[Path]:
    if manifest is None:
        return set()
    splits = json.loads(manifest.read_text())["splits"]
    return {Path(p).resolve() for split in ("train", "val") for p, _ in splits.get(split, [])}


def reference_box(bgr: np.ndarray, reference: YuNetFaceDetector) -> Box | None:
    """The largest face YuNet finds in the photo alone, in the photo's pixels (clipped), or None.

    Padded by a third of its size with grey: tight face crops touch the photo's edge, where a
    detector's anchors find them less often than with some surround.
    """
    h, w = bgr.shape[:2]
    pad = max(h, w) // 3
    padded = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(110, 110, 110))
    boxes = find_faces(reference, padded).boxes
    if not boxes:
        return None
    x, y, bw, bh = max(boxes, key=lambda b: b[2] * b[3])
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(w, x + bw - pad), min(h, y + bh - pad)
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


# --- scenes ------------------------------------------------------------------------------------


def background(rng: random.Random, nprng: np.random.Generator, corner_source: np.ndarray | None) -> tuple[np.ndarray, str]:
    kinds = ["gradient", "shapes"] + (["photo corner"] if corner_source is not None else [])
    kind = rng.choice(kinds)
    if kind == "gradient":
        c0, c1 = nprng.integers(0, 256, 3), nprng.integers(0, 256, 3)
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
        t = (xx * math.cos(angle) + yy * math.sin(angle)) / (FRAME_W + FRAME_H)
        t = (t - t.min()) / max(1e-6, t.max() - t.min())
        img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
        img += nprng.normal(0, rng.uniform(3, 15), img.shape)
    elif kind == "shapes":
        img = np.empty((FRAME_H, FRAME_W, 3), np.float32)
        img[:] = nprng.integers(0, 256, 3)
        for _ in range(rng.randint(6, 20)):
            colour = tuple(int(c) for c in nprng.integers(0, 256, 3))
            x, y = rng.randrange(FRAME_W), rng.randrange(FRAME_H)
            shape = rng.choice(("rect", "ellipse", "line"))
            if shape == "rect":
                cv2.rectangle(img, (x, y), (x + rng.randint(20, 300), y + rng.randint(20, 300)), colour, -1)
            elif shape == "ellipse":
                cv2.ellipse(img, (x, y), (rng.randint(10, 150), rng.randint(10, 150)), rng.uniform(0, 180), 0, 360, colour, -1)
            else:
                cv2.line(img, (x, y), (rng.randrange(FRAME_W), rng.randrange(FRAME_H)), colour, rng.randint(2, 15))
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(2, 8))
        img += nprng.normal(0, 4, img.shape)
    else:  # a corner of another photo, blown up: real textures and colours, no whole face
        h, w = corner_source.shape[:2]
        ch, cw = max(8, h // 5), max(8, w // 5)
        y0 = 0 if rng.random() < 0.5 else h - ch
        x0 = 0 if rng.random() < 0.5 else w - cw
        img = cv2.resize(corner_source[y0 : y0 + ch, x0 : x0 + cw], (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        img = cv2.GaussianBlur(img, (0, 0), 3) + nprng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), kind


def _feather_mask(h: int, w: int) -> np.ndarray:
    """1 inside, falling to 0 over the outer ~6% of the photo: no hard rectangle edge."""
    border = max(2, round(0.06 * min(h, w)))
    mask = np.zeros((h, w), np.float32)
    mask[border:-border, border:-border] = 1.0
    return cv2.GaussianBlur(mask, (0, 0), border / 2)[..., None]


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def make_scene(
    photos: list[tuple[Photo, np.ndarray, Box]], rng: random.Random, nprng: np.random.Generator, corner_source: np.ndarray | None
) -> Scene:
    frame, kind = background(rng, nprng, corner_source)
    frame = frame.astype(np.float32)
    placed: list[PlacedFace] = []
    rects: list[tuple[int, int, int, int]] = []
    for photo, bgr, ref in photos:
        for _ in range(50):  # a non-overlapping place; a smaller photo if there is none
            lo, hi = PHOTO_H_RANGE
            hi = min(hi, FRAME_H) if len(photos) == 1 else min(hi, FRAME_H * 2 // 3)
            ph = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            scale = ph / bgr.shape[0]
            pw = max(8, round(bgr.shape[1] * scale))
            if pw > FRAME_W * (0.9 if len(photos) == 1 else 0.45):
                continue
            rect = (rng.randint(0, FRAME_W - pw), rng.randint(0, FRAME_H - ph), pw, ph)
            if not any(_overlaps(rect, r) for r in rects):
                break
        else:
            continue  # no room: this frame gets one face fewer (counted by the caller)
        rects.append(rect)
        placed.append(PlacedFace(photo, paste_face(frame, bgr, ref, rect)))
    return Scene(as_camera_frame(frame), placed, kind)


def paste_face(frame: np.ndarray, bgr: np.ndarray, ref: Box, rect: tuple[int, int, int, int]) -> Box:
    """Paste the photo `bgr` scaled into `rect` (x, y, w, h) of the float32 `frame`, in place,
    with a feathered edge; its true face box in the frame (the reference box `ref`, mapped).
    Also the frame generator of benchmarks/track_bench.py (faces moving along known paths)."""
    x, y, pw, ph = rect
    scale = ph / bgr.shape[0]
    resized = cv2.resize(bgr, (pw, ph), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR).astype(np.float32)
    mask = _feather_mask(ph, pw)
    region = frame[y : y + ph, x : x + pw]
    frame[y : y + ph, x : x + pw] = mask * resized + (1 - mask) * region
    rx, ry, rw, rh = ref
    return (x + round(rx * scale), y + round(ry * scale), max(1, round(rw * scale)), max(1, round(rh * scale)))


def as_camera_frame(frame: np.ndarray) -> np.ndarray:
    """A float32 frame as a camera or a photo file would give it: uint8, JPEG-encoded and decoded."""
    ok, jpeg = cv2.imencode(".jpg", np.clip(frame, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


# --- matching and figures ----------------------------------------------------------------------


def iou(a: Box, b: Box) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def match(truth: list[Box], found: list[Box], threshold: float) -> dict[int, int]:
    """One-to-one matches true index -> detection index, greedily by IoU, at >= threshold."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    result: dict[int, int] = {}
    used: set[int] = set()
    for value, i, j in pairs:
        if value < threshold:
            break
        if i not in result and j not in used:
            result[i] = j
            used.add(j)
    return result


def classify(clf: Classifier, images: list[np.ndarray], batch: int = 32) -> list[str]:
    labels: list[str] = []
    for i in range(0, len(images), batch):
        labels.extend(p.best for p in clf.predict_batch(images[i : i + batch]))
    return labels


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}%" if d else "n/a"


# --- the command ---------------------------------------------------------------------------------


@click.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="A gclf faces model (ONNX) for the accuracy part; without it only detection is measured.")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_DATA, show_default=True, help="Folders of face photos, one sub-folder per class.")
@click.option("--face-model", default=str(DEFAULT_YUNET), show_default=True, help="YuNet for the YuNet detector and for the true boxes: a file, or 'yunet' (the pinned file from the user cache).")
@click.option("--frames", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--two-faces", type=click.FloatRange(0, 1), default=0.15, show_default=True, help="Share of frames with two faces.")
@click.option("--margin", "margins", multiple=True, type=click.FloatRange(0, 2), default=(), help="Crop margins to compare (repeat the option).  [default: 0 and the margin the --model records it was trained with (gclf-train --face-crop), else 0 and 0.2]")
@click.option("--exclude-manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="A run's manifest.json: leave out its train and val photos.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="onnxruntime threads (0: one per core).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the figures as JSON here.")
@click.option("--save-frames", type=click.Path(file_okay=False, path_type=Path), default=None, help="Write the first 20 frames (with true boxes in green) here, to look at.")
@click.option("--record", "save_record", is_flag=True, help=records.RECORD_HELP)
def main(model, data, face_model, frames, two_faces, margins, exclude_manifest, seed, threads, json_out, save_frames, save_record) -> None:
    data = [Path(d) for d in data]
    if not all(d.is_dir() for d in data):
        print(f"skipped: no photos at {[str(d) for d in data if not d.is_dir()]}")
        return
    if face_model != "yunet" and not Path(face_model).is_file():
        print(f"skipped: the true boxes need YuNet, and there is no model at {face_model} (pass --face-model PATH or yunet)")
        return
    load_start = os.getloadavg()[0]
    yunet = make_detector(face_model if face_model == "yunet" else Path(face_model))
    assert isinstance(yunet, YuNetFaceDetector)
    # The reference sees each photo alone and at full resolution (max_side large): it defines
    # the true box and is not the detector under test.
    reference = YuNetFaceDetector(yunet.path, max_side=1024)
    detectors: dict[str, FaceDetector] = {"haar": make_detector("haar"), "yunet": yunet}

    rng, nprng = random.Random(seed), np.random.default_rng(seed)
    pool = load_photos(data, manifest_exclusions(exclude_manifest))
    rng.shuffle(pool)
    n_faces_wanted = frames + round(frames * two_faces)
    chosen: list[tuple[Photo, np.ndarray, Box]] = []
    no_reference = 0
    for photo in pool:  # enough photos with a reference face, in a random order
        if len(chosen) == n_faces_wanted:
            break
        bgr = cv2.cvtColor(decode_image(photo.path), cv2.COLOR_RGB2BGR)
        ref = reference_box(bgr, reference)
        if ref is None:
            no_reference += 1
            continue
        chosen.append((photo, bgr, ref))
    n_two = round(frames * two_faces)
    groups = [chosen[i : i + 1] for i in range(frames - n_two)] + [chosen[frames - n_two + 2 * i : frames - n_two + 2 * i + 2] for i in range(n_two)]
    groups = [g for g in groups if g]

    scenes: list[Scene] = []
    for group in groups:
        corner_source = pool[rng.randrange(len(pool))]
        corner_bgr = cv2.cvtColor(decode_image(corner_source.path), cv2.COLOR_RGB2BGR)
        scenes.append(make_scene(group, rng, nprng, corner_bgr))
    n_faces = sum(len(s.faces) for s in scenes)
    by_source: dict[str, int] = {}
    for s in scenes:
        for f in s.faces:
            by_source[f.photo.source] = by_source.get(f.photo.source, 0) + 1
    print(f"OpenCV {cv2.__version__}, {os.cpu_count()} CPU cores; YuNet {yunet.path}")
    print(f"{len(scenes)} frames {FRAME_W}x{FRAME_H}, {n_faces} faces ({', '.join(f'{k} {v}' for k, v in by_source.items())}; "
          f"{sum(len(s.faces) == 2 for s in scenes)} frames with two); {no_reference} photos skipped without a reference face; seed {seed}")
    if save_frames is not None:
        save_frames.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(scenes[:20]):
            img = s.bgr.copy()
            for f in s.faces:
                x, y, w, h = f.box
                cv2.rectangle(img, (x, y), (x + w, y + h), (0, 255, 0), 2)
            cv2.imwrite(str(save_frames / f"frame_{i:03d}.jpg"), img)

    results: dict = {"frames": len(scenes), "faces": n_faces, "by_source": by_source, "no_reference": no_reference, "seed": seed, "detectors": {}}
    print("\n| detector | recall IoU>=0.5 | precision IoU>=0.5 | recall IoU>=0.3 | precision IoU>=0.3 | recall by true face height " + " / ".join(f"{lo}-{hi if hi < 10_000 else ''}px" for lo, hi in SIZE_BUCKETS) + " | box side / true side (median) | ms per frame (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, det in detectors.items():
        ms, tp = [], {IOU_STRICT: 0, IOU_LOOSE: 0}
        n_det = 0
        bucket_hits = [[0, 0] for _ in SIZE_BUCKETS]
        ratios = []
        for s in scenes:
            start = time.perf_counter()
            found = find_faces(det, s.bgr).boxes
            ms.append(1000 * (time.perf_counter() - start))
            s.detections[name] = found
            n_det += len(found)
            truth = [f.box for f in s.faces]
            for thr in tp:
                tp[thr] += len(match(truth, found, thr))
            strict = match(truth, found, IOU_STRICT)
            for i, t in enumerate(truth):
                for b, (lo, hi) in enumerate(SIZE_BUCKETS):
                    if lo <= t[3] < hi:
                        bucket_hits[b][1] += 1
                        bucket_hits[b][0] += i in strict
            for i, j in match(truth, found, IOU_LOOSE).items():
                ratios.append(math.sqrt(found[j][2] * found[j][3] / (truth[i][2] * truth[i][3])))
        figures = {
            "recall_05": tp[IOU_STRICT] / n_faces, "precision_05": tp[IOU_STRICT] / n_det if n_det else None,
            "recall_03": tp[IOU_LOOSE] / n_faces, "precision_03": tp[IOU_LOOSE] / n_det if n_det else None,
            "recall_by_height": {f"{lo}-{hi}": (h / n if n else None, n) for (lo, hi), (h, n) in zip(SIZE_BUCKETS, bucket_hits)},
            "box_ratio_median": statistics.median(ratios) if ratios else None, "ms_median": statistics.median(ms), "detections": n_det,
        }
        results["detectors"][name] = figures
        buckets = " / ".join(f"{pct(h, n)} (n={n})" for h, n in bucket_hits)
        print(f"| {name} | {pct(tp[IOU_STRICT], n_faces)} | {pct(tp[IOU_STRICT], n_det)} | {pct(tp[IOU_LOOSE], n_faces)} | "
              f"{pct(tp[IOU_LOOSE], n_det)} | {buckets} | {figures['box_ratio_median']:.2f} | {figures['ms_median']:.1f} |")

    if model is None:
        print("\naccuracy skipped: no --model given")
    else:
        clf = Classifier(model, threads=threads or None)
        results["accuracy"] = accuracy_part(clf, scenes, list(margins) or default_margins(clf), detectors)
    if json_out is not None:
        from gclf.runtime.atomic import write_json_atomic

        write_json_atomic(json_out, results)
    if save_record:
        conditions = {
            "frames": f"{len(scenes)} of {FRAME_W}x{FRAME_H}, {n_faces} faces: photos from {', '.join(d.name for d in data)}, 48-400 px high, pasted on "
                      f"generated backgrounds, JPEG quality 85; true box: YuNet on the photo alone",
            "detectors": f"the runtime's defaults: a copy of at most 320 px; YuNet {yunet.path.name}", "seed": seed,
            "threads": threads or "onnxruntime's default", "load": f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"}
        if model is not None:
            conditions.update(model_conditions_of(model))
        record_scenes(results, conditions)


def model_conditions_of(model: Path) -> dict[str, str]:
    clf = Classifier(model)
    return records.model_conditions(model, clf.metadata)


def record_scenes(figures: dict, conditions: dict) -> None:
    """The detection table and, with a model, the per-face table, as benchmarks/results records."""
    heights = " / ".join(f"<{hi}" if lo == 0 else f">={lo}" if hi >= 10_000 else f"{lo}-{hi}" for lo, hi in SIZE_BUCKETS)
    table = records.Table(["detector", "recall IoU>=0.5", "precision IoU>=0.5", f"recall, true face {heights} px high", "box side / true side",
                           "ms per frame"])
    for name, f in figures["detectors"].items():
        buckets = " / ".join("-" if h is None else f"{100 * h:.0f}" for h, _ in f["recall_by_height"].values())
        table.rows.append([name, f"{100 * f['recall_05']:.1f}%", "-" if f["precision_05"] is None else f"{100 * f['precision_05']:.1f}%",
                           f"{buckets}%", "-" if f["box_ratio_median"] is None else f"{f['box_ratio_median']:.2f}", f"{f['ms_median']:.0f}"])
    init = {"init": conditions.get("init", "no model: detection only")}
    records.record("benchmarks.scene_bench", "Detection in generated scenes", topic="faces", table=table, conditions={**conditions, **init})
    accuracy = figures.get("accuracy") or {}
    if accuracy.get("rows"):
        table = records.Table(["detector", "margin", "faces matched", "crop accuracy", "face photo whole, same faces", "crop agrees with photo",
                               "all faces (missed = wrong)"])
        pct_or_dash = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        for r in accuracy["rows"]:
            table.rows.append([r["detector"], r["margin"], r["matched"], pct_or_dash(r["crop"]), pct_or_dash(r["photo_same_faces"]),
                               pct_or_dash(r["agreement"]), pct_or_dash(r["all_faces"])])
        records.record("benchmarks.scene_bench", "Per-face accuracy in generated scenes", topic="faces", table=table, conditions={
            **conditions, "whole one-face frame classified as one image": pct_or_dash(accuracy.get("whole_frame_one_face"))})


def default_margins(clf: Classifier) -> list[float]:
    """0 and the model's training margin (its metadata's face_crop), else 0 and 0.2."""
    crop = clf.metadata.face_crop
    trained = crop.margin if crop is not None else 0.2
    return sorted({0.0, trained})


def accuracy_part(clf: Classifier, scenes: list[Scene], margins: list[float], detectors: dict[str, FaceDetector]) -> dict:
    faces = [(s, i, f) for s in scenes for i, f in enumerate(s.faces)]
    unknown = {f.photo.label for _, _, f in faces} - set(clf.class_names)
    if unknown:
        print(f"\naccuracy skipped: the model's classes {list(clf.class_names)} do not include {sorted(unknown)}")
        return {}
    truth = [f.photo.label for _, _, f in faces]
    whole_photo = classify(clf, [decode_image(f.photo.path) for _, _, f in faces])
    one_face = [s for s in scenes if len(s.faces) == 1]
    whole_frame = classify(clf, [cv2.cvtColor(s.bgr, cv2.COLOR_BGR2RGB) for s in one_face])
    n_photo_ok = sum(p == t for p, t in zip(whole_photo, truth))
    n_frame_ok = sum(p == s.faces[0].photo.label for p, s in zip(whole_frame, one_face))
    out: dict = {"model": str(clf.path), "input": f"{clf.spec.input_width}x{clf.spec.input_height}", "variant": clf.metadata.variant,
                 "face_photo_whole": n_photo_ok / len(faces), "whole_frame_one_face": n_frame_ok / len(one_face) if one_face else None, "rows": []}
    print(f"\nmodel {clf.path} ({clf.spec.input_width}x{clf.spec.input_height}, {clf.metadata.variant}): "
          f"face photos classified whole {pct(n_photo_ok, len(faces))} of {len(faces)}; "
          f"whole frames (one-face frames, no detection) {pct(n_frame_ok, len(one_face))} of {len(one_face)}")
    print("\n| detector | margin | faces matched (IoU>=0.3) | crop accuracy | face photo whole, same faces | crop agrees with photo | all faces (missed = wrong) |")
    print("|---|---|---|---|---|---|---|")
    for name in detectors:
        matched: list[tuple[int, Box]] = []  # index into `faces`, detected box
        k = 0
        for s in scenes:
            pairs = match([f.box for f in s.faces], s.detections[name], IOU_LOOSE)
            for i in range(len(s.faces)):
                if i in pairs:
                    matched.append((k + i, s.detections[name][pairs[i]]))
            k += len(s.faces)
        for margin in margins:
            crops = [face_crops(faces[idx][0].bgr, [box], margin)[0] for idx, box in matched]
            labels = classify(clf, crops)
            ok = sum(lab == truth[idx] for lab, (idx, _) in zip(labels, matched))
            photo_ok = sum(whole_photo[idx] == truth[idx] for idx, _ in matched)
            agree = sum(lab == whole_photo[idx] for lab, (idx, _) in zip(labels, matched))
            row = {"detector": name, "margin": margin, "matched": len(matched), "crop": ok / len(matched) if matched else None,
                   "photo_same_faces": photo_ok / len(matched) if matched else None, "agreement": agree / len(matched) if matched else None,
                   "all_faces": ok / len(faces)}
            out["rows"].append(row)
            print(f"| {name} | {margin:g} | {len(matched)} of {len(faces)} | {pct(ok, len(matched))} | {pct(photo_ok, len(matched))} | "
                  f"{pct(agree, len(matched))} | {pct(ok, len(faces))} |")
    return out


if __name__ == "__main__":
    sys.exit(main())
