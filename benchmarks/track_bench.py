"""Detection at the model's pace: the live loop with the face detector on every N-th frame.

    python -m benchmarks.track_bench --model M.int8.onnx [--accuracy-model FACES.onnx]
        [--every 1 --every 2 ...] [--rounds 3] [--clips 6 --clip-frames 50] [--json OUT] [--record]

Prints its figures (markdown tables) and asserts nothing; `--record` also writes them into
benchmarks/results/ (benchmarks.results).

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
- **Finding faces alone.** Each detector through `BoxCarrier` for each N over every frame, in
  this thread: CPU ms per frame of detection plus tracking, and how often the detector ran.
- **Loop.** `run_live` on the video, every frame in order (as `gclf-infer --video`), for each
  detector and each `--every` N (gclf.runtime.live.carry.BoxCarrier), and on whole frames.
  Rounds are interleaved: in each round every configuration runs once, each between two
  measurements of the bare model's single-image rate (`session.run` on a ready input), and
  the ratio loop FPS / bare rate of that run is kept; the medians over rounds are reported.
  The machine may be shared, so the CPU time of this process per frame (all its threads:
  video decoding, detection, tracking, crops, model) is given too; other processes' load does
  not count in it.
- **People** (`--people`, gclf.runtime.live.people). Clips of real faces (utkface-dev by default)
  walking across the frame along straight lines, one after another with empty frames
  between; two people crossing (walking towards each other, the later one in front); and a
  person who walks out of the frame and comes back after a second. Each visit (a person from
  entering to leaving the frame) is one true track. `run_live` (YuNet, every 3rd frame) with
  `--accuracy-model`: per-frame accuracy against per-track accuracy on the same face-frames
  (the track's label so far, and its final label: what `--events` writes), with the final
  label from mean probabilities (the runtime's), summed log-probabilities, face-size
  weights and a majority vote; label changes per track; tracks per visit; id changes along a crossing person's
  frames; tracks that followed two visits; and the cost: the loop with and without person
  tracking, interleaved rounds, plus the tracker alone replayed over the recorded frames.
  `--jitter` turns, lights and blurs each frame's photo a little (real faces differ from
  frame to frame; a pasted still photo does not).
- **Faces.** Per configuration: recall at IoU >= 0.5 against the true boxes (every frame,
  every face), how many boxes were carried, and per face on each frame the model's label
  compared with the label that detection on every frame (N=1, same detector) gives for that
  face: agreement on the faces both found, and accuracy against the photo's true label with a
  missed face counted as wrong. `--accuracy-model` (a faces model that tells the classes
  apart) is used for this part if given; the speed model otherwise.
"""

from __future__ import annotations

import collections
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

