"""`gclf-train --recipe`: the recommended recipe in one command, its stages chained, the
options given on the command line winning, and the same command going on where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gclf.runtime.errors import EXIT_USAGE
from gclf.train.cli import main
from gclf.train.recipes import RECIPES
from gclf.train.synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("recipe") / "data", per_class=6, min_side=32, max_side=64)


def _train(*args: str):
    # Small and short for a test: these options win over the recipe's in every stage.
    return CliRunner().invoke(main, ["--device", "cpu", "--image-size", "32", "--max-epochs", "1", "--batch-size", "4", "--quiet", *args])


def test_the_whole_recipe_trains_its_stages_in_a_row_and_goes_on_where_it_stopped(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "final"

    first = _train("--data", str(data), "--out", str(out), "--recipe", "whole")

    assert first.exit_code == 0, first.output
    stage1, final = tmp_path / "final-112px", out
    c1 = json.loads((stage1 / "config.json").read_text())
    c2 = json.loads((final / "config.json").read_text())
    # The recipe's own options where none were given...
    assert (c1["weights"], c1["optimizer"], c1["lr_schedule"], c1["learn_rate"]) == ("none", "adamw", "onecycle", 0.003)
    assert (c2["optimizer"], c2["learn_rate"], c2["input_kind"]) == ("adamw", 0.0005, "whole_image")
    # ...the command line's where they were, and stage 2 starts from stage 1's kept network.
    assert c1["image_size"] == c2["image_size"] == 32 and c1["max_epochs"] == c2["max_epochs"] == 1
    assert Path(c2["weights"]) == stage1 / "best.pt"
    assert (final / "metrics.json").is_file() and "stage 2 of 2" in first.output

    again = _train("--data", str(data), "--out", str(out), "--recipe", "whole")

    assert again.exit_code == 0, again.output
    assert again.output.count("finished before, kept") == 2


def test_the_faces_recipe_records_faces_and_takes_the_detector_given(data: Path, tmp_path: Path) -> None:
    result = _train("--data", str(data), "--out", str(tmp_path / "faces"), "--recipe", "faces", "--face-crop", "none")

    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "faces" / "config.json").read_text())
    assert config["input_kind"] == "faces" and config["face_crop"] == "none"
    assert RECIPES["faces"].common["face_crop"] == "yunet"  # what it uses when nothing else is named


def test_a_recipe_needs_an_out_folder_and_does_not_take_resume(data: Path, tmp_path: Path) -> None:
    no_out = _train("--data", str(data), "--recipe", "whole")
    with_resume = _train("--resume", str(data), "--recipe", "whole")

    assert no_out.exit_code == EXIT_USAGE and "--recipe needs --out" in no_out.output
    assert with_resume.exit_code == EXIT_USAGE and "give the same --recipe command again" in with_resume.output
