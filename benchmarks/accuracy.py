"""Accuracy on real photos, measured honestly: fp32 and int8, own test split and a second source.

    python -m benchmarks.accuracy RUN_DIR                    # evaluate an exported run
    python -m benchmarks.accuracy --recipe OUT               # train gclf's recommended recipe, export, evaluate
    python -m benchmarks.accuracy --train OUT [train options] # train with any options, export, evaluate
    ... --record [--figure NAME]   # also write the table into benchmarks/results/ (benchmarks.results)

Reports, for model.onnx and model.int8.onnx of the run: accuracy on the run's test split
(gender-faces when trained on it), on all of ../shared/datasets/utkface-dev (a source the run
never trained on, unless its manifest says otherwise), and on grey copies of both, with the
initialisation, epochs, image size and wall time read from the run. Prints figures, asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import results
from gclf.runtime.classifier import Classifier
from gclf.runtime.decode import decode_image
from gclf.runtime.listing import list_images
from gclf.train.augment import grey_copy

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

# gclf's recommended recipe without ImageNet weights (README, "Doing better than the study"): train from
# scratch at 112 px, where an epoch costs a quarter of one at 224, then continue the same
# network (head kept) for a few epochs at the 224 px input it will be exported with.
COMMON = ["--optimizer", "adamw", "--lr-schedule", "onecycle", "--l2", "0.05", "--augment", "standard",
          "--batch-size", "32", "--input-kind", "faces", "--quiet"]
RECIPE_STAGES = [
    ("stage1-112px", ["--weights", "none", "--image-size", "112", "--max-epochs", "20", "--learn-rate", "0.003", *COMMON]),
    ("final-224px", ["--weights", "{previous}/best.pt", "--image-size", "224", "--max-epochs", "6", "--learn-rate", "0.0005", *COMMON]),
]


def folder_items(root: Path) -> list[tuple[Path, str]]:
    return [(p, d.name) for d in sorted(root.iterdir()) if d.is_dir() for p in list_images(d)]


def evaluate(model: Path, items: list[tuple[Path, str]], *, grey: bool, batch: int = 32) -> tuple[float, float]:
    """(accuracy, mean confidence of the predicted class); `grey` feeds grey copies (RGB replicated)."""
    clf = Classifier(model)
    correct, confidence = 0, 0.0
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        imgs = [grey_copy(decode_image(path)) if grey else decode_image(path) for path, _ in chunk]
        for pred, (_, label) in zip(clf.predict_batch(imgs), chunk):
            correct += pred.best == label  # the top class, unsure or not: top-1 accuracy
            confidence += pred.confidence
    return correct / len(items), confidence / len(items)


def report(run_dir: Path) -> tuple[results.Table, dict[str, str]]:
    """Prints the run and its accuracies; returns them as a table and the run's conditions."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    sets = {"own test split": [(Path(p), c) for p, c in manifest["splits"]["test"]]}
    utk = SHARED / "utkface-dev"
    trained_on = " ".join(manifest["data"])
    if utk.is_dir() and "utkface" not in trained_on:
        sets["utkface-dev (never trained on)"] = folder_items(utk)
    print(f"run {run_dir}: init {metrics['init']['description']}; epochs {metrics['epochs_run']} (best {metrics['best_epoch']}); "
          f"image size {config['image_size']}; optimizer {config.get('optimizer')}, lr {config['learn_rate']}, batch {config['batch_size']}, "
          f"augment {config.get('augment', 'none')}; training wall time {metrics['wall_time_s']:.0f} s on {metrics['device']}")
    print(f"{'data':<32} {'images':>6} {'model':<6} {'colour acc':>10} {'conf':>6} {'grey acc':>9} {'conf':>6}")
    table = results.Table(["data", "images", "fp32", "int8", "fp32 grey", "int8 grey"], [])
    for name, items in sets.items():
        cells: dict[str, str] = {}
        for variant, file in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
            path = run_dir / file
            if not path.is_file():
                continue
            acc, conf = evaluate(path, items, grey=False)
            gacc, gconf = evaluate(path, items, grey=True)
            print(f"{name:<32} {len(items):>6} {variant:<6} {acc * 100:9.2f}% {conf:6.3f} {gacc * 100:8.2f}% {gconf:6.3f}")
            cells[variant], cells[f"{variant} grey"] = f"{acc * 100:.2f}%", f"{gacc * 100:.2f}%"
        shown = name.replace("own test split", f"{' and '.join(Path(d).name for d in manifest['data'])} test split")
        table.rows.append([shown, len(items), *(cells.get(c) for c in table.columns[2:])])
    split = manifest.get("fractions") or {}
    conditions = {
        "model": f"GoogLeNet {config['image_size']} px, {metrics['epochs_run']} epochs (best {metrics['best_epoch']}), {config.get('optimizer')}, "
                 f"learn rate {config['learn_rate']}, batch {config['batch_size']}, augment {config.get('augment', 'none')}",
        "init": metrics["init"]["description"],
        "data": f"{', '.join(Path(d).name for d in manifest['data'])}, split {'/'.join(str(round(100 * split[k])) for k in ('train', 'val', 'test') if k in split) or 'as given'} "
                f"with seed {manifest['seed']}; " + ", ".join(f"{name}: {len(items)} images" for name, items in sets.items()),
        "training": f"{metrics['wall_time_s'] / 60:.0f} min on {metrics['device']}",
    }
    return table, conditions


