"""gclf-export's job as a library function: checkpoint -> model.onnx [-> model.int8.onnx].

Every file is written to a temporary path, checked there, and only then renamed into
place: a failed export never leaves a broken model at the destination.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx

from gclf.runtime.calibration import softmax
from gclf.runtime.decode import decode_image
from gclf.runtime.errors import ExportCheckError, ImageDecodeError, QualityGateError, UsageError
from gclf.runtime.faces.crops import FaceCropper
from gclf.runtime.faces.detectors import dropped_answers
from gclf.runtime.faces.spec import FaceCropSpec
from gclf.runtime.atomic import atomic_path
from gclf.runtime.files import sha256_file
from gclf.runtime.log import Log
from gclf.runtime.metadata import ModelMetadata
from gclf.runtime.preprocess import PreprocessSpec, preprocess_batch
from gclf.export.onnx_export import (
    INPUT_NAME,
    MAX_LOGIT_DIFF,
    OPSET,
    max_logit_difference,
    read_metadata,
    set_metadata,
    to_onnx_model,
)
from gclf.export.card import describe_export, write_card
from gclf.export.confidence import ConfidenceFit, calibrate_file, held_out_figures, log_held_out
from gclf.export.quantize import CALIBRATION_SIZE, QuantizeOptions, quantize_int8, saturation_safe
from gclf.runtime.cpu_class import detect_cpu_class

PARITY_IMAGES = 32


@dataclass(frozen=True)
class RunFiles:
    checkpoint: Path
    manifest: dict | None  # the split, when the checkpoint sits in its run folder
    metrics: dict | None


@dataclass(frozen=True)
class ExportResult:
    fp32_path: Path
    max_logit_diff: float  # torch vs onnxruntime, on validation images (or random inputs)


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


def load_batch(paths: Sequence[Path], spec: PreprocessSpec, face_crop: FaceCropper | None = None) -> np.ndarray:
    """Model input for image files, each cropped to its face as the training was (`face_crop`)."""
    return preprocess_batch([load_image(p, face_crop) for p in paths], spec)


def load_image(path: Path, face_crop: FaceCropper | None = None) -> np.ndarray:
    """An image file as the training saw it: its largest face with `face_crop` (the whole
    image where the detector finds none, as gclf-train --if-no-face whole keeps it)."""
    rgb = decode_image(path)
    cropped = face_crop(rgb) if face_crop is not None else None
    return rgb if cropped is None else cropped


def run_face_cropper(ckpt: dict, log: Log) -> FaceCropper | None:
    """The detector crop a checkpoint was trained with (gclf-train --face-crop), rebuilt from
    the run's options, so the parity checks and the int8 calibration see face crops like the
    training did; None for a model trained on the photos as they were."""
    if ckpt.get("face_crop") is None:
        return None
    recorded = FaceCropSpec.from_dict(ckpt["face_crop"])
    face_model = (ckpt.get("train_config") or {}).get("face_crop", recorded.kind)
    cropper = FaceCropper.create(face_model, recorded.margin)
    if cropper.spec != recorded:
        log(f"warning: the run cropped with {recorded.describe()}; its checks and calibration now crop with {cropper.spec.describe()}")
    return cropper


def log_dropped_answers(cropper: FaceCropper | None, what: str, log: Log) -> None:
    """Says how many entries of the detector's answers were dropped as unusable while cropping
    `what` (a photo left without a usable face is used whole, as training kept it)."""
    if cropper is not None and cropper.dropped:
        log(f"{what}: {dropped_answers(cropper.dropped)} (not finite, empty, outside the photo or a bad score)")


def training_summary(ckpt: dict, metrics: dict | None) -> dict:
    summary = {
        "init": ckpt["init"]["description"],
        "epoch": ckpt.get("epoch"),
        "val_loss": ckpt.get("val_loss"),
        "val_accuracy": ckpt.get("val_accuracy"),
    }
    config = ckpt.get("train_config") or {}
    summary["input_kind"] = config.get("input_kind", "whole_image")  # followed by the live runtime
    if ckpt.get("face_crop") is not None:
        # The detector that cropped the training photos (gclf-train --face-crop): the runtime
        # crops new photos with it by default (gclf.runtime.faces.choice.resolve_face_detection).
        summary["face_crop"] = ckpt["face_crop"]
    for key in ("max_epochs", "batch_size", "learn_rate", "optimizer", "lr_schedule", "image_size", "seed"):
        if key in config:
            summary[key] = config[key]
    if metrics and metrics.get("test"):
        summary["test_accuracy"] = metrics["test"]["accuracy"]
        summary["test_images"] = metrics["test"]["n"]
    return summary


def export_fp32(run: RunFiles, dest: Path, log: Log) -> ExportResult:
    import torch  # noqa: F401  (the checkpoint helpers below need it)

    from gclf.train.checkpoint import load_gclf_checkpoint
    from gclf.train.model import model_from_checkpoint

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
        cropper = run_face_cropper(ckpt, log)
        batch, what = load_batch(paths, spec, cropper), f"{len(paths)} validation images" + (" (face crops)" if cropper else "")
    else:
        log("warning: no run manifest beside the checkpoint: checking torch vs onnxruntime on random inputs instead of real images")
        batch, what = np.random.default_rng(0).normal(size=(8, *spec.input_shape_chw)).astype(np.float32), "8 random inputs"
    with atomic_path(dest) as tmp:
        onnx.save_model(proto, str(tmp))
        diff = max_logit_difference(model, tmp, batch)
        log(f"torch vs onnxruntime: max |logit difference| {diff:.2e} on {what} (limit {MAX_LOGIT_DIFF:.0e})")
        if not diff <= MAX_LOGIT_DIFF:
            raise ExportCheckError(f"the ONNX model disagrees with PyTorch (max logit difference {diff:.2e} > {MAX_LOGIT_DIFF:.0e}); nothing was written")
        record_reference_outputs(tmp, log)
    if val:
        log_dropped_answers(cropper, "the parity images' face crops", log)
    log(f"wrote {dest} (opset {OPSET}, fp32, {dest.stat().st_size / 1e6:.1f} MB)")
    return ExportResult(dest, diff)


def model_logits(model_path: Path, files: Sequence[tuple[Path, int]], face_crop: FaceCropper | None = None) -> np.ndarray:
    """Raw logits (N, C) per file, through the runtime itself with no recorded calibration
    applied (parity checks and calibration fits compare raw outputs); each file as the
    training saw it (`face_crop`: its face crop)."""
    from gclf.runtime.classifier import Classifier

    clf = Classifier(model_path, calibrated=False)
    rows = []
    for start in range(0, len(files), 32):
        try:
            batch = load_batch([p for p, _ in files[start : start + 32]], clf.spec, face_crop)
        except ImageDecodeError as exc:
            raise ExportCheckError(f"cannot evaluate: {exc}") from None
        rows.append(clf.logits(batch).astype(np.float64))
    return np.concatenate(rows) if rows else np.zeros((0, len(clf.class_names)))


def predict_probabilities(model_path: Path, files: Sequence[tuple[Path, int]], face_crop: FaceCropper | None = None) -> np.ndarray:
    """Softmax probabilities (N, C) of `model_logits`: the raw model's, so an int8 file and
    its fp32 parent are compared like with like whatever calibration either records."""
    return softmax(model_logits(model_path, files, face_crop))


def face_cropper_for(metadata: ModelMetadata, run: RunFiles, log: Log) -> FaceCropper | None:
    """The run's face crop for a model whose metadata says it was trained on face crops."""
    if metadata.face_crop is None:
        return None
    from gclf.train.checkpoint import load_gclf_checkpoint

    return run_face_cropper(load_gclf_checkpoint(run.checkpoint), log)  # the run's detector file


