"""Per-photo accuracy of `gclf-infer --json` on labelled face photos, and what the errors are.

    python -m benchmarks.photo_accuracy MODEL.onnx (--manifest RUN/manifest.json | --data DIR) \
        [--json OUT] [--record] [-- GCLF_INFER_OPTIONS...]

The photos are a run's test split (`--manifest`: never trained on) or every photo of a
folder-per-class set (`--data`, e.g. ../shared/datasets/utkface-dev). They go through the
`gclf-infer` command itself, at its defaults unless options follow `--` (e.g. `--face-model
haar`): a faces model then detects and crops faces, with the detector it was trained with. A
photo counts as right when the label of its largest face, or of the whole image where no face
was found (the default fallback), is its folder's class. The errors are broken down: photos
without a face, small faces (box height under a quarter of the photo's), grey photos.
Prints the figures and asserts nothing. `--record` also writes them into benchmarks/results/,
one figure per model, options and photo set (benchmarks.results).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

from benchmarks import results
from gclf.runtime.decode import decode_image
from gclf.runtime.listing import list_images

SMALL_FACE = 0.25  # a face box lower than this share of the photo's height counts as small


def labelled_photos(manifest: Path | None, data: Path | None) -> list[tuple[Path, str]]:
    if manifest is not None:
        return [(Path(p), label) for p, label in json.loads(manifest.read_text())["splits"]["test"]]
    return [(p, cls.name) for cls in sorted(d for d in data.iterdir() if d.is_dir()) for p in list_images(cls)]


def is_grey(path: Path) -> bool:
    rgb = decode_image(path).astype(np.int16)
    return bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 8 and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= 8)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--record", "save_record", is_flag=True, help=results.RECORD_HELP)
@click.argument("infer_options", nargs=-1, type=click.UNPROCESSED)
def main(model: Path, manifest: Path | None, data: Path | None, json_out: Path | None, save_record: bool, infer_options: tuple[str, ...]) -> None:
    if (manifest is None) == (data is None):
        raise click.UsageError("give --manifest or --data")
    photos = labelled_photos(manifest, data)
    truth = {str(p): label for p, label in photos}
    gclf_infer = Path(sys.executable).parent / "gclf-infer"
    started = time.monotonic()
    done = subprocess.run([str(gclf_infer), str(model), *truth, "--json", *infer_options], capture_output=True, text=True)
    seconds = time.monotonic() - started
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    rows = []
    for r in records:
        faces = r.get("faces")
        if faces:
            label, box = faces[0]["label"], faces[0]["box"]
        else:
            label, box = r.get("label"), None
        rows.append({"path": r["path"], "label": label, "true": truth[r["path"]], "no_face": faces == [], "box": box})
    n = len(rows)
    right = [row["label"] == row["true"] for row in rows]
    with_face = [ok for ok, row in zip(right, rows) if not row["no_face"]]
    without = [ok for ok, row in zip(right, rows) if row["no_face"]]
    heights = {}
    for row in rows:
        if row["box"] is not None:
            heights[row["path"]] = row["box"][3] / decode_image(row["path"]).shape[0]
    small = [ok for ok, row in zip(right, rows) if row["path"] in heights and heights[row["path"]] < SMALL_FACE]
    grey_flags = [is_grey(Path(row["path"])) for row in rows]
    grey = [ok for ok, g in zip(right, grey_flags) if g]
    colour = [ok for ok, g in zip(right, grey_flags) if not g]
    errors = [row for ok, row in zip(right, rows) if not ok]
    per_class = {}
    for row, ok in zip(rows, right):
        per_class.setdefault(row["true"], []).append(ok)

    def share(xs: list[bool]) -> str:
        return f"{100 * sum(xs) / len(xs):.1f}% of {len(xs)}" if xs else "-"

    summary = {
        "model": str(model), "options": list(infer_options), "photos": n, "read": len(records),
        "accuracy": sum(right) / n if n else None,
        "no_face": len(without), "accuracy_with_face": sum(with_face) / len(with_face) if with_face else None,
        "accuracy_no_face": sum(without) / len(without) if without else None,
        "small_faces": len(small), "accuracy_small_faces": sum(small) / len(small) if small else None,
        "grey": len(grey), "accuracy_grey": sum(grey) / len(grey) if grey else None,
        "accuracy_colour": sum(colour) / len(colour) if colour else None,
        "per_class_accuracy": {c: sum(v) / len(v) for c, v in per_class.items()},
        "errors": len(errors), "errors_no_face": sum(e["no_face"] for e in errors),
        "errors_small_face": sum(e["path"] in heights and heights[e["path"]] < SMALL_FACE for e in errors),
        "errors_grey": sum(g for ok, g in zip(right, grey_flags) if not ok),
        "seconds": round(seconds, 1),
        "stderr_tail": done.stderr.strip().splitlines()[-2:],
    }
    print(f"{model} {' '.join(infer_options)}: {share(right)} photos right; with a face {share(with_face)}, "
          f"no face found {share(without)}; small faces {share(small)}; grey {share(grey)}, colour {share(colour)}; "
          f"errors {len(errors)} (no face {summary['errors_no_face']}, small face {summary['errors_small_face']}, grey {summary['errors_grey']}); "
          f"{seconds:.0f} s")
    print("  gclf-infer: " + " | ".join(summary["stderr_tail"]))
    if json_out is not None:
        json_out.write_text(json.dumps({**summary, "wrong": [e["path"] for e in errors]}, indent=1))
    if save_record:
        from gclf.runtime.classifier import Classifier

        photo_set = f"the test split of {manifest.parent.name}" if manifest is not None else data.name
        options = " ".join(results.local_path(o) for o in infer_options) or "its defaults"
        results.record("benchmarks.photo_accuracy", f"gclf-infer on {photo_set}: {model.name}, {options}", topic="faces", values={
            "right": share(right), "no face found": f"{len(without)} photos", "right where a face was found": share(with_face),
            "grey photos": share(grey), **{f"class {c}": share(v) for c, v in sorted(per_class.items())}, "time (s)": round(seconds)},
            conditions={**results.model_conditions(model, Classifier(model).metadata), "photos": f"{n}, {photo_set}", "gclf-infer options": options,
                        "load": f"{results.load_average()} at the end"})


if __name__ == "__main__":
    main()