from benchmarks import results
from benchmarks.common import FRAME_H, FRAME_W, Photo, bare_rate, load_photos, write_video
from benchmarks.scene_bench import DEFAULT_DATA, DEFAULT_YUNET, _feather_mask, as_camera_frame, background, iou, match, paste_face, reference_box
from gclf.runtime.classifier import Classifier
from gclf.runtime.decode import decode_image
from gclf.runtime.faces import Box, FaceDetector, HaarFaceDetector, YuNetFaceDetector, find_faces
from gclf.runtime.live.frames import FrameResult
from gclf.runtime.live.loop import run_live
from gclf.runtime.live.carry import BoxCarrier
from gclf.runtime.live.people import PersonTracker, TrackEvent
from gclf.runtime.live.sources import CaptureSource, OrderedFrameReader

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
        self.events: list[TrackEvent] = []

    def write(self, result: FrameResult, annotated) -> bool:
        self.results.append(result)
        return True

    def write_event(self, event: TrackEvent) -> None:
        self.events.append(event)

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
        out.append([(r.faces[pairs[i]].best, r.detected[pairs[i]] if r.detected else None, iou(t.boxes[i], boxes[pairs[i]]))
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


# --- people: tracks, per-track answers -------------------------------------------------------

GAP_FRAMES = 15  # empty frames between two visits: longer than a track is kept without a face
RETURN_GAP_FRAMES = 30  # a person out of view for a second at 30 frames/s, then back
WALK_H_RANGE = (110, 200)  # pasted photo height, pixels
WALK_SPEED_RANGE = (4.0, 9.0)  # pixels per frame
WALK_GROW_RANGE = (0.6, 1.6)  # walkers: the face's height at the end of the walk against the start


@dataclass
class PeopleTruth:
    boxes: list[Box]
    labels: list[str]
    visits: list[int]  # per face: which visit (a person from entering to leaving the frame)
    scenario: str


def paste_clipped(frame: np.ndarray, bgr: np.ndarray, ref: Box, rect: tuple[int, int, int, int]) -> Box | None:
    """scene_bench's paste_face for a photo that may stick out of the frame (a person walking
    in or out): the visible part is pasted; the true face box clipped to the frame, or None
    if less than half of the face is in view."""
    x, y, pw, ph = rect
    fh, fw = frame.shape[:2]
    x0, x1 = max(0, x), min(fw, x + pw)
    if x1 - x0 < 2:
        return None
    if (x0, x1) == (x, x + pw):
        return paste_face(frame, bgr, ref, rect)
    scale = ph / bgr.shape[0]
    resized = cv2.resize(bgr, (pw, ph), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR).astype(np.float32)
    mask = _feather_mask(ph, pw)[:, x0 - x : x1 - x]
    region = frame[y : y + ph, x0:x1]
    frame[y : y + ph, x0:x1] = mask * resized[:, x0 - x : x1 - x] + (1 - mask) * region
    rx, ry, rw, rh = ref
    bx, by, bw, bh = x + round(rx * scale), y + round(ry * scale), max(1, round(rw * scale)), max(1, round(rh * scale))
    vx0, vx1 = max(0, bx), min(fw, bx + bw)
    if (vx1 - vx0) < 0.5 * bw:
        return None
    return (vx0, by, vx1 - vx0, bh)


def _walk(photo_h: float, bgr: np.ndarray, y: float, speed: float, rightwards: bool, grow: float = 1.0) -> list[tuple[int, int, int, int]]:
    """The pasted rectangles of one walk across the whole frame, the face's height going from
    `photo_h` to `grow` times that (walking towards the camera or away)."""
    aspect = bgr.shape[1] / bgr.shape[0]
    widest = round(photo_h * max(1.0, grow) * aspect)
    xs = np.arange(-0.6 * widest, FRAME_W - 0.4 * widest, speed)  # from out of view on one side to out on the other
    if not rightwards:
        xs = xs[::-1]
    rects = []
    for k, x in enumerate(xs):
        ph = round(photo_h * (1 + (grow - 1) * k / max(1, len(xs) - 1)))
        rects.append((int(round(x)), int(round(y)), round(ph * aspect), ph))
    return rects


def jittered(bgr: np.ndarray, nprng: np.random.Generator) -> np.ndarray:
    """The photo as one more video frame of the same person might show it: turned by up to 8
    degrees, brighter or darker by up to 20%, and on a third of the frames blurred by motion.
    A pasted still photo otherwise looks the same on every frame, which real faces do not."""
    h, w = bgr.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), float(nprng.uniform(-8, 8)), 1.0)
    out = cv2.warpAffine(bgr, turn, (w, h), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    out = out * nprng.uniform(0.8, 1.2) + nprng.uniform(-15, 15)
    if nprng.random() < 1 / 3:
        k = int(nprng.integers(3, 10))
        out = cv2.filter2D(out, -1, np.full((1, k), 1.0 / k, np.float32))
    return np.clip(out, 0, 255).astype(np.uint8)


def make_people_clips(chosen: list[tuple[Photo, np.ndarray, Box]], pool: list[Photo], walkers: int, crossings: int, returns: int,
                      rng: random.Random, nprng: np.random.Generator, jitter: bool = False) -> tuple[list[np.ndarray], list[PeopleTruth]]:
    frames: list[np.ndarray] = []
    truths: list[PeopleTruth] = []
    it = iter(chosen)
    visit = 0

    def render(bg: np.ndarray, placed: list[tuple[tuple[Photo, np.ndarray, Box], tuple[int, int, int, int], int]], scenario: str) -> None:
        frame = bg.astype(np.float32) + nprng.normal(0, 2.0, bg.shape).astype(np.float32)
        boxes, labels, visits = [], [], []
        for (photo, bgr, ref), rect, v in placed:  # later ones in front
            box = paste_clipped(frame, jittered(bgr, nprng) if jitter else bgr, ref, rect)
            if box is not None:  # mostly out of the frame: not a face anyone could classify
                boxes.append(box)
                labels.append(photo.label)
                visits.append(v)
        frames.append(as_camera_frame(frame))
        truths.append(PeopleTruth(boxes, labels, visits, scenario))

    def new_background() -> np.ndarray:
        corner = cv2.cvtColor(decode_image(pool[rng.randrange(len(pool))].path), cv2.COLOR_RGB2BGR)
        return background(rng, nprng, corner)[0]

    def height() -> float:
        return rng.uniform(*WALK_H_RANGE)

    for _ in range(walkers):
        bg, face, h = new_background(), next(it), height()
        grow = math.exp(rng.uniform(math.log(WALK_GROW_RANGE[0]), math.log(WALK_GROW_RANGE[1])))
        for _ in range(GAP_FRAMES):
            render(bg, [], "walk")
        path = _walk(h, face[1], rng.uniform(0, FRAME_H - h * max(1.0, grow)), rng.uniform(*WALK_SPEED_RANGE), rng.random() < 0.5, grow)
        for rect in path:
            render(bg, [(face, rect, visit)], "walk")
        visit += 1
    for _ in range(crossings):
        bg, a, b = new_background(), next(it), next(it)
        ha, hb = height(), height()
        ya = rng.uniform(0, FRAME_H - max(ha, hb))
        yb = min(FRAME_H - hb, max(0.0, ya + rng.uniform(-0.3, 0.3) * ha))  # at about the same height: they meet
        speed = rng.uniform(*WALK_SPEED_RANGE)
        left, right = _walk(ha, a[1], ya, speed, True), _walk(hb, b[1], yb, speed, False)
        for _ in range(GAP_FRAMES):
            render(bg, [], "cross")
        for t in range(max(len(left), len(right))):
            placed = ([(a, left[t], visit)] if t < len(left) else []) + ([(b, right[t], visit + 1)] if t < len(right) else [])
            render(bg, placed, "cross")
        visit += 2
    for _ in range(returns):
        bg, face, h = new_background(), next(it), height()
        y, speed = rng.uniform(0, FRAME_H - h), rng.uniform(*WALK_SPEED_RANGE)
        for _ in range(GAP_FRAMES):
            render(bg, [], "return")
        there = _walk(h, face[1], y, speed, True)
        for rect in there[len(there) // 3 :]:  # from the middle out at the right edge
            render(bg, [(face, rect, visit)], "return")
        for _ in range(RETURN_GAP_FRAMES):
            render(bg, [], "return")
        for rect in _walk(h, face[1], y, speed, False)[: 2 * len(there) // 3]:  # back in from the right
            render(bg, [(face, rect, visit + 1)], "return")
        visit += 2
    bg = new_background()
    for _ in range(GAP_FRAMES):  # the last visit's track ends before the video does
        render(bg, [], "end")
    return frames, truths


class _Mean:
    @staticmethod
    def label(probs: list[dict[str, float]], areas: list[float], how: str) -> str:
        classes = probs[0].keys()
        if how == "mean":
            score = {c: sum(p[c] for p in probs) for c in classes}
        elif how == "vote":  # majority of the frames' labels
            score = {c: sum(max(p, key=p.__getitem__) == c for p in probs) for c in classes}
        elif how == "log":
            score = {c: sum(math.log(max(p[c], 1e-6)) for p in probs) for c in classes}
        else:  # "area": face-size weighted mean
            score = {c: sum(a * p[c] for p, a in zip(probs, areas)) for c in classes}
        return max(score, key=score.__getitem__)


def _mean_or_none(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def people_figures(results: list[FrameResult], events: list[TrackEvent], truths: list[PeopleTruth]) -> dict:
    """Per-frame vs per-track accuracy on the same face-frames, label changes, fragmentation, id changes."""
    by_track: dict[int, list[tuple[dict[str, float], float, str, str]]] = {}  # per track: (probs, area, frame label, track label so far)
    for r in results:
        for f, t in zip(r.faces, r.tracks or ()):
            by_track.setdefault(t.id, []).append((dict(f.probabilities), float(f.box[2] * f.box[3]), f.best, t.top))
    final = {e.track: e.best for e in events}  # top classes: the benchmark measures top-1, unsure or not
    variants = {how: {tid: _Mean.label([x[0] for x in xs], [x[1] for x in xs], how) for tid, xs in by_track.items()} for how in ("mean", "log", "area", "vote")}
    n = correct_frame = correct_so_far = 0
    correct_final = {"events": 0, "mean": 0, "log": 0, "area": 0, "vote": 0}
    visit_labels: dict[int, list[tuple[str, str, str]]] = {}  # per visit: (frame label, track's final label, true label)
    visit_tracks: dict[int, list[int]] = {}
    visit_scenario: dict[int, str] = {}
    n_faces = 0
    for r, t in zip(results, truths):
        n_faces += len(t.boxes)
        pairs = match(t.boxes, [f.box for f in r.faces], IOU)
        for i, j in pairs.items():
            face, track, true = r.faces[j], r.tracks[j], t.labels[i]
            n += 1
            correct_frame += face.best == true
            correct_so_far += track.top == true
            correct_final["events"] += final.get(track.id, track.top) == true
            for how in ("mean", "log", "area", "vote"):
                correct_final[how] += variants[how][track.id] == true
            visit_labels.setdefault(t.visits[i], []).append((face.best, final.get(track.id, track.top), true))
            visit_tracks.setdefault(t.visits[i], []).append(track.id)
            visit_scenario[t.visits[i]] = t.scenario
    long_tracks = {tid: xs for tid, xs in by_track.items() if len(xs) >= 3}
    changes_track = [sum(a[3] != b[3] for a, b in zip(xs, xs[1:])) for xs in long_tracks.values()]
    changes_frame = [sum(a[2] != b[2] for a, b in zip(xs, xs[1:])) for xs in long_tracks.values()]
    visits = sorted(visit_tracks)
    per_visit = [len(set(visit_tracks[v])) for v in visits]
    # A track that followed two visits (one person after another, or a person who came back).
    track_visits: dict[int, set[int]] = {}
    for v in visits:
        for tid in set(visit_tracks[v]):
            track_visits.setdefault(tid, set()).add(v)
    merged = [sorted(vs) for vs in track_visits.values() if len(vs) > 1]
    crossing = [v for v in visits if visit_scenario[v] == "cross"]
    id_changes = sum(sum(a != b for a, b in zip(visit_tracks[v], visit_tracks[v][1:])) for v in crossing)
    n_visits_truth = len({v for t in truths for v in t.visits})
    majority_right = [collections.Counter(x[0] for x in xs).most_common(1)[0][0] == xs[0][2] for xs in visit_labels.values()]
    track_right = [collections.Counter(x[1] for x in xs).most_common(1)[0][0] == xs[0][2] for xs in visit_labels.values()]
    return {
        "face_frames": n_faces, "matched": n, "recall": n / n_faces,
        "accuracy_per_frame": correct_frame / n, "accuracy_track_so_far": correct_so_far / n,
        **{f"accuracy_track_final_{k}": v / n for k, v in correct_final.items()},
        "tracks": len(by_track), "events": len(events), "visits": n_visits_truth,
        "visits_frame_majority_right": statistics.mean(majority_right), "visits_track_right": statistics.mean(track_right),
        "label_changes_per_track": statistics.mean(changes_track), "frame_label_changes_per_track": statistics.mean(changes_frame),
        "tracks_per_visit": statistics.mean(per_visit), "visits_split": sum(k > 1 for k in per_visit),
        "tracks_over_two_visits": len(merged), "merged_scenarios": [sorted({visit_scenario[v] for v in vs}) for vs in merged],
        "events_per_visit": len(events) / n_visits_truth,
        "crossing_visits": len(crossing), "id_changes_crossing": id_changes,
        "tracks_per_visit_crossing": _mean_or_none([per_visit[visits.index(v)] for v in crossing]),
        "tracks_per_visit_return": _mean_or_none([per_visit[visits.index(v)] for v in visits if visit_scenario[v] == "return"]),
    }


def people_part(clf: Classifier, acc_clf: Classifier, video: Path, truths: list[PeopleTruth], detector: FaceDetector, every: int, rounds: int) -> dict:
    rec = Recorder()
    run_live(OrderedFrameReader(CaptureSource.video(video)).start(), acc_clf, detector=detector, sinks=[rec], detect_every=every, people=PersonTracker())
    out = people_figures(rec.results, rec.events, truths)
    # The tracker alone, replayed over the recorded frames: its own cost per frame.
    replay = PersonTracker()
    start = time.perf_counter()
    for r in rec.results:
        replay.update(r.timestamp, r.faces, (FRAME_H, FRAME_W), r.detected)
    replay.finish()
    out["tracker_us_per_frame"] = 1e6 * (time.perf_counter() - start) / len(rec.results)
    # The loop with and without it, interleaved.
    fps: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for tracked in (False, True):
            feed = OrderedFrameReader(CaptureSource.video(video)).start()
            s = run_live(feed, clf, detector=detector, sinks=[Recorder()], detect_every=every, track_people=tracked)
            fps[tracked].append(s.mean_fps)
        print(f"  people: round done, fps without/with tracks {fps[False][-1]:.1f} / {fps[True][-1]:.1f}", file=sys.stderr)
    out["fps_without"], out["fps_with"] = statistics.median(fps[False]), statistics.median(fps[True])
    out["fps_ratios"] = [w / wo for w, wo in zip(fps[True], fps[False])]
    return out


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def print_people(row: dict, model: Path, detector: str, every: int) -> None:
    p = _pct
    print(f"\n### One person, one answer ({row['visits']} visits, {row['face_frames']} face-frames, {detector} every {every}, model {model.name})\n")
    print("| per-frame accuracy | per-track, so far | per-track, final (as --events) | final: mean probs | summed log-probs | face-size weighted | majority vote |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {p(row['accuracy_per_frame'])} | {p(row['accuracy_track_so_far'])} | **{p(row['accuracy_track_final_events'])}** | "
          f"{p(row['accuracy_track_final_mean'])} | {p(row['accuracy_track_final_log'])} | {p(row['accuracy_track_final_area'])} | "
          f"{p(row['accuracy_track_final_vote'])} |")
    print(f"\nPer visit (each person once): per-frame majority right {p(row['visits_frame_majority_right'])}, track's final label right {p(row['visits_track_right'])}.")
    print(f"\nOn the {row['matched']} face-frames the detector found (recall {p(row['recall'])}). "
          f"Tracks that followed two visits: {row['tracks_over_two_visits']} {row['merged_scenarios']}.\n")
    print("| label changes per track (track label / frame labels) | tracks per visit | visits split | events per visit | id changes, crossing ({} people) | tracks per visit: crossing / leaving and coming back | loop FPS without / with tracks (ratio range) | tracker alone |".format(row["crossing_visits"]))
    print("|---|---|---|---|---|---|---|---|")
    ratios = row["fps_ratios"]
    print(f"| {row['label_changes_per_track']:.2f} / {row['frame_label_changes_per_track']:.2f} | {row['tracks_per_visit']:.2f} | {row['visits_split']} | "
          f"{row['events_per_visit']:.2f} | {row['id_changes_crossing']} | {_num(row['tracks_per_visit_crossing'])} / {_num(row['tracks_per_visit_return'])} | "
          f"{row['fps_without']:.1f} / {row['fps_with']:.1f} ({min(ratios):.3f}-{max(ratios):.3f}) | {row['tracker_us_per_frame']:.0f} us/frame |")


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
@click.option("--people", is_flag=True, help="Run the people part (tracks, per-track answers) alone.")
@click.option("--walkers", type=click.IntRange(min=0), default=24, show_default=True, help="People: visits of one person walking across.")
@click.option("--crossings", type=click.IntRange(min=0), default=6, show_default=True, help="People: pairs crossing.")
@click.option("--returns", type=click.IntRange(min=0), default=3, show_default=True, help="People: a person leaving and coming back.")
@click.option("--jitter", is_flag=True, help="People: each frame turns, lights and blurs the photo a little (a still photo is otherwise the same on every frame).")
@click.option("--people-data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_DATA[0], show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--record", "save_record", is_flag=True, help=results.RECORD_HELP)
def main(model, accuracy_model, data, face_model, everys, detector_names, rounds, clips, clip_frames, two_faces, threads, seed, skip_copies,
         people, walkers, crossings, returns, jitter, people_data, json_out, save_record) -> None:
    rng, nprng = random.Random(seed), np.random.default_rng(seed)
    reference = YuNetFaceDetector(face_model, max_side=1024)
    if people:
        return main_people(model, accuracy_model, people_data, face_model, reference, detector_names[-1], everys[-1] if len(everys) == 1 else 3,
                           rounds, threads, walkers, crossings, returns, jitter, rng, nprng, json_out, save_record)
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
                    found = find_faces(det, f).boxes
                    ms.append(1000 * (time.perf_counter() - start))
                    hits += len(match(t.boxes, found, IOU))
                out["copies"][f"{name}@{side}"] = {"recall": hits / n_faces, "ms": statistics.median(ms)}
                cells.append(f"{100 * hits / n_faces:.1f}%, {statistics.median(ms):.1f} ms")
            print(f"| {name} | " + " | ".join(cells) + " |")

    print("\n### Finding faces alone (BoxCarrier called in turn, no model): CPU ms per frame, detector runs\n")
    print("| detector | " + " | ".join(f"N={n}" for n in everys) + " |")
    print("|---|" + "---|" * len(everys))
    for name in detector_names:
        cells = []
        for n in everys:
            tracker = BoxCarrier(make(name), n)
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
        from gclf.runtime.atomic import write_json_atomic

        write_json_atomic(json_out, out)
    if save_record:
        conditions = {
            "video": f"{clips} clips of {clip_frames} frames ({len(frames)} frames of {FRAME_W}x{FRAME_H}, {n_faces} face-frames): faces of "
                     f"{', '.join(Path(d).name for d in data)} moving along known paths on generated backgrounds",
            "labels": Path(accuracy_model or model).name, "threads": threads or "onnxruntime's default",
            "load": f"{out['load_start'][0]:.1f} at the start, {out['load_end'][0]:.1f} at the end"}
        record_pace(out, clf, everys, detector_names, conditions)


def record_pace(out: dict, clf: Classifier, everys, detector_names, conditions: dict) -> None:
    """The smaller copies, finding faces alone and the loop, as benchmarks/results records."""
    if out["copies"]:
        sides = " / ".join(map(str, COPY_SIDES))
        results.record("benchmarks.track_bench", "Detection on smaller copies", topic="live", conditions=conditions, values={
            f"{name} at {sides} px": "recall " + " / ".join(f"{100 * out['copies'][f'{name}@{s}']['recall']:.1f}" for s in COPY_SIDES)
            + "%, " + " / ".join(f"{out['copies'][f'{name}@{s}']['ms']:.1f}" for s in COPY_SIDES) + " ms a frame" for name in detector_names})
    ns = " / ".join(map(str, everys))
    finding = out["finding"]
    results.record("benchmarks.track_bench", "Finding faces alone, detection every N-th frame", topic="live", conditions=conditions, values={
        f"{name} at N = {ns}": " / ".join(f"{finding[f'{name} N={n}']['cpu_ms']:.1f}" for n in everys) + " ms of CPU a frame, "
        + " / ".join(str(finding[f"{name} N={n}"]["detections"]) for n in everys) + " detector runs" for name in detector_names})
    table = results.Table(["detector", "detect every N", "FPS / bare (range)", "CPU ms per frame (bare: per inference)", "recall IoU>=0.5",
                           "boxes carried", "label agrees with N=1"])
    for label, row in out["loop"].items():
        dname, _, n = label.partition(" N=")
        whole = label == "whole frames"
        table.rows.append([
            "none (whole frames)" if whole else dname, "-" if whole else int(n),
            f"**{row['ratio']:.2f}x** ({min(row['ratios']):.2f}-{max(row['ratios']):.2f})", f"{row['cpu_ms']:.2f} ({row['bare_cpu_ms']:.2f})",
            None if whole else f"{100 * row['recall']:.1f}%", None if whole else f"{100 * row['carried_share']:.0f}%",
            None if whole else _pct(row.get("agreement"))])
    results.record("benchmarks.track_bench", f"The loop with a {clf.spec.input_width} px {clf.metadata.variant} model, detection every N-th frame",
                   topic="live", table=table, conditions={**conditions, **results.model_conditions(clf.path, clf.metadata)})


def main_people(model, accuracy_model, data, face_model, reference, detector_name, every, rounds, threads, walkers, crossings, returns,
                jitter, rng, nprng, json_out, save_record=False) -> None:
    pool = load_photos([Path(data)], set())
    rng.shuffle(pool)
    needed = walkers + 2 * crossings + returns
    chosen = []
    for photo in pool:
        if len(chosen) == needed:
            break
        bgr = cv2.cvtColor(decode_image(photo.path), cv2.COLOR_RGB2BGR)
        ref = reference_box(bgr, reference)
        if ref is not None:
            chosen.append((photo, bgr, ref))
    frames, truths = make_people_clips(chosen, pool, walkers, crossings, returns, rng, nprng, jitter)
    cpu_name = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                     if line.startswith("Model name")), "unknown CPU")
    print(f"OpenCV {cv2.__version__}, {os.cpu_count()} CPU cores ({cpu_name}); load average at start {os.getloadavg()[0]:.2f}")
    print(f"{len(frames)} frames {FRAME_W}x{FRAME_H} from {data}{', appearance jittered per frame' if jitter else ''}; speed model {model}; accuracy model {accuracy_model or model}")
    clf = Classifier(model, threads=threads or None, spin=False)
    acc_clf = Classifier(accuracy_model, threads=threads or None, spin=False) if accuracy_model else clf
    detector = HaarFaceDetector() if detector_name == "haar" else YuNetFaceDetector(face_model)
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(frames, Path(tmp) / "people.avi")
        row = people_part(clf, acc_clf, video, truths, detector, every, rounds)
    row.update(cpu=cpu_name, load_end=os.getloadavg(), frames=len(frames))
    print_people(row, Path(accuracy_model or model), detector_name, every)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if json_out is not None:
        from gclf.runtime.atomic import write_json_atomic

        write_json_atomic(json_out, row)
    if save_record:
        record_people(row, {
            **results.model_conditions(acc_clf.path, acc_clf.metadata), "speed": Path(model).name,
            "video": f"{len(frames)} frames of {FRAME_W}x{FRAME_H}: {walkers} people walking across, {crossings} crossing pairs, {returns} who leave "
                     f"and come back ({row['visits']} visits), faces of {Path(data).name}{', jittered per frame' if jitter else ''}; {detector_name} every "
                     f"{every} frames; accuracy on the {row['matched']} face-frames it found",
            "threads": threads or "onnxruntime's default", "load": f"{row['load_end'][0]:.1f} at the end"}, jitter)


def record_people(row: dict, conditions: dict, jitter: bool) -> None:
    p = _pct
    finals = {row[f"accuracy_track_final_{k}"] for k in ("log", "area", "vote")}
    results.record("benchmarks.track_bench", f"One person, one answer: {'jittered' if jitter else 'still'} photos", topic="tracks", conditions=conditions, values={
        "per-frame accuracy": p(row["accuracy_per_frame"]), "per-track so far": p(row["accuracy_track_so_far"]),
        "per-track final (as --events)": f"**{p(row['accuracy_track_final_events'])}**",
        "summed log-probs, face-size weighted, majority vote": f"{p(finals.pop())} each" if len(finals) == 1 else " / ".join(
            p(row[f"accuracy_track_final_{k}"]) for k in ("log", "area", "vote")),
        "label changes per track, track / frame labels": f"{row['label_changes_per_track']:.2f} / {row['frame_label_changes_per_track']:.2f}",
        "tracks per visit": f"{row['tracks_per_visit']:.2f}", "visits split": row["visits_split"], "events per visit": f"{row['events_per_visit']:.2f}",
        f"id changes of {row['crossing_visits']} crossing people": row["id_changes_crossing"],
        "tracks that followed two visits": row["tracks_over_two_visits"], "tracker alone": f"{row['tracker_us_per_frame']:.0f} us per frame"})


if __name__ == "__main__":
    sys.exit(main())
