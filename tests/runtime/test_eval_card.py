"""`gclf-eval MODEL DATA --card`: the outside set's results as a section of the MODEL_CARD.md
beside the model, one per data folder and model, replaced on a rerun; a card is made from the
model's metadata where there is none; the model file is never rewritten; no torch needed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from gclf.runtime.cli.evaluate import main
from gclf.runtime.errors import EXIT_OK, EXIT_USAGE
from gclf.runtime.files import sha256_file
from gclf.runtime.evaluation.model_card import CARD_NAME, NONE_YET, OTHER_DATA_HEADING, read_model_facts, render_card, section_marker
from gclf_testutil import BLOCK, HEAVY, write_image_file

RED, BLUE = (40, 40, 220), (220, 40, 40)  # BGR


def _eval(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _labelled_set(root: Path, per_class: int, seed: int) -> Path:
    """red/ and blue/ with UTKFace-style names; one photo in eight leans to the other class."""
    rng = np.random.default_rng(seed)
    for cls, colour, other in (("red", RED, BLUE), ("blue", BLUE, RED)):
        for i in range(per_class):
            lean = other if i % 8 == 0 else colour
            noise = rng.integers(0, 256, size=(16, 16, 3)).astype(float)
            strength = rng.uniform(0.3, 0.9)
            image = np.clip((1 - strength) * noise + strength * np.array(lean), 0, 255).astype(np.uint8)
            write_image_file(root / cls / f"{20 + i}_{i % 2}_{i % 5}_2017{i:04d}.png", image)
    return root


@pytest.fixture
def model(tiny_onnx) -> Path:
    return tiny_onnx("tiny.onnx", props_update={"gclf.training": json.dumps({"input_kind": "whole_image"})})


def test_a_card_is_made_from_the_metadata_and_holds_the_outside_results(model: Path, tmp_path: Path) -> None:
    data = _labelled_set(tmp_path / "outside", 24, seed=0)
    before = model.read_bytes()

    result = _eval(model, data, "--card", "--groups", "utkface", "--min-group-size", "5")
    figures = json.loads(_eval(model, data, "--json").stdout)["evaluations"][0]

    assert result.exit_code == EXIT_OK, result.output
    assert model.read_bytes() == before  # never a model file
    text = (model.parent / CARD_NAME).read_text()
    assert text.startswith("---\nlibrary_name: onnx") and "\n# Model card: tiny.onnx\n" in text and "## Out-of-scope uses" in text and NONE_YET not in text
    section = text[text.index(OTHER_DATA_HEADING):]
    assert re.search(r"- Date: \d{4}-\d\d-\d\d\n", section)
    assert "folder `outside`, 48 photos (blue 24, red 24)" in section
    assert f"`tiny.onnx`, sha256 `{sha256_file(model)}`" in section
    acc = figures["accuracy"]
    assert f"| accuracy | {100 * acc['value']:.1f}% ({acc['k']}/{acc['n']}, {100 * acc['low']:.1f}-{100 * acc['high']:.1f}%) |" in section
    red = figures["per_class"]["red"]["recall"]
    assert f"| red: recall | {100 * red['value']:.1f}% ({red['k']}/{red['n']}" in section
    assert "| ECE (" in section and f"{figures['calibration_error']['ece']:.4f}" in section
    assert "| most confident 50% |" in section
    assert "#### Accuracy by" in section and "| group | n |" in section
    assert f"card: {model.parent / CARD_NAME}" in result.stderr


def test_a_rerun_replaces_its_section_and_another_folder_adds_one(model: Path, tmp_path: Path) -> None:
    card = model.parent / CARD_NAME
    card.write_text(render_card(read_model_facts(model)).replace("## Intended use", "A line the owner wrote.\n\n## Intended use"))
    first = _labelled_set(tmp_path / "a" / "outside", 16, seed=1)
    other = _labelled_set(tmp_path / "b" / "holdout", 8, seed=2)

    assert _eval(model, first, "--card").exit_code == EXIT_OK
    assert _eval(model, other, "--card").exit_code == EXIT_OK
    again = _labelled_set(tmp_path / "c" / "outside", 8, seed=3)  # the same folder name, new photos
    assert _eval(model, again, "--card").exit_code == EXIT_OK

    text = card.read_text()
    assert "A line the owner wrote." in text
    assert text.count(section_marker("outside", "tiny.onnx")) == 1 and text.count(section_marker("holdout", "tiny.onnx")) == 1
    assert "folder `outside`, 16 photos" in text and "folder `outside`, 32 photos" not in text
    assert text.index(section_marker("outside", "tiny.onnx")) < text.index(section_marker("holdout", "tiny.onnx"))  # replaced in place
    assert text.count(OTHER_DATA_HEADING) == 1


def test_card_and_calibrate_do_not_go_together(model: Path, tmp_path: Path) -> None:
    data = _labelled_set(tmp_path / "outside", 4, seed=0)
    result = _eval(model, data, "--card", "--calibrate", "--out", tmp_path / "c.onnx")
    assert result.exit_code == EXIT_USAGE and "without --calibrate" in result.stderr
    assert not (model.parent / CARD_NAME).exists()


SCRIPT = r"""
import json, sys
{block}
from click.testing import CliRunner
import gclf.runtime.cli.evaluate
result = CliRunner().invoke(gclf.runtime.cli.evaluate.main, sys.argv[1:])
print(json.dumps({{"code": result.exit_code, "stderr": result.stderr, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})}}))
"""


def test_gclf_eval_card_needs_neither_torch_nor_onnx(model: Path, tmp_path: Path) -> None:
    data = _labelled_set(tmp_path / "outside", 8, seed=0)
    code = SCRIPT.format(block=BLOCK.format(heavy=HEAVY), heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", "import sys\n" + code, str(model), str(data), "--card"], capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == EXIT_OK, report["stderr"]
    assert report["loaded"] == []
    assert (model.parent / CARD_NAME).is_file()
