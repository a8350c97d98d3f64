"""gclf-infer: results for the readable images, unreadable ones named, exit codes, --json.

Uses the tiny hand-built model (class "red" scores the red channel, "blue" the blue one),
so expected labels are known and the tests run in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gclf.runtime.cli.infer import main
from gclf.runtime.errors import EXIT_BAD_DATA, EXIT_BAD_MODEL, EXIT_PARTIAL, EXIT_USAGE
from gclf_testutil import PURPLE_RGB, decision_record, solid_bgr, write_image_file


def _infer(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_image_file(folder / "red.png", solid_bgr((250, 10, 10)))
    write_image_file(folder / "nested" / "blue.jpg", solid_bgr((5, 20, 240), height=30, width=20))
    (folder / "notes.txt").write_text("not an image extension: not even tried")
    return folder


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return path


def test_all_readable_images_are_classified(tiny_onnx, photos: Path) -> None:
    result = _infer(tiny_onnx(), photos)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["image", "label", "confidence"]
    rows = {Path(line.split()[0]).name: line.split()[1] for line in lines[1:]}
    assert rows == {"red.png": "red", "blue.jpg": "blue"}
    assert "2 classified, 0 skipped" in result.stderr


def test_one_corrupt_file_is_named_and_the_rest_classified_exit_5(tiny_onnx, photos: Path) -> None:
    broken = _corrupt(photos / "broken.jpg")

    result = _infer(tiny_onnx(), photos)

    assert result.exit_code == EXIT_PARTIAL
    assert str(broken) in result.stderr
    assert str(broken) not in result.stdout
    assert str(photos / "red.png") in result.stdout and str(photos / "nested" / "blue.jpg") in result.stdout
    assert "2 classified, 1 skipped" in result.stderr


def test_only_corrupt_files_exit_3(tiny_onnx, tmp_path: Path) -> None:
    files = [_corrupt(tmp_path / "a.jpg"), tmp_path / "b.png"]
    files[1].write_bytes(b"")

    result = _infer(tiny_onnx(), *files)

    assert result.exit_code == EXIT_BAD_DATA
    for f in files:
        assert str(f) in result.stderr
    assert "0 classified, 2 skipped" in result.stderr


def test_json_prints_one_object_per_image(tiny_onnx, photos: Path) -> None:
    result = _infer(tiny_onnx(), "--json", photos)

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(Path(r["path"]).name for r in records) == ["blue.jpg", "red.png"]
    for record in records:
        assert set(record) == {"path", "label", "confidence", "probabilities"}
        probs = record["probabilities"]
        assert list(probs) == ["red", "blue"]  # the model's class order
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert record["label"] == max(probs, key=probs.get)
        assert record["confidence"] == probs[record["label"]]
        assert record["label"] == Path(record["path"]).stem


def test_a_model_file_that_is_not_onnx_exits_6(tmp_path: Path, photos: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_text("not a model")

    result = _infer(model, photos)

    assert result.exit_code == EXIT_BAD_MODEL
    assert result.stderr.startswith(f"error: {model}: not a loadable ONNX model")
    assert "Traceback" not in result.output


def test_an_onnx_file_without_gclf_metadata_exits_6(tiny_onnx, photos: Path) -> None:
    result = _infer(tiny_onnx(with_metadata=False), photos)

    assert result.exit_code == EXIT_BAD_MODEL
    assert "no gclf metadata" in result.stderr


def test_a_missing_input_path_exits_2(tiny_onnx, tmp_path: Path) -> None:
    result = _infer(tiny_onnx(), tmp_path / "absent.jpg")

    assert result.exit_code == EXIT_USAGE
    assert "absent.jpg: no such file or folder" in result.stderr


def test_a_folder_without_images_exits_3(tiny_onnx, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    result = _infer(tiny_onnx(), tmp_path / "empty")

    assert result.exit_code == EXIT_BAD_DATA
    assert "no image files found" in result.stderr


@pytest.mark.parametrize("batch_size", ["1", "2", "3"])
def test_results_do_not_depend_on_the_batch_size(tiny_onnx, photos: Path, batch_size: str) -> None:
    _corrupt(photos / "broken.png")
    reference = _infer(tiny_onnx(), "--json", "--batch-size", "16", photos)

    result = _infer(tiny_onnx(), "--json", "--batch-size", batch_size, photos)

    assert result.exit_code == EXIT_PARTIAL
    assert result.stdout == reference.stdout


# --- unsure: answers below the confidence threshold ------------------------------------------


@pytest.fixture
def red_and_purple(tmp_path: Path) -> Path:
    folder = tmp_path / "shades"
    write_image_file(folder / "a_red.png", solid_bgr((255, 0, 0)))
    write_image_file(folder / "b_purple.png", solid_bgr(PURPLE_RGB))  # "blue" at about 0.59
    return folder


def _by_name(result: Result) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}


def test_json_says_unsure_below_the_models_threshold_and_keeps_the_best_class(tiny_onnx, red_and_purple: Path) -> None:
    result = _infer(tiny_onnx(decision=decision_record(0.7)), red_and_purple, "--json")

    assert result.exit_code == 0, result.output
    records = _by_name(result)
    purple, red = records["b_purple.png"], records["a_red.png"]
    assert list(purple) == ["path", "label", "best", "confidence", "probabilities"]
    assert (purple["label"], purple["best"]) == ("unsure", "blue")
    assert purple["confidence"] == purple["probabilities"]["blue"] < 0.7
    assert red["label"] == "red" and "best" not in red  # a sure answer is as before
    assert "answers below confidence 0.7 are unsure: the model's recorded decision" in result.stderr


def test_the_table_shows_unsure_with_the_best_class(tiny_onnx, red_and_purple: Path) -> None:
    result = _infer(tiny_onnx(decision=decision_record(0.7)), red_and_purple)

    assert result.exit_code == 0, result.output
    rows = {Path(line.split()[0]).name: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["b_purple.png"][:2] == ["unsure", "(blue)"]
    assert 0.5 < float(rows["b_purple.png"][2]) < 0.7
    assert rows["a_red.png"][0] == "red"


def test_min_confidence_0_turns_the_models_threshold_off_and_a_given_one_applies(tiny_onnx, red_and_purple: Path) -> None:
    model = tiny_onnx(decision=decision_record(0.7))

    off = _infer(model, red_and_purple, "--json", "--min-confidence", "0")
    strict = _infer(model, red_and_purple, "--json", "--min-confidence", "0.99")

    assert {n: r["label"] for n, r in _by_name(off).items()} == {"a_red.png": "red", "b_purple.png": "blue"}
    assert "every answer is given, none is unsure (--min-confidence 0)" in off.stderr
    assert {n: r["label"] for n, r in _by_name(strict).items()} == {"a_red.png": "unsure", "b_purple.png": "unsure"}
    assert "answers below confidence 0.99 are unsure (--min-confidence 0.99)" in strict.stderr


def test_a_model_without_a_decision_answers_always_as_before(tiny_onnx, red_and_purple: Path) -> None:
    result = _infer(tiny_onnx(), red_and_purple, "--json")

    assert _by_name(result)["b_purple.png"]["label"] == "blue"
    assert "unsure" not in result.stdout + result.stderr  # today's output, not a line more


def test_min_confidence_comes_from_the_config_file_too(tiny_onnx, red_and_purple: Path, tmp_path: Path) -> None:
    config = tmp_path / "cam.toml"
    config.write_text("min-confidence = 0.7\n")

    result = _infer(tiny_onnx(), red_and_purple, "--json", "--config", config)

    assert _by_name(result)["b_purple.png"]["label"] == "unsure"
    bad = tmp_path / "bad.toml"
    bad.write_text("min-confidence = 2\n")
    refused = _infer(tiny_onnx(), red_and_purple, "--config", bad)
    assert refused.exit_code == EXIT_USAGE and "min-confidence" in refused.stderr


def test_min_confidence_outside_0_to_1_is_a_usage_error(tiny_onnx, red_and_purple: Path) -> None:
    result = _infer(tiny_onnx(), red_and_purple, "--min-confidence", "1.5")
    assert result.exit_code == EXIT_USAGE and "--min-confidence" in result.stderr
