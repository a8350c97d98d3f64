"""Accuracy of `gclf-infer` on photo files of faces in larger pictures: with face detection
(Haar, YuNet) against whole images (--no-faces).

    python -m benchmarks.infer_faces_bench --model RUN/model.onnx --manifest RUN/manifest.json \
        [--face-model yunet.onnx] [--frames 200] [--keep DIR] [--record]

Prints its figures and asserts nothing (`--record` also writes them into benchmarks/results/). Each frame is one photo of the model's test split
(from the run's manifest: never trained on) placed at a random place and size in a 640x480
generated scene by benchmarks/scene_bench.py's `make_scene` (the benchmarks' one frame
generator), saved as JPEG. The frames go
through the `gclf-infer` command itself (--json); a frame counts as right when the label of
its largest face, or the whole image where no face was found (the default fallback), is the
photo's class. For reference the model is also run on the photos as they are.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np

from benchmarks import results
from benchmarks.common import Photo
from benchmarks.scene_bench import make_scene  # the benchmarks' one frame generator

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_DATA = SHARED / "datasets" / "gender-faces"
DEFAULT_YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"


def test_photos(manifest: Path, data: Path, limit: int, seed: int) -> list[tuple[Path, str]]:
    """Test-split photos of the run, found under `data` (the manifest may name another checkout)."""
    items = json.loads(manifest.read_text())["splits"]["test"]
    photos = []
    for path, label in items:
        parts = Path(path).parts
        photos.append((data.joinpath(*parts[-2:]), label))  # class folder / file name
    random.Random(seed).shuffle(photos)
    return photos[:limit]


def make_frames(photos: list[tuple[Path, str]], out: Path, seed: int) -> dict[str, str]:
    """One JPEG frame per photo in `out` (benchmarks/scene_bench.py's `make_scene`, the one
    frame generator of the benchmarks: a 640x480 generated background, the photo at a random
    place and size with a feathered edge); frame file name -> the photo's class."""
    rng, nprng = random.Random(seed), np.random.default_rng(seed)
    labels = {}
    for i, (path, label) in enumerate(photos):
        bgr = cv2.imread(str(path))
        corner = cv2.imread(str(photos[rng.randrange(len(photos))][0]))
        # The true face box only matters to scene_bench's matching; here the frame's label does.
        whole = (0, 0, bgr.shape[1], bgr.shape[0])
        scene = make_scene([(Photo(path, label, path.parent.parent.name), bgr, whole)], rng, nprng, corner)
        name = f"frame_{i:04d}.jpg"
        cv2.imwrite(str(out / name), scene.bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        labels[name] = label
    return labels


def infer(model: Path, inputs: list[Path], *args: str) -> tuple[list[dict], float]:
    """`gclf-infer MODEL INPUTS --json ARGS`: its records and wall time."""
    cmd = [sys.executable, "-m", "gclf.runtime.cli", str(model), *map(str, inputs), "--json", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"gclf-infer failed ({proc.returncode}): {proc.stderr.strip()}")
    return [json.loads(line) for line in proc.stdout.splitlines()], elapsed


def frame_label(record: dict) -> str | None:
    if "faces" not in record:
        return record["label"]  # whole image (--no-faces)
    if record["faces"]:
        return record["faces"][0]["label"]  # the largest face
    return record.get("label")  # the fallback's, or None when not classified


def report(name: str, records: list[dict], truth: dict[str, str], elapsed: float) -> list[results.Cell]:
    """Prints one input's figures; returns them as a row of TABLE_COLUMNS."""
    right = sum(frame_label(r) == truth[Path(r["path"]).name] for r in records)
    line = f"{name:<34} {right / len(records):6.1%} ({right}/{len(records)})"
    row: list[results.Cell] = [name, f"{right / len(records):.1%}", None, None, None, round(elapsed, 1)]
    if records and "faces" in records[0]:
        found = [r for r in records if r["faces"]]
        right_found = sum(frame_label(r) == truth[Path(r["path"]).name] for r in found)
        none = [r for r in records if not r["faces"]]
        right_none = sum(frame_label(r) == truth[Path(r["path"]).name] for r in none)
        n_faces = sum(len(r["faces"]) for r in records)
        line += (
            f"  face found in {len(found)}/{len(records)} frames ({n_faces} boxes):"
            f" {right_found / max(1, len(found)):.1%} on those;"
            f" {len(none)} whole-image fallbacks: {right_none / max(1, len(none)):.1%}"
        )
        row[2:5] = [f"{len(found)}/{len(records)} ({n_faces} boxes)", f"{right_found / max(1, len(found)):.1%}",
                    f"{right_none}/{len(none)} ({right_none / max(1, len(none)):.1%})" if none else "none"]
    print(f"{line}  [{elapsed:.1f} s]", flush=True)
    return row


TABLE_COLUMNS = ["input", "accuracy", "faces found", "right where a face was found", "whole-image fallbacks right", "time (s)"]


@click.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="A faces model (gclf-export output).")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="The model's run manifest.json: its test split is used.")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_DATA, show_default=True)
@click.option("--face-model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_YUNET, show_default=True, help="YuNet ONNX file.")
@click.option("--frames", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None, help="Write the frames here (kept) instead of a temporary folder.")
@click.option("--record", "save_record", is_flag=True, help=results.RECORD_HELP)
def main(model: Path, manifest: Path, data: Path, face_model: Path, frames: int, seed: int, keep: Path | None, save_record: bool) -> None:
    load_start = results.load_average()
    photos = test_photos(manifest, data, frames, seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        truth = make_frames(photos, folder, seed)
        counts = {c: list(truth.values()).count(c) for c in sorted(set(truth.values()))}
        print(f"{len(truth)} frames from test-split photos {counts}, model {model}")
        records, elapsed = infer(model, [p for p, _ in photos], "--no-faces")
        by_photo = {str(p): Path(f"frame_{i:04d}.jpg").name for i, (p, _) in enumerate(photos)}
        rows = [report("photos as they are (reference)", [{**r, "path": by_photo[r["path"]]} for r in records], truth, elapsed)]
        records, elapsed = infer(model, [folder], "--no-faces")
        rows.append(report("frames, --no-faces (whole image)", records, truth, elapsed))
        records, elapsed = infer(model, [folder], "--faces", "--face-model", "haar")
        rows.append(report("frames, faces: Haar", records, truth, elapsed))
        if face_model.is_file():
            for margin in ("0", "0.2"):
                records, elapsed = infer(model, [folder], "--faces", "--face-model", str(face_model), "--face-margin", margin)
                rows.append(report(f"frames, faces: YuNet, margin {margin}", records, truth, elapsed))
        else:
            print(f"YuNet skipped: {face_model} not found")
    if save_record:
        from gclf.runtime.classifier import Classifier

        results.record("benchmarks.infer_faces_bench", "gclf-infer on photos placed in scenes", topic="faces",
                       table=results.Table(TABLE_COLUMNS, rows), conditions={
                           **results.model_conditions(model, Classifier(model).metadata),
                           "frames": f"{len(truth)} test-split photos {counts}, each in a 640x480 scene of scene_bench.make_scene (seed {seed})",
                           "load": f"{load_start} at the start, {results.load_average()} at the end"})


if __name__ == "__main__":
    main()
