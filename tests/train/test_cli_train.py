"""gclf-train as a user meets it: bad options, a used --out, missing weights, divergence.

Every failure is one `error:` sentence and a documented exit code, never a traceback.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch.hub
from click.testing import CliRunner, Result

from gclf.runtime.errors import EXIT_BAD_DATA, EXIT_DIVERGED, EXIT_USAGE, EXIT_WEIGHTS_UNAVAILABLE
from gclf.train.cli import main
from gclf.train.synthetic import make_shapes_dataset
from gclf_testutil import noise_bgr, write_image_file


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("cli-train") / "data", per_class=6, min_side=32, max_side=64)


def _train(*args: str) -> Result:
    return CliRunner().invoke(main, ["--device", "cpu", "--image-size", "64", "--max-epochs", "1", *args])


def _assert_clean_failure(result: Result, code: int) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "option, value",
    [
        ("--max-epochs", "0"),
        ("--learn-rate", "-1"),
        ("--learn-rate", "0"),
        ("--batch-size", "0"),
        ("--split", "0.5,0.5,0.5"),
        ("--split", "0.8,0.2"),
        ("--image-size", "16"),
        ("--momentum", "1"),
    ],
)
def test_bad_option_values_exit_2_naming_the_option(data: Path, tmp_path: Path, option: str, value: str) -> None:
    result = _train("--data", str(data), "--out", str(tmp_path / "run"), option, value)

    _assert_clean_failure(result, EXIT_USAGE)
    assert option in result.output
    assert not (tmp_path / "run").exists()  # refused before anything was created


def test_out_folder_that_is_not_empty_is_refused_untouched(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "previous-run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"someone's model")
    (out / "notes.txt").write_text("keep me")

    result = _train("--data", str(data), "--out", str(out), "--weights", "none")

    _assert_clean_failure(result, EXIT_USAGE)
    assert "--out" in result.output and "not empty" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "notes.txt"]
    assert (out / "best.pt").read_bytes() == b"someone's model"
    assert (out / "notes.txt").read_text() == "keep me"


def test_unavailable_imagenet_weights_exit_7_before_the_data_is_read(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(*args, **kwargs) -> None:
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)

    result = _train("--data", str(data), "--out", str(tmp_path / "run"), "--weights", "imagenet")

    _assert_clean_failure(result, EXIT_WEIGHTS_UNAVAILABLE)
    assert "--weights PATH" in result.output and "--weights none" in result.output
    assert "found" not in result.output  # failed before scanning the images
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_weights_path_that_does_not_exist_exits_2(data: Path, tmp_path: Path) -> None:
    result = _train("--data", str(data), "--out", str(tmp_path / "run"), "--weights", str(tmp_path / "absent.pt"))

    _assert_clean_failure(result, EXIT_USAGE)
    assert "absent.pt" in result.output


def test_data_without_class_folders_exits_3(tmp_path: Path) -> None:
    (tmp_path / "data" / "only-class").mkdir(parents=True)

    result = _train("--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--weights", "none")

    _assert_clean_failure(result, EXIT_BAD_DATA)
    assert "at least 2 classes" in result.output


@pytest.mark.parametrize("folder", ["unsure", "Unsure"])
def test_a_class_folder_called_unsure_exits_3_with_one_sentence(tmp_path: Path, folder: str) -> None:
    for name, seed in (("man", 1), (folder, 2)):
        write_image_file(tmp_path / "data" / name / "a.png", noise_bgr(seed))

    result = _train("--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--weights", "none")

    _assert_clean_failure(result, EXIT_BAD_DATA)
    assert f"{folder}: 'unsure' is reserved for answers below the confidence threshold" in result.output
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").glob("*.pt"))


@pytest.mark.slow
def test_diverging_training_exits_4_naming_the_learn_rate(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"

    result = _train("--data", str(data), "--out", str(out), "--weights", "none", "--batch-size", "2", "--learn-rate", "1e6", "--quiet")

    _assert_clean_failure(result, EXIT_DIVERGED)
    error = result.stderr
    assert error.startswith("error: training diverged")
    assert "--learn-rate" in error and "1e+06" in error  # says which learn rate, and what to change
    assert not (out / "best.pt").exists()
    assert "no checkpoint was written" in error
