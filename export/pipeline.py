"""gclf-export's job as a library function: checkpoint -> model.onnx [-> model.int8.onnx].

Every file is written to a temporary path, checked there, and only then renamed into
place: a failed export never leaves a broken model at the destination.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from gclf.runtime.errors import ExportCheckError, UsageError
from gclf.runtime.files import atomic_path, sha256_file
from gclf.runtime.metadata import ModelMetadata
from gclf.runtime.preprocess import PreprocessSpec, decode_image, preprocess_batch
from gclf.export.onnx_export import (
    INPUT_NAME,
    MAX_LOGIT_DIFF,
    OPSET,
    max_logit_difference,
    read_metadata,
    set_metadata,
    to_onnx_model,
)
from gclf.export.quantize import QuantizeOptions, quantize_int8

Log = Callable[[str], None]
PARITY_IMAGES = 32


@dataclass(frozen=True)
class RunFiles:
    checkpoint: Path
    manifest: dict | None  # the split, when the checkpoint sits in its run folder
    metrics: dict | None


@dataclass
class ExportResult:
    fp32_path: Path
    max_logit_diff: float
    parity_images: int
    int8_path: Path | None = None
    quantization: dict | None = None


def locate_run(source: Path) -> RunFiles:
    """RUN_DIR (uses RUN_DIR/best.pt) or a checkpoint file, with its run folder's manifest."""
    checkpoint = source / "best.pt" if source.is_dir() else source
    if not checkpoint.is_file():
        raise UsageError(f"{source}: no checkpoint found (expected a gclf run folder with best.pt, or a .pt file)")
    run_dir = checkpoint.parent

    def load(name: str) -> dict | None:
        path = run_dir / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: unreadable ({exc})") from None

    return RunFiles(checkpoint, load("manifest.json"), load("metrics.json"))


def split_files(manifest: dict | None, name: str, class_names: Sequence[str]) -> list[tuple[Path, int]]:
    if manifest is None:
        return []
    index = {c: i for i, c in enumerate(class_names)}
    return [(Path(p), index[label]) for p, label in manifest["splits"].get(name, [])]


def balanced_sample(files: Sequence[tuple[Path, int]], count: int, seed: int) -> list[tuple[Path, int]]:
    """Up to `count` files with classes as equal as the data allows, chosen with `seed`."""
    by_class: dict[int, list[tuple[Path, int]]] = {}
    for item in files:
        by_class.setdefault(item[1], []).append(item)
    rng = random.Random(seed)
    for items in by_class.values():
        rng.shuffle(items)
    chosen: list[tuple[Path, int]] = []
    while len(chosen) < count and any(by_class.values()):
        for items in by_class.values():
            if items and len(chosen) < count:
                chosen.append(items.pop())
    return sorted(chosen, key=lambda t: str(t[0]))


def load_batch(paths: Sequence[Path], spec: PreprocessSpec) -> np.ndarray:
    return preprocess_batch([decode_image(p) for p in paths], spec)


def training_summary(ckpt: dict, metrics: dict | None) -> dict:
    summary = {
        "init": ckpt["init"]["description"],
        "epoch": ckpt.get("epoch"),
        "val_loss": ckpt.get("val_loss"),
        "val_accuracy": ckpt.get("val_accuracy"),
    }
    config = ckpt.get("train_config") or {}
    summary["input_kind"] = config.get("input_kind", "whole_image")  # followed by the live runtime
    for key in ("max_epochs", "batch_size", "learn_rate", "optimizer", "lr_schedule", "image_size", "seed"):
        if key in config:
            summary[key] = config[key]
    if metrics and metrics.get("test"):
        summary["test_accuracy"] = metrics["test"]["accuracy"]
        summary["test_images"] = metrics["test"]["n"]
    return summary