def calibrate_model(
    path: Path, run: RunFiles, variant: str, log: Log, cropper: FaceCropper | None = None, *, name: str | None = None
) -> ConfidenceFit | None:
    """Fit `path`'s calibration and decision threshold on the run's validation split, with its
    own raw outputs, and record them in it (gclf.export.confidence); measure the fitted methods
    on the test split, which nothing is fitted on, for the log. `cropper`: the run's face
    crop where the caller has it (made here otherwise); `name`: the file's name once in
    place, where `path` is a temporary file."""
    name = name or path.name
    from gclf.runtime.onnx_metadata import read_metadata as read_props

    metadata = ModelMetadata.from_props(read_props(path), source=str(path))
    val = split_files(run.manifest, "val", metadata.class_names)
    if not val:
        log(f"warning: the run has no validation split: {name} records no calibration (its answers are the raw softmax)")
        return None
    own = cropper is None and metadata.face_crop is not None
    cropper = face_cropper_for(metadata, run, log) if own else cropper
    logits = model_logits(path, val, cropper)
    seed = (run.manifest or {}).get("seed")
    fit = calibrate_file(path, val, logits, variant, log, split_seed=seed, face_crops=cropper is not None, name=name)
    test = split_files(run.manifest, "test", metadata.class_names)
    if fit is not None and test:  # measured, never fitted on: does the validation fit carry over?
        fit = replace(fit, held_out=held_out_figures(fit, model_logits(path, test, cropper), np.array([y for _, y in test])))
        log_held_out(fit.held_out, len(test), variant, log)
    if own:  # a cropper passed in is the caller's to report
        log_dropped_answers(cropper, f"the {variant} calibration's face crops", log)
    return fit


