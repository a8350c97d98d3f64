"""The model card of an export: `gclf.card` in the fp32 model's metadata, and MODEL_CARD.md.

`record_card` writes what the run folder knows (manifest.json, metrics.json, config.json and
the model's own `gclf.training`) into the fp32 file as `gclf.card` (the format is
gclf.runtime.evaluation.model_card's), before the int8 copy is made: the copy inherits it (set_metadata
keeps every key it does not own) and its `parent_sha256` is that of the file with the card.
`write_card` renders MODEL_CARD.md from the files as written, never from objects in memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gclf.runtime.atomic import write_text_atomic
from gclf.runtime.log import Log
from gclf.runtime.evaluation.model_card import CARD_FORMAT, CARD_NAME, KEY_CARD, read_model_facts, render_card
from gclf.runtime.onnx_metadata import read_metadata, update_metadata

# gclf-train options worth a reader's eye; paths (--data, --out, a --weights file) are left
# out: the record travels with the model, and the folder names are under "data".
CARD_OPTIONS = (
    "max_epochs", "batch_size", "learn_rate", "optimizer", "lr_schedule", "l2", "augment", "image_size",
    "input_kind", "face_margin", "if_no_face", "freeze", "keep", "precision", "seed",
)
FACE_OPTIONS = ("face_margin", "if_no_face")  # said only of a faces model
# ModelInit.kind -> the card's word for it.
INIT_KINDS = {"imagenet": "imagenet", "random": "random", "gclf-checkpoint": "checkpoint", "torchvision-state-dict": "checkpoint"}


def card_record(run_dir: Path, manifest: dict | None, metrics: dict | None, training: dict) -> dict[str, Any]:
    """The `gclf.card` record of a run (format: gclf.runtime.evaluation.model_card)."""
    config = _read_json(run_dir / "config.json") or {}
    return {
        "format": CARD_FORMAT,
        **_data_record(manifest),
        "init": _init_record((metrics or {}).get("init"), training),
        "options": {k: config[k] for k in CARD_OPTIONS if k in config and (k not in FACE_OPTIONS or training.get("input_kind") == "faces")},
        "input_kind": training.get("input_kind"),
        "face_detector": _detector_record(training.get("face_crop")),
        "test": {"accuracy": training["test_accuracy"], "images": training.get("test_images")} if "test_accuracy" in training else None,
        "trained_utc": (metrics or {}).get("finished_utc"),
    }


def _data_record(manifest: dict | None) -> dict[str, Any]:
    if manifest is None:
        return {"data": None, "duplicates": None, "split": None}
    counts = manifest.get("counts") or {}
    classes = manifest.get("class_names") or []
    return {
        "data": {
            "folders": [Path(p).name for p in manifest.get("data", [])],
            "per_class": {c: sum(split.get(c, 0) for split in counts.values()) for c in classes},
        },
        "duplicates": {
            "groups": len(manifest.get("duplicate_groups", [])),
            "files": sum(len(g) for g in manifest.get("duplicate_groups", [])),
            "label_conflicts_excluded": sum(len(g) for g in manifest.get("label_conflicts_excluded", [])),
            "skipped": len(manifest.get("skipped", [])),
        },
        "split": {
            "seed": manifest.get("seed"),
            "fractions": manifest.get("fractions"),
            "sizes": {name: sum(c.values()) for name, c in counts.items()},
            "per_class": counts,
        },
    }


def _init_record(init: dict | None, training: dict) -> dict[str, str]:
    if not init:
        return {"kind": "not recorded", "description": training.get("init", "")}
    kind = INIT_KINDS.get(init.get("kind", ""), init.get("kind", ""))
    source = Path(init.get("source") or "")
    # A checkpoint's path names a machine: keep only its run folder and file name.
    description = f"{init['kind']} {source.parent.name}/{source.name}" if kind == "checkpoint" else init.get("description", kind)
    return {"kind": kind, "description": description}


def _detector_record(face_crop: dict | None) -> dict | None:
    if not face_crop:
        return None
    return {k: face_crop.get(k) for k in ("kind", "model_file", "model_sha256", "margin")}


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def record_card(fp32_path: Path, run_dir: Path, manifest: dict | None, metrics: dict | None) -> dict[str, Any]:
    """Write the run's `gclf.card` into the fp32 model file (every other byte kept)."""
    training = json.loads(read_metadata(fp32_path).get("gclf.training", "{}"))
    record = card_record(run_dir, manifest, metrics, training)
    update_metadata(fp32_path, {KEY_CARD: json.dumps(record, sort_keys=True)})
    return record


def write_card(fp32_path: Path, int8_path: Path | None, log: Log, *, bundled_detector: bool | None = None) -> Path:
    """MODEL_CARD.md beside `fp32_path`, from the written files' metadata."""
    int8 = read_model_facts(int8_path) if int8_path is not None and int8_path.is_file() else None
    dest = fp32_path.parent / CARD_NAME
    write_text_atomic(dest, render_card(read_model_facts(fp32_path), int8, bundled_detector=bundled_detector))
    log(f"wrote {dest}")
    return dest


def describe_export(fp32_path: Path, run_dir: Path, manifest: dict | None, metrics: dict | None, log: Log) -> bool | None:
    """What an fp32 export carries beyond the network: its recorded detector's file copied
    beside it (export.detector_bundle; the result is bundle_detector's) and `gclf.card`."""
    from gclf.export.detector_bundle import bundle_detector

    bundled = bundle_detector(fp32_path, (_read_json(run_dir / "config.json") or {}).get("face_crop"), log)
    record_card(fp32_path, run_dir, manifest, metrics)
    return bundled