def export_fp32(run: RunFiles, dest: Path, log: Log) -> ExportResult:
    import torch  # noqa: F401  (the checkpoint helpers below need it)

    from gclf.train.checkpoint import load_gclf_checkpoint, model_from_checkpoint

    ckpt = load_gclf_checkpoint(run.checkpoint)
    spec = PreprocessSpec.from_dict(ckpt["spec"])
    model = model_from_checkpoint(ckpt)
    metadata = ModelMetadata(spec=spec, class_names=tuple(ckpt["class_names"]), variant="fp32", training=training_summary(ckpt, run.metrics))
    proto = to_onnx_model(model, (spec.input_height, spec.input_width))
    set_metadata(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)

    val = split_files(run.manifest, "val", metadata.class_names)
    if val:
        paths = [p for p, _ in balanced_sample(val, PARITY_IMAGES, seed=0)]
        batch, what = load_batch(paths, spec), f"{len(paths)} validation images"
    else:
        log("warning: no run manifest beside the checkpoint: checking torch vs onnxruntime on random inputs instead of real images")
        batch, what = np.random.default_rng(0).normal(size=(8, *spec.input_shape_chw)).astype(np.float32), "8 random inputs"
    with atomic_path(dest) as tmp:
        onnx.save_model(proto, str(tmp))
        diff = max_logit_difference(model, tmp, batch)
        log(f"torch vs onnxruntime: max |logit difference| {diff:.2e} on {what} (limit {MAX_LOGIT_DIFF:.0e})")
        if not diff <= MAX_LOGIT_DIFF:
            raise ExportCheckError(f"the ONNX model disagrees with PyTorch (max logit difference {diff:.2e} > {MAX_LOGIT_DIFF:.0e}); nothing was written")
    log(f"wrote {dest} (opset {OPSET}, fp32, {dest.stat().st_size / 1e6:.1f} MB)")
    return ExportResult(dest, diff, len(batch))


def evaluate_files(model_path: Path, files: Sequence[tuple[Path, int]]) -> np.ndarray:
    """Predicted class index per file, through the runtime itself."""
    from gclf.runtime.classifier import Classifier

    clf = Classifier(model_path)
    preds = []
    for result in clf.classify_files([p for p, _ in files], batch_size=32):
        if result.prediction is None:
            raise ExportCheckError(f"cannot evaluate: {result.error}")
        preds.append(int(np.argmax(result.prediction.probabilities)))
    return np.asarray(preds, dtype=np.int64)


def export_int8(fp32_path: Path, run: RunFiles, dest: Path, options: QuantizeOptions, calibration_size: int, log: Log) -> dict:
    fp32 = onnx.load(str(fp32_path))
    metadata = read_metadata(fp32, str(fp32_path))
    train = split_files(run.manifest, "train", metadata.class_names)
    if not train:
        raise UsageError("--quantize needs the run's manifest.json beside the checkpoint (calibration uses training-split images)")
    test = split_files(run.manifest, "test", metadata.class_names)
    calib = balanced_sample(train, calibration_size, seed=0)
    calib_names = sorted(str(p) for p, _ in calib)
    overlap = {str(p) for p, _ in calib} & {str(p) for p, _ in test}
    if overlap:
        raise ExportCheckError(f"calibration and test images overlap ({len(overlap)} files); the split is broken")
    per_class = {c: sum(1 for _, y in calib if y == i) for i, c in enumerate(metadata.class_names)}
    log(f"calibrating int8 on {len(calib)} training-split images ({', '.join(f'{c} {n}' for c, n in per_class.items())}); disjoint from the {len(test)} test images")
    quant = {
        "format": "QDQ",
        "method": options.method,
        "per_channel": options.per_channel,
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "calibration_count": len(calib),
        "calibration_per_class": per_class,
        "calibration_files_sha256": hashlib.sha256("\n".join(calib_names).encode()).hexdigest(),
        "parent_file": fp32_path.name,
        "parent_sha256": sha256_file(fp32_path),
    }
    with atomic_path(dest) as tmp:
        quantize_int8(fp32_path, tmp, [p for p, _ in calib], metadata.spec, INPUT_NAME, options)
        int8 = onnx.load(str(tmp))
        int8_meta = ModelMetadata(spec=metadata.spec, class_names=metadata.class_names, variant="int8", training=metadata.training, quantization=quant)
        set_metadata(int8, int8_meta)
        onnx.save_model(int8, str(tmp))
        if test:
            labels = np.array([y for _, y in test])
            p32, p8 = evaluate_files(fp32_path, test), evaluate_files(tmp, test)
            quant.update(
                test_count=len(test),
                top1_agreement=float((p32 == p8).mean()),
                fp32_test_accuracy=float((p32 == labels).mean()),
                int8_test_accuracy=float((p8 == labels).mean()),
            )
            set_metadata(int8, ModelMetadata(spec=metadata.spec, class_names=metadata.class_names, variant="int8", training=metadata.training, quantization=quant))
            onnx.checker.check_model(int8, full_check=True)
            onnx.save_model(int8, str(tmp))
            log(
                f"int8 vs fp32 on {len(test)} test images: top-1 agreement {quant['top1_agreement'] * 100:.2f}%, "
                f"accuracy fp32 {quant['fp32_test_accuracy'] * 100:.2f}% / int8 {quant['int8_test_accuracy'] * 100:.2f}%"
            )
        else:
            log("warning: the run has no test split, so int8 accuracy was not measured")
    log(f"wrote {dest} (int8 QDQ, {dest.stat().st_size / 1e6:.1f} MB)")
    return quant