# The parity gate: an int8 file is written only if it is this close to its fp32 parent.
MIN_TOP1_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.005  # 0.5 accuracy points


def measure_parity(p32: np.ndarray, p8: np.ndarray, labels: np.ndarray) -> dict:
    """int8 vs fp32 on the same images: agreement, both accuracies, top-class probability shift."""
    top32, top8 = p32.argmax(1), p8.argmax(1)
    rows = np.arange(len(labels))
    shift = np.abs(p32[rows, top32] - p8[rows, top32])  # probability of fp32's top class
    return {
        "images": int(len(labels)),
        "top1_agreement": float((top32 == top8).mean()),
        "fp32_accuracy": float((top32 == labels).mean()),
        "int8_accuracy": float((top8 == labels).mean()),
        "max_abs_top_prob_diff": float(shift.max()),
        "mean_abs_top_prob_diff": float(shift.mean()),
    }


def gate_failures(parity: dict) -> list[str]:
    """Why `parity` fails the gate (empty: it passes)."""
    problems = []
    if parity["top1_agreement"] < MIN_TOP1_AGREEMENT:
        problems.append(f"top-1 agreement {parity['top1_agreement'] * 100:.2f}% < {MIN_TOP1_AGREEMENT * 100:.0f}%")
    drop = parity["fp32_accuracy"] - parity["int8_accuracy"]
    if drop > MAX_ACCURACY_DROP + 1e-12:
        problems.append(f"accuracy drop {drop * 100:.2f} points > {MAX_ACCURACY_DROP * 100:.1f}")
    return problems


def remedies(options: QuantizeOptions) -> list[tuple[str, QuantizeOptions]]:
    """What to try, in order, until the gate passes: the request, then the usual remedies."""
    tries = [("as requested", options)]
    ends = replace(options, keep_ends_float=True)
    tries.append(("first convolution and classifier kept in float", ends))
    if not options.per_channel:
        tries.append(("per-channel weights, ends in float", replace(ends, per_channel=True)))
    if options.method != "Percentile":
        tries.append(("Percentile calibration, per-channel, ends in float", replace(ends, method="Percentile", per_channel=True)))
    return tries


@dataclass(frozen=True)
class Int8Sets:
    """The photos of an int8 export: its calibration images (the training split) and the
    split its parity with fp32 is checked on (test, else validation)."""

    metadata: ModelMetadata  # the fp32 parent's
    calibration: list[tuple[Path, int]]  # label -1: a calibration_override image
    check: list[tuple[Path, int]]
    check_name: str  # "test" or "validation"
    cropper: FaceCropper | None  # the training's face crop, None for whole-image models

    @property
    def labels(self) -> np.ndarray:
        return np.array([y for _, y in self.check])

    @property
    def per_class(self) -> dict[str, int]:
        return {c: sum(1 for _, y in self.calibration if y == i) for i, c in enumerate(self.metadata.class_names)}


