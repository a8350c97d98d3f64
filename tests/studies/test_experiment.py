"""gclf-experiment: the study's three experiments over seeds, on tiny generated data.

The runs are 1 epoch at 64x64 from random init: what is tested is the bookkeeping (divergence
detected and reported, grey copies evaluated, subsets honoured, finished runs reused,
interrupted ones resumed, table and plot written), not the accuracy figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gclf.studies import experiment as experiment_module
from gclf.studies.experiment_cli import main
from gclf.train.synthetic import make_shapes_dataset

TINY = ["--weights", "none", "--image-size", "64", "--max-epochs", "1", "--device", "cpu", "--seeds", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("experiment") / "data", per_class=10, min_side=32, max_side=64)


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_learn_rate_experiment_reports_divergence_and_reuses_finished_runs(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "lr"
    result = _run("learn-rate", "--data", data, "--out", out, "--rates", "1e6,0.01", *TINY)
    assert result.exit_code == 0, result.output

    runs = {r["arm"]: r for r in json.loads((out / "learn-rate.json").read_text())["runs"]}
    assert runs["lr-1e+06"]["diverged"] and runs["lr-1e+06"]["test_accuracy"] is None
    assert not runs["lr-0.01"]["diverged"] and 0.0 <= runs["lr-0.01"]["test_accuracy"] <= 1.0
    assert sum(runs["lr-0.01"]["predicted"].values()) == 2  # 2 test images, each predicted once
    table = (out / "learn-rate.md").read_text()
    assert "| 1e+06 | n/a | n/a | 1/1 | none (NaN loss) |" in table
    assert "random initialisation (from scratch)" in table  # the init is stated
    assert (out / "learn-rate.png").read_bytes()[:4] == b"\x89PNG"

    # Again with the same OUT: nothing is retrained.
    finished = out / "runs" / "lr-0.01-seed0" / "metrics.json"
    stamp = finished.stat().st_mtime_ns
    again = _run("learn-rate", "--data", data, "--out", out, "--rates", "1e6,0.01", *TINY)
    assert again.exit_code == 0 and again.output.count("reusing the finished run") == 2
    assert finished.stat().st_mtime_ns == stamp


def test_an_interrupted_experiment_run_is_resumed(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "lr"
    assert _run("learn-rate", "--data", data, "--out", out, "--rates", "0.01", *TINY).exit_code == 0
    run_dir = out / "runs" / "lr-0.01-seed0"
    (run_dir / "outcome.json").unlink()
    (run_dir / "metrics.json").unlink()  # as if killed before the final evaluation

    result = _run("learn-rate", "--data", data, "--out", out, "--rates", "0.01", *TINY)
    assert result.exit_code == 0, result.output
    assert "resuming" in (out / "runs" / "lr-0.01-seed0.log").read_text()
    assert (run_dir / "metrics.json").is_file()


def test_grey_experiment_evaluates_grey_copies_for_both_models(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    greyed: list[int] = []
    original = experiment_module.grey_copy
    monkeypatch.setattr(experiment_module, "grey_copy", lambda rgb: greyed.append(1) or original(rgb))
    out = tmp_path / "grey"
    result = _run("grey", "--data", data, "--out", out, "--grey-p", "0.5", *TINY)
    assert result.exit_code == 0, result.output

    runs = {r["arm"]: r for r in json.loads((out / "grey.json").read_text())["runs"]}
    assert set(runs) == {"grey-aug-off", "grey-aug-0.5"}
    assert all(r["grey_accuracy"] is not None and r["grey_confidence"] is not None for r in runs.values())
    assert len(greyed) == 2 * 2  # both models, each on the 2 test photos
    configs = {arm: json.loads((out / "runs" / f"{arm}-seed0" / "config.json").read_text()) for arm in runs}
    assert configs["grey-aug-off"]["augment_options"] == {"grey_p": 0.0}
    assert configs["grey-aug-0.5"]["augment_options"] == {"grey_p": 0.5}
    assert "grey − colour" in (out / "grey.md").read_text()


def test_data_size_experiment_trains_on_subsets_with_the_same_test_split(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "size"
    result = _run("data-size", "--data", data, "--out", out, "--sizes", "3,all", *TINY)
    assert result.exit_code == 0, result.output

    runs = {r["arm"]: r for r in json.loads((out / "data-size.json").read_text())["runs"]}
    assert runs["n-3"]["train_images"] == 6 and runs["n-all"]["train_images"] == 16
    manifests = [json.loads((out / "runs" / f"{arm}-seed0" / "manifest.json").read_text())["splits"] for arm in ("n-3", "n-all")]
    assert manifests[0]["test"] == manifests[1]["test"]
    assert "| 3 per class | 6 |" in (out / "data-size.md").read_text()


def test_bad_experiment_options_are_usage_errors(data: Path, tmp_path: Path) -> None:
    assert _run("learn-rate", "--data", data, "--out", tmp_path / "x", "--rates", "0.1,-2").exit_code == 2
    assert _run("data-size", "--data", data, "--out", tmp_path / "x", "--sizes", "20,lots").exit_code == 2
    missing = _run("grey", "--data", data, "--out", tmp_path / "x", "--weights", tmp_path / "nope.pt")
    assert missing.exit_code == 2 and "nope.pt" in missing.output


def test_every_experiment_offers_gclf_trains_options_with_the_same_declaration() -> None:
    from gclf.train.cli import main as train_main

    train = {p.name: p for p in train_main.params}
    varied = {"learn-rate": "learn_rate", "grey": "aug_grey_p", "data-size": "max_train_per_class", "image-size": "image_size"}
    for name, command in main.commands.items():
        params = {p.name: p for p in command.params}
        # --seed is --seeds there; --resume, --recipe and the display options are gclf-train's own.
        expected = set(train) - {"resume", "recipe", "seed", "verbose", "verbose_frequency", varied[name]}
        assert expected <= set(params), f"{name} lacks {sorted(expected - set(params))}"
        for option in expected - {"data", "out", varied[name]}:
            mine, theirs = params[option], train[option]
            assert (mine.opts, mine.default, getattr(mine.type, "choices", None)) == (theirs.opts, theirs.default, getattr(theirs.type, "choices", None)), option


def test_options_gclf_train_had_alone_reach_the_experiments_runs(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "lr"
    result = _run("learn-rate", "--data", data, "--out", out, "--rates", "0.01", *TINY,
                  "--split", "0.6,0.2,0.2", "--shuffle", "never", "--keep", "last", "--validation-frequency", "2", "--no-flip", "--grey-p", "0.3")
    assert result.exit_code == 0, result.output

    config = json.loads((out / "runs" / "lr-0.01-seed0" / "config.json").read_text())
    assert config["split"] == {"train": 0.6, "val": 0.2, "test": 0.2}
    assert (config["shuffle"], config["keep"], config["validation_frequency"]) == ("never", "last", 2)
    assert config["augment_options"] == {"flip": False, "grey_p": 0.3}


def test_image_size_exports_and_measures_each_size_on_test_and_extra_photos(data: Path, tmp_path: Path) -> None:
    from gclf.runtime.classifier import Classifier

    extra = make_shapes_dataset(tmp_path / "extra", per_class=3, seed=7, min_side=32, max_side=64)  # never trained on
    out = tmp_path / "size"
    tiny = [a for a in TINY if a not in ("--image-size", "64")]
    args = ["image-size", "--data", data, "--out", out, "--sizes", "32,48", "--extra-test", extra, "--repeats", "3", *tiny]
    result = _run(*args)
    assert result.exit_code == 0, result.output

    report = json.loads((out / "image-size.json").read_text())
    measured = {m["arm"]: m for m in report["measurements"]}
    assert set(measured) == {"px-32", "px-48"}
    for size in (32, 48):
        m, run_dir = measured[f"px-{size}"], out / "runs" / f"px-{size}-seed0"
        for variant, name in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
            clf = Classifier(run_dir / name)
            assert clf.metadata.variant == variant and clf.spec.input_height == size  # each size its own export
            assert 0.0 <= m[f"test_{variant}"] <= 1.0 and 0.0 <= m[f"extra_{variant}"] <= 1.0
            assert m[f"latency_{variant}_ms"] > 0
        assert m["test_images"] == 2 and m["extra_images"] == 6 and m["extra_unreadable"] == 0
    table = (out / "image-size.md").read_text()
    assert "| 32 px |" in table and "| 48 px |" in table and "extra fp32" in table
    assert str(extra.resolve()) in table and "random initialisation (from scratch)" in table
    assert (out / "image-size.png").read_bytes()[:4] == b"\x89PNG"

    # Again: the runs, the exports and the measurements are reused.
    model = out / "runs" / "px-32-seed0" / "model.int8.onnx"
    stamp = model.stat().st_mtime_ns
    again = _run(*args)
    assert again.exit_code == 0, again.output
    assert again.output.count("reusing its measurement") == 2 and model.stat().st_mtime_ns == stamp


def test_image_size_refuses_an_extra_test_folder_of_other_classes(data: Path, tmp_path: Path) -> None:
    extra = tmp_path / "other"
    for name in ("cats", "dogs"):
        (extra / name).mkdir(parents=True)
    make_shapes_dataset(tmp_path / "src", per_class=2, min_side=32, max_side=48)
    for i, p in enumerate(sorted((tmp_path / "src").rglob("*.*"))[:4]):
        p.rename(extra / ("cats", "dogs")[i % 2] / p.name)
    tiny = [a for a in TINY if a not in ("--image-size", "64")]
    result = _run("image-size", "--data", data, "--out", tmp_path / "x", "--sizes", "32", "--extra-test", extra, "--repeats", "3", *tiny)
    assert result.exit_code == 3, result.output
    assert "cats" in result.output and "Traceback" not in result.output