def train_recipe(out: Path, extra: list[str]) -> Path:
    """Runs RECIPE_STAGES in OUT/<stage>, each from the previous one's best.pt; returns the last."""
    data = ["--data", str(SHARED / "gender-faces")] if "--data" not in extra else []
    previous = None
    for name, stage_args in RECIPE_STAGES:
        run_dir = out / name
        if (run_dir / "metrics.json").is_file():
            print(f"{name}: finished before, reused ({run_dir})")
        else:
            started = time.monotonic()
            args = [a.replace("{previous}", str(previous)) for a in stage_args]
            resume = (run_dir / "config.json").is_file()
            command = ["gclf-train", "--resume", str(run_dir)] if resume else ["gclf-train", *data, "--out", str(run_dir), *args, *extra]
            subprocess.run(command, check=True)
            print(f"{name}: trained in {time.monotonic() - started:.0f} s")
        previous = run_dir
    assert previous is not None
    if not (previous / "model.int8.onnx").is_file():
        subprocess.run(["gclf-export", str(previous), "--quantize"], check=True)
    total = sum(json.loads((out / name / "metrics.json").read_text())["wall_time_s"] for name, _ in RECIPE_STAGES)
    print(f"recipe: {len(RECIPE_STAGES)} stages, training wall time {total:.0f} s in all")
    return previous


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--train", type=Path, help="train into this new run folder first (then export --quantize)")
    parser.add_argument("--recipe", type=Path, help="train the recommended recipe into OUT/<stage> (finished stages are reused), export, evaluate")
    parser.add_argument("--record", action="store_true", help=results.RECORD_HELP)
    parser.add_argument("--figure", default=None, help="the recorded figure's name [default: 'The recommended recipe' with --recipe, else 'The run NAME']")
    args, train_args = parser.parse_known_args()
    run_dir = args.run_dir
    if args.recipe:
        run_dir = train_recipe(args.recipe, train_args)
    elif args.train:
        started = time.monotonic()
        data = ["--data", str(SHARED / "gender-faces")] if "--data" not in train_args else []
        subprocess.run(["gclf-train", *data, "--out", str(args.train), *train_args], check=True)
        subprocess.run(["gclf-export", str(args.train), "--quantize"], check=True)
        print(f"trained and exported in {time.monotonic() - started:.0f} s")
        run_dir = args.train
    if run_dir is None:
        parser.error("give RUN_DIR or --train OUT")
    table, conditions = report(run_dir)
    if args.record:
        if args.recipe:
            total = sum(json.loads((args.recipe / name / "metrics.json").read_text())["wall_time_s"] for name, _ in RECIPE_STAGES)
            conditions["training"] = f"{len(RECIPE_STAGES)} stages (RECIPE_STAGES), {total / 60:.0f} min in all"
        figure = args.figure or ("The recommended recipe" if args.recipe else f"The run {run_dir.name}")
        results.record("benchmarks.accuracy", figure, topic="accuracy", table=table, conditions=conditions)


if __name__ == "__main__":
    sys.exit(main())