@dataclass(frozen=True)
class Int8Attempt:
    """One remedy quantized into the temporary file and measured against fp32."""

    remedy: str
    options: QuantizeOptions
    quantization: dict  # its gclf.quantization record, before parity and gate are added
    parity: dict  # measure_parity's figures
    problems: tuple[str, ...]  # why it fails the gate; empty: it passes

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> dict:
        """The attempt as the record's gate lists it."""
        return {"remedy": self.remedy, **self.parity, "passed": self.passed}


@dataclass(frozen=True)
class Int8Export:
    """What `export_int8` wrote."""

    path: Path
    quantization: Mapping[str, Any]  # the gclf.quantization record written into the file
    parity: Mapping[str, Any]  # int8 vs fp32 on the check split (measure_parity's figures)
    gate_passed: bool
    forced: bool  # written by --force although it fails the gate
    remedy: str  # the remedy written (remedies()'s name)
    confidence: ConfidenceFit | None = None  # the int8 file's own calibration and decision threshold


def pick_int8_sets(fp32_path: Path, run: RunFiles, calibration_size: int, log: Log, override: Sequence[Path] | None) -> Int8Sets:
    """Choose the calibration images (a class-balanced training-split sample, or `override`)
    and the check split; refuse a split where they overlap."""
    metadata = read_metadata(onnx.load(str(fp32_path)), str(fp32_path))
    train = split_files(run.manifest, "train", metadata.class_names)
    if not train:
        raise UsageError("an int8 copy needs the run's manifest.json beside the checkpoint (calibration uses training-split images)")
    check, check_name = split_files(run.manifest, "test", metadata.class_names), "test"
    if not check:
        check, check_name = split_files(run.manifest, "val", metadata.class_names), "validation"
        log("warning: the run has no test split; int8 parity is checked on the validation split")
    calib = balanced_sample(train, calibration_size, seed=0) if override is None else [(Path(p), -1) for p in override]
    overlap = {str(p) for p, _ in calib} & {str(p) for p, _ in check}
    if overlap:
        raise ExportCheckError(f"calibration and {check_name} images overlap ({len(overlap)} files); the split is broken")
    sets = Int8Sets(metadata, calib, check, check_name, face_cropper_for(metadata, run, log))  # the parent says whether training cropped faces
    counts = ", ".join(f"{c} {n}" for c, n in sets.per_class.items())
    log(f"calibrating int8 on {len(calib)} training-split images ({counts}); disjoint from the {len(check)} {check_name} images: yes")
    if sets.cropper is not None:
        log(f"calibration and parity images are face crops, as in training: {sets.cropper.spec.describe()}")
    return sets


def quantization_base(fp32_path: Path, sets: Int8Sets) -> dict:
    """The part of the gclf.quantization record every remedy shares."""
    return {
        "format": "QDQ",
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "calibration_count": len(sets.calibration),
        "calibration_per_class": sets.per_class,
        "calibration_files_sha256": hashlib.sha256("\n".join(sorted(str(p) for p, _ in sets.calibration)).encode()).hexdigest(),
        "parent_file": fp32_path.name,
        "parent_sha256": sha256_file(fp32_path),
        "parity_split": sets.check_name,
        # int8 sums differ between CPU classes (gclf.runtime.cpu_class): the gate's verdict
        # holds where it ran, and everywhere if the file is saturation-safe.
        "parity_cpu_class": detect_cpu_class(),
    }


def quantize_remedy(fp32_path: Path, path: Path, opts: QuantizeOptions, sets: Int8Sets, base: dict) -> dict:
    """Quantize `fp32_path` into `path` with `opts`; write and return its quantization record."""
    quantize_int8(fp32_path, path, [p for p, _ in sets.calibration], sets.metadata.spec, INPUT_NAME, opts, load=lambda p: load_image(p, sets.cropper))
    quant = {
        **base, "method": opts.method, "per_channel": opts.per_channel, "reduce_range": opts.reduce_range,
        "first_conv_and_classifier_float": opts.keep_ends_float, "saturation_safe": saturation_safe(path),
        "concat_scales_shared": opts.share_concat_scales,
    }
    _write_int8_metadata(path, sets.metadata, quant)
    return quant


