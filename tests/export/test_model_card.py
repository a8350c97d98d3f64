"""gclf-export's model card: `gclf.card` in the fp32 file (inherited by the int8 copy, whose
record of its parent's sha256 stays right) and MODEL_CARD.md, written from the files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gclf.runtime.files import sha256_file
from gclf.runtime.evaluation.model_card import CARD_NAME, KEY_CARD, NONE_YET, OTHER_DATA_HEADING, read_model_facts, render_card
from gclf.runtime.onnx_metadata import read_metadata, update_metadata


def _card(path: Path) -> dict:
    return json.loads(read_metadata(path)[KEY_CARD])


def test_the_fp32_file_records_what_the_run_folder_knows(tiny_run) -> None:
    card = _card(tiny_run.fp32)
    manifest = json.loads((tiny_run.run_dir / "manifest.json").read_text())
    metrics = json.loads((tiny_run.run_dir / "metrics.json").read_text())

    assert card["data"]["folders"] == [tiny_run.data.name]
    assert card["data"]["per_class"] == {c: tiny_run.per_class for c in manifest["class_names"]}
    assert card["split"]["sizes"] == {k: len(v) for k, v in manifest["splits"].items()}
    assert card["split"]["seed"] == manifest["seed"] and card["split"]["fractions"] == manifest["fractions"]
    assert card["duplicates"] == {"groups": len(manifest["duplicate_groups"]), "files": sum(map(len, manifest["duplicate_groups"])),
                                  "label_conflicts_excluded": 0, "skipped": len(manifest["skipped"])}
    assert card["init"]["kind"] == "random"
    assert card["options"]["image_size"] == tiny_run.image_size and card["options"]["max_epochs"] == 1
    assert card["input_kind"] == "whole_image" and card["face_detector"] is None
    assert card["test"] == {"accuracy": metrics["test"]["accuracy"], "images": metrics["test"]["n"]}
    # The record travels with the model to devices: folder names, never this machine's paths.
    assert str(tiny_run.data.parent) not in json.dumps(card)


def test_the_int8_copy_inherits_the_card_and_its_parent_sha256_is_the_written_fp32s(tiny_run) -> None:
    int8 = read_metadata(tiny_run.int8)

    assert json.loads(int8[KEY_CARD]) == _card(tiny_run.fp32)
    assert json.loads(int8["gclf.quantization"])["parent_sha256"] == sha256_file(tiny_run.fp32)


def test_model_card_md_is_written_beside_the_model_from_its_files(tiny_run) -> None:
    text = (tiny_run.run_dir / CARD_NAME).read_text()
    metrics = json.loads((tiny_run.run_dir / "metrics.json").read_text())
    quant = json.loads(read_metadata(tiny_run.int8)["gclf.quantization"])

    for heading in ("## Model details", "## Intended use", "## Out-of-scope uses", "## Training data", "## Evaluation", OTHER_DATA_HEADING):
        assert heading in text
    assert text.index(OTHER_DATA_HEADING) > text.index("## Evaluation\n")
    assert text.rstrip().endswith(NONE_YET)
    assert f"{100 * metrics['test']['accuracy']:.1f}% ({round(metrics['test']['accuracy'] * metrics['test']['n'])}/{metrics['test']['n']} photos" in text
    assert f"top-1 agreement {100 * quant['top1_agreement']:.2f}%" in text and sha256_file(tiny_run.int8) in text
    assert "perceived presentation" in text and "not anyone's gender identity" in text
    assert "Not for children" in text and "docs/responsible-use.md" in text
    assert "wrote " + str(tiny_run.run_dir / CARD_NAME) in tiny_run.export_output


def test_the_card_reports_a_calibration_the_file_records(tiny_run, tmp_path: Path) -> None:
    model = shutil.copy(tiny_run.fp32, tmp_path / "model.onnx")
    calibration = {"method": "temperature", "parameters": {"temperature": 1.5}, "fitted_on": {"description": "50% of holdout (40 photos)"},
                   "fit_figures": {"ece_before": 0.12, "ece_after": 0.03}}
    update_metadata(model, {"gclf.calibration": json.dumps(calibration)})

    text = render_card(read_model_facts(model))

    assert "Calibration recorded in `model.onnx`: temperature (temperature 1.5), fitted on 50% of holdout (40 photos); ECE on the fit part 0.1200 -> 0.0300" in text
    plain = shutil.copy(tiny_run.fp32, tmp_path / "plain.onnx")
    update_metadata(plain, {"gclf.calibration": None})
    assert "Calibration" not in render_card(read_model_facts(plain))


def test_the_card_reports_the_decision_threshold_the_file_records(tiny_run, tmp_path: Path) -> None:
    model = shutil.copy(tiny_run.fp32, tmp_path / "model.onnx")
    decision = {"min_confidence": 0.72, "chosen_on": "the run's validation split", "target_accuracy": 0.95, "coverage": 0.88, "accuracy": 0.951, "photos": 230}
    update_metadata(model, {"gclf.decision": json.dumps(decision)})

    text = render_card(read_model_facts(model))

    assert "answers below confidence 0.720 are `unsure`; on the run's validation split (230 photos) it answered 88.0% of them, right 95.1% of the time" in text
    update_metadata(model, {"gclf.decision": json.dumps({**decision, "min_confidence": 0.0, "coverage": 1.0})})
    assert "none needed on the run's validation split" in render_card(read_model_facts(model))


def test_a_model_without_a_card_record_still_gets_a_card(tiny_onnx) -> None:
    text = render_card(read_model_facts(tiny_onnx("old.onnx")))

    assert "# Model card: old.onnx" in text and "## Out-of-scope uses" in text
    assert "Not recorded in the model file" in text and "Test split: not recorded" in text