def measure_remedy(name: str, opts: QuantizeOptions, fp32_path: Path, tmp: Path, sets: Int8Sets, base: dict, p32: np.ndarray, log: Log) -> Int8Attempt:
    """Quantize one remedy into `tmp` and measure it against fp32's probabilities `p32`."""
    quant = quantize_remedy(fp32_path, tmp, opts, sets, base)
    parity = measure_parity(p32, predict_probabilities(tmp, sets.check, sets.cropper), sets.labels)
    problems = tuple(gate_failures(parity))
    log(
        f"int8 ({name}) vs fp32 on {len(sets.check)} {sets.check_name} images, {base['parity_cpu_class']} CPU: top-1 agreement {parity['top1_agreement'] * 100:.2f}%, "
        f"accuracy fp32 {parity['fp32_accuracy'] * 100:.2f}% / int8 {parity['int8_accuracy'] * 100:.2f}%, "
        f"top-class probability shift max {parity['max_abs_top_prob_diff']:.3f} mean {parity['mean_abs_top_prob_diff']:.4f}"
        + ("" if not problems else f"  -> fails the gate: {'; '.join(problems)}")
    )
    return Int8Attempt(name, opts, quant, parity, problems)


def choose_attempt(attempts: list[Int8Attempt], *, force: bool, dest: Path, requantize: Callable[[Int8Attempt], None], log: Log) -> Int8Attempt:
    """The attempt that passed the gate; with `force`, else, the best one (its file made again
    by `requantize` where a later attempt overwrote it); else QualityGateError."""
    passed = next((a for a in attempts if a.passed), None)
    if passed is not None:
        return passed
    if not force:
        raise QualityGateError(
            f"the int8 model is not as good as fp32 after {len(attempts)} attempt(s) "
            f"(gate: agreement >= {MIN_TOP1_AGREEMENT * 100:.0f}%, accuracy drop <= {MAX_ACCURACY_DROP * 100:.1f} points); "
            f"{dest.name} was not written. Check the calibration images"
        )
    best = max(attempts, key=lambda a: (a.parity["top1_agreement"], a.parity["int8_accuracy"]))
    if best is not attempts[-1]:
        requantize(best)
    log(f"warning: forced: writing the best attempt ({best.remedy}) although it fails the parity gate")
    return best


def final_quantization(chosen: Int8Attempt, attempts: list[Int8Attempt], check_name: str) -> dict:
    """The gclf.quantization record written: the chosen remedy's, its parity and the gate."""
    quant = {**chosen.quantization, **chosen.parity}
    quant["test_count" if check_name == "test" else "val_count"] = chosen.parity["images"]
    quant["gate"] = {
        "min_top1_agreement": MIN_TOP1_AGREEMENT,
        "max_accuracy_drop": MAX_ACCURACY_DROP,
        "passed": chosen.passed,
        "forced": not chosen.passed,
        "remedy": chosen.remedy,
        "attempts": [a.summary() for a in attempts],
    }
    return quant


def export_int8(
    fp32_path: Path,
    run: RunFiles,
    dest: Path,
    options: QuantizeOptions,
    calibration_size: int,
    log: Log,
    *,
    force: bool = False,
    calibration_override: Sequence[Path] | None = None,
    calibrate: bool = True,
) -> Int8Export:
    """Quantize, check against fp32 on the test split, and write `dest` only if it passes;
    with `calibrate`, fit and record its own calibration on the validation split.

    `calibration_override` replaces the training-split sample (tests use it to make a
    deliberately bad calibration set); users calibrate on the training split.
    """
    sets = pick_int8_sets(fp32_path, run, calibration_size, log, calibration_override)
    p32 = predict_probabilities(fp32_path, sets.check, sets.cropper)
    base = quantization_base(fp32_path, sets)
    with atomic_path(dest) as tmp:
        attempts: list[Int8Attempt] = []
        for name, opts in remedies(options):
            attempts.append(measure_remedy(name, opts, fp32_path, tmp, sets, base, p32, log))
            if attempts[-1].passed:
                break
        chosen = choose_attempt(attempts, force=force, dest=dest, requantize=lambda a: quantize_remedy(fp32_path, tmp, a.options, sets, base), log=log)
        quant = final_quantization(chosen, attempts, sets.check_name)
        _write_int8_metadata(tmp, sets.metadata, quant)
        record_reference_outputs(tmp, log)
        confidence = calibrate_model(tmp, run, "int8", log, sets.cropper, name=dest.name) if calibrate else None
    log_dropped_answers(sets.cropper, "the calibration, parity" + (" and validation" if calibrate else "") + " face crops", log)  # one cropper for all
    safety = "saturation-safe: the same answers on every CPU class" if quant["saturation_safe"] else f"8-bit weights: parity holds on {quant['parity_cpu_class']} CPUs"
    log(f"wrote {dest} (int8 QDQ, {chosen.remedy}, {safety}, {dest.stat().st_size / 1e6:.1f} MB)")
    return Int8Export(dest, quant, chosen.parity, chosen.passed, not chosen.passed, chosen.remedy, confidence)


def record_reference_outputs(path: Path, log: Log) -> None:
    """Record in the model file the logits onnxruntime gives here for a few generated inputs
    (gclf.runtime.parity): what every engine is checked against on the machines that run it.
    Generated patterns, never photos: a model carries no training image."""
    from gclf.runtime.parity import record_references

    refs = record_references(path)
    log(f"recorded reference outputs for {len(refs['indices'])} generated inputs ({refs['engine']}, {refs['cpu_class']} CPU)")


def _write_int8_metadata(path: Path, parent: ModelMetadata, quant: dict) -> None:
    model = onnx.load(str(path))
    set_metadata(model, ModelMetadata(spec=parent.spec, class_names=parent.class_names, variant="int8", training=parent.training, quantization=quant))
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path))


FP32_NAME, INT8_NAME = "model.onnx", "model.int8.onnx"


@dataclass(frozen=True)
class RunExport:
    """What `export_run` wrote: the fp32 model, and the int8 copy when asked for."""

    run: RunFiles
    fp32: ExportResult
    fp32_s: float  # seconds the fp32 export and its checks took
    int8_path: Path | None = None
    int8: Int8Export | None = None  # the int8 copy (export_int8's), None without quantize
    int8_s: float = 0.0
    fp32_confidence: ConfidenceFit | None = None  # the fp32 file's calibration and decision threshold, None with calibrate=False


def export_run(
    source: Path,
    *,
    quantize: bool,
    out: Path | None = None,
    calibration_size: int = CALIBRATION_SIZE,
    options: QuantizeOptions = QuantizeOptions(),
    force: bool = False,
    calibrate: bool = True,
    log: Log = print,
) -> RunExport:
    """gclf-export's job: SOURCE (a run folder or checkpoint) -> OUT/model.onnx, and with
    `quantize` OUT/model.int8.onnx calibrated on `calibration_size` training images.

    With `calibrate` (the default) each file records a temperature and a default decision
    threshold fitted on the run's validation split with its own outputs (gclf.export.confidence);
    without it, the runtime answers with their raw softmax.

    OUT defaults to the checkpoint's folder. The one place that runs "fp32, then int8", for
    gclf-export, the quick start and the studies alike; a failed int8 parity gate raises
    `QualityGateError` unless `force`.
    """
    run = locate_run(source)
    out = out or run.checkpoint.parent
    started = time.monotonic()
    fp32 = export_fp32(run, out / FP32_NAME, log)
    bundled = describe_export(fp32.fp32_path, run.checkpoint.parent, run.manifest, run.metrics, log)  # before the int8 copy: it inherits gclf.card
    fp32_confidence = calibrate_model(fp32.fp32_path, run, "fp32", log) if calibrate else None
    if not calibrate:
        log("no calibration (--no-calibrate): the runtime answers with the raw softmax and no default decision threshold")
    fp32_s = time.monotonic() - started
    if not quantize:
        write_card(fp32.fp32_path, None, log, bundled_detector=bundled)
        return RunExport(run, fp32, fp32_s, fp32_confidence=fp32_confidence)
    started = time.monotonic()
    int8 = export_int8(fp32.fp32_path, run, out / INT8_NAME, options, calibration_size, log, force=force, calibrate=calibrate)
    write_card(fp32.fp32_path, out / INT8_NAME, log, bundled_detector=bundled)
    return RunExport(run, fp32, fp32_s, out / INT8_NAME, int8, time.monotonic() - started, fp32_confidence)
