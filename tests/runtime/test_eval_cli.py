"""`gclf-eval MODEL [MODEL2] DATA` end to end on tiny hand-built models and generated photos
whose answers are known: the figures, the faces path (a photo's largest face answers it; a
photo without a face is counted apart and as wrong), side by side, groups, the reports,
--min-confidence, --calibrate's copy, and the one-sentence errors with their exit codes."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result

import gclf.runtime.faces
from gclf.runtime.classifier import Classifier
from gclf.runtime.errors import EXIT_BAD_DATA, EXIT_BAD_MODEL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from gclf.runtime.cli.evaluate import CALIBRATION_METHODS, main
from gclf.runtime.evaluation.calibration import KEY_CALIBRATION, METHODS, Calibration, split_fit_report
from gclf.runtime.evaluation.fit_report import fit_on_part
from gclf.runtime.evaluation.run import classify_set, list_labelled
from gclf.runtime.onnx_metadata import read_metadata
from gclf_testutil import BLOCK, FACES_MODEL, HEAVY, decision_record, write_image_file

RED, BLUE, BLACK = (40, 40, 220), (220, 40, 40), (0, 0, 0)  # BGR


def _strict_json(text: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


def _eval(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _tinted(rng: np.random.Generator, colour: tuple[int, int, int], strength: float) -> np.ndarray:
    """A noisy picture leaning to `colour` by `strength` (0: noise only): confidences vary."""
    noise = rng.integers(0, 256, size=(16, 16, 3)).astype(float)
    return np.clip((1 - strength) * noise + strength * np.array(colour), 0, 255).astype(np.uint8)


@pytest.fixture
def whole_set(tmp_path: Path) -> Path:
    """red/ and blue/, 40 photos each with UTKFace-style names; most lean to their class."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for cls, colour, other in (("red", RED, BLUE), ("blue", BLUE, RED)):
        for i in range(40):
            wrong = i % 8 == 0  # 5 of 40 lean to the other class
            age, gender, race = 20 + i, i % 2, i % 5
            sub = "deep/er" if i % 3 == 0 else ""  # any depth inside a class folder
            write_image_file(root / cls / sub / f"{age}_{gender}_{race}_2017{i:04d}.png", _tinted(rng, other if wrong else colour, rng.uniform(0.3, 0.9)))
    return root


@pytest.fixture
def model(tiny_onnx) -> Path:
    return tiny_onnx("tiny.onnx", props_update={"gclf.training": json.dumps({"input_kind": "whole_image"})})


def _direct_answers(model: Path, root: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(photos, true class index, probabilities) computed here, photo by photo, with the API."""
    clf = Classifier(model)
    data = list_labelled(root)
    probs = np.array([[clf.predict(p).probabilities[c] for c in clf.class_names] for p in data.paths])
    labels = np.array([clf.class_names.index(name) for name in data.labels])
    return list(data.paths), labels, probs


def test_figures_are_those_of_the_models_answers(model: Path, whole_set: Path) -> None:
    paths, labels, probs = _direct_answers(model, whole_set)
    right = probs.argmax(axis=1) == labels

    result = _eval(model, whole_set, "--json", "--min-confidence", "0.6")

    assert result.exit_code == EXIT_OK, result.output
    (ev,) = _strict_json(result.stdout)["evaluations"]
    assert ev["photos"] == len(paths) == 80 and ev["faces"] is False and ev["variant"] == "fp32"
    assert (ev["accuracy"]["k"], ev["accuracy"]["n"]) == (int(right.sum()), 80)
    assert 0 < right.sum() < 80  # some answers are wrong, or the figures test nothing
    for c, name in enumerate(("red", "blue")):
        figures = ev["per_class"][name]
        assert figures["recall"]["k"] == int((right & (labels == c)).sum()) and figures["support"] == int((labels == c).sum())
        assert figures["precision"]["n"] == int((probs.argmax(axis=1) == c).sum())
    counts = np.array(ev["confusion_matrix"]["counts"])
    assert counts.sum() == 80 and np.trace(counts) == right.sum() and counts[:, -1].sum() == 0
    conf = probs.max(axis=1)
    assert ev["calibration_error"]["n"] == 80
    assert ev["calibration_error"]["mean_confidence"] == pytest.approx(conf.mean(), abs=1e-6)
    answered = conf >= 0.6
    assert (ev["min_confidence"]["answered"], ev["min_confidence"]["accuracy"]["k"]) == (int(answered.sum()), int((right & answered).sum()))
    at_90 = next(p for p in ev["coverage"] if p["target"] == 0.9)
    assert at_90["answered"] == int((conf >= at_90["threshold"]).sum()) >= 72
    for target in ev["threshold_for_accuracy"]:
        point = target["point"]
        if point is None:
            continue
        kept = conf >= point["threshold"]
        assert right[kept].mean() >= target["target"] and point["answered"] == int(kept.sum())
        assert all(right[conf >= t].mean() < target["target"] for t in conf[conf < point["threshold"]])


def test_the_models_recorded_threshold_is_reported_unless_turned_off(tiny_onnx, whole_set: Path) -> None:
    recorded = tiny_onnx("decided.onnx", decision=decision_record(0.6))
    paths, labels, probs = _direct_answers(recorded, whole_set)
    answered = probs.max(axis=1) >= 0.6

    by_model = _eval(recorded, whole_set, "--json")
    turned_off = _eval(recorded, whole_set, "--json", "--min-confidence", "0")
    given = _eval(recorded, whole_set, "--json", "--min-confidence", "0.8")
    without = _eval(tiny_onnx("plain.onnx"), whole_set, "--json")

    assert by_model.exit_code == EXIT_OK, by_model.output
    (ev,) = _strict_json(by_model.stdout)["evaluations"]
    assert ev["min_confidence"]["threshold"] == 0.6 and ev["min_confidence"]["answered"] == int(answered.sum())
    assert "decided.onnx: answers below confidence 0.6 are unsure: the model's recorded decision" in by_model.stderr
    assert _strict_json(turned_off.stdout)["evaluations"][0]["min_confidence"] is None
    assert "every answer is given, none is unsure (--min-confidence 0)" in turned_off.stderr
    assert _strict_json(given.stdout)["evaluations"][0]["min_confidence"]["threshold"] == 0.8
    assert _strict_json(without.stdout)["evaluations"][0]["min_confidence"] is None
    assert "the model records no confidence threshold" in without.stderr


def test_the_table_shows_overview_groups_reliability_and_confusion(model: Path, whole_set: Path) -> None:
    result = _eval(model, whole_set, "--groups", "utkface", "--min-group-size", "10")

    assert result.exit_code == EXIT_OK, result.output
    out = result.stdout
    for title in ("overview", "accuracy by race x gender", "accuracy by age", "reliability", "confusion matrix, tiny.onnx (fp32)"):
        assert f"\n{title}" in out, title
    assert "ECE (15 bins)" in out and "most confident 90%" in out and "red: recall" in out
    assert "worst" in out and "points below the best" in out
    assert "too few to rank (fewer than 10 photos)" in out  # 80 photos in 10 race x gender groups: some have fewer


def test_groups_from_a_csv_file(model: Path, whole_set: Path, tmp_path: Path) -> None:
    data = list_labelled(whole_set)
    rows = ["path,group"] + [f"{p.relative_to(whole_set).as_posix()},{'deep' if 'deep' in p.parts else 'shallow'}" for p in data.paths[:70]]
    (tmp_path / "groups.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    result = _eval(model, whole_set, "--groups", tmp_path / "groups.csv", "--json")

    assert result.exit_code == EXIT_OK, result.output
    (table,) = _strict_json(result.stdout)["evaluations"][0]["groups"]
    sizes = {g["group"]: g["accuracy"]["n"] for g in table["groups"]}
    assert sizes == {"deep": sum("deep" in p.parts for p in data.paths[:70]), "shallow": sum("deep" not in p.parts for p in data.paths[:70])}
    assert table["ungrouped"] == 10


def test_two_models_side_by_side(model: Path, whole_set: Path, tiny_onnx) -> None:
    second = tiny_onnx("int8.onnx", props_update={"gclf.variant": "int8", "gclf.quantization": "{}", "gclf.training": json.dumps({"input_kind": "whole_image"})})

    result = _eval(model, second, whole_set, "--json")
    table = _eval(model, second, whole_set)

    assert result.exit_code == EXIT_OK, result.output
    evs = _strict_json(result.stdout)["evaluations"]
    assert [(e["model"], e["variant"]) for e in evs] == [("tiny.onnx", "fp32"), ("int8.onnx", "int8")]
    assert evs[0]["accuracy"] == evs[1]["accuracy"]  # the same graph
    assert "tiny.onnx (fp32)" in table.stdout and "int8.onnx (int8)" in table.stdout


class Patches:
    """A stand-in face detector: every strongly coloured connected patch is a face."""

    name = "patches"

    def detect(self, bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        vivid = (bgr.max(axis=2).astype(int) - bgr.min(axis=2)) > 100
        n, _, stats, _ = cv2.connectedComponentsWithStats(vivid.astype(np.uint8))
        return [tuple(int(v) for v in stats[i, :4]) for i in range(1, n)]


def _picture(patches: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]]) -> np.ndarray:
    image = np.zeros((60, 90, 3), dtype=np.uint8)
    for (x, y, w, h), colour in patches:
        image[y : y + h, x : x + w] = colour
    return image


def test_faces_model_answers_with_the_largest_face_and_counts_photos_without_one_apart(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(gclf.runtime.faces.detectors, "make_detector", lambda face_model: Patches())
    faces_model = tiny_onnx("faces.onnx", props_update=FACES_MODEL)
    root = tmp_path / "faces"
    small, large = (2, 2, 10, 10), (30, 5, 40, 40)
    write_image_file(root / "red" / "big_red_small_blue.png", _picture([(small, BLUE), (large, RED)]))  # right, by its largest face
    write_image_file(root / "red" / "one_red.png", _picture([((10, 10, 20, 20), RED)]))  # right
    write_image_file(root / "red" / "nobody.png", _picture([]))  # no face
    write_image_file(root / "blue" / "big_red_small_blue.png", _picture([(small, BLUE), (large, RED)]))  # wrong, by its largest face
    write_image_file(root / "blue" / "one_blue.png", _picture([((10, 10, 20, 20), BLUE)]))  # right

    result = _eval(faces_model, root, "--json")

    assert result.exit_code == EXIT_OK, result.output
    (ev,) = _strict_json(result.stdout)["evaluations"]
    assert ev["faces"] is True and ev["detector"] == "patches"
    assert (ev["photos"], ev["answered"], ev["no_face"]) == (5, 4, 1)
    assert (ev["accuracy"]["k"], ev["accuracy"]["n"]) == (3, 5)  # the photo without a face is wrong
    assert (ev["accuracy_on_answered"]["k"], ev["accuracy_on_answered"]["n"]) == (3, 4)
    assert ev["per_class"]["red"]["recall"]["k"] == 2 and ev["per_class"]["red"]["recall"]["n"] == 3
    assert ev["confusion_matrix"]["counts"] == [[2, 0, 1], [1, 1, 0]]  # rows red, blue (the model's order); last column: no face
    assert any("no face" in note for note in ev["notes"])
    table = _eval(faces_model, root)
    assert re.search(r"faces found +4 of 5", table.stdout) and "no face" in table.stdout


def test_report_folder_holds_markdown_json_and_figures(model: Path, whole_set: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the figures need matplotlib (the train extra); a device without it gets a note instead")
    report = tmp_path / "report"

    result = _eval(model, whole_set, "--report", report, "--groups", "utkface")

    assert result.exit_code == EXIT_OK, result.output
    assert sorted(p.name for p in report.iterdir()) == ["coverage.png", "evaluation.json", "reliability.png", "report.md"]
    md = (report / "report.md").read_text()
    assert "## Overview" in md and "## Accuracy by race x gender" in md and "![reliability](reliability.png)" in md
    (ev,) = _strict_json((report / "evaluation.json").read_text())["evaluations"]
    assert ev["photos"] == len(ev["answers"]) == 80
    paths, labels, probs = _direct_answers(model, whole_set)
    by_path = {a["path"]: a for a in ev["answers"]}
    for path, y, row in zip(paths, labels, probs):
        answer = by_path[str(path)]
        assert answer["true"] == ("red", "blue")[y] and answer["answer"] == ("red", "blue")[row.argmax()]
        assert answer["confidence"] == pytest.approx(row.max()) and answer["probabilities"]["blue"] == pytest.approx(row[1])
    for png in ("coverage.png", "reliability.png"):
        image = cv2.imread(str(report / png))
        assert image is not None and image.shape[0] > 200


def test_without_matplotlib_the_report_says_so_in_one_line(model: Path, whole_set: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    report = tmp_path / "report"

    result = _eval(model, whole_set, "--report", report)

    assert result.exit_code == EXIT_OK, result.output
    assert sorted(p.name for p in report.iterdir()) == ["evaluation.json", "report.md"]
    assert "warning: no figures: matplotlib is not installed" in result.stderr
    assert "matplotlib is not installed" in (report / "report.md").read_text()


def test_calibrate_writes_a_copy_recording_where_its_calibration_came_from(model: Path, whole_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibrated.onnx"

    result = _eval(model, whole_set, "--calibrate", "--out", out, "--seed", "3", "--json")

    assert result.exit_code == EXIT_OK, result.output
    record = _strict_json(result.stdout)
    cal = record["calibration"]
    assert (cal["fit_photos"], cal["report_photos"]) == (40, 40)
    assert [e["photos"] for e in record["evaluations"]] == [40, 40, 40, 40]  # as is and each method: every figure is of the report part
    assert [e["calibration"] for e in record["evaluations"]][0] is None
    written = Calibration.from_json(read_metadata(out)[KEY_CALIBRATION])
    assert written.method == "temperature" and written.to_dict() == cal["fitted"]["temperature"]
    # The record names exactly the photos of the seeded fit part.
    data = list_labelled(whole_set)
    clf = Classifier(model)
    labels = np.array([clf.class_names.index(n) for n in data.labels])
    fit_idx, _ = split_fit_report(labels, fit_share=0.5, seed=3)
    names = sorted(data.paths[i].relative_to(whole_set).as_posix() for i in fit_idx)
    assert written.fitted_on["files_sha256"] == hashlib.sha256("\n".join(names).encode()).hexdigest()
    assert (written.fitted_on["seed"], written.fitted_on["fit_share"], written.fitted_on["n"]) == (3, 0.5, 40)
    assert written.fitted_on["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    # The copy is the same model answering calibrated: the same label, the calibrated
    # probabilities; raw, exactly the model's answer; its graph is unchanged.
    copy = Classifier(out)
    got, raw = copy.predict(data.paths[0]), clf.predict(data.paths[0])
    assert got.label == raw.label and got.confidence == pytest.approx(written.apply(np.log([list(raw.probabilities.values())]))[0].max())
    assert got.confidence != pytest.approx(raw.confidence, abs=1e-3)
    assert Classifier(out, calibrated=False).predict(data.paths[0]) == raw
    assert read_metadata(out)["gclf.format_version"] == "2"
    assert onnx.load(str(out)).graph.SerializeToString() == onnx.load(str(model)).graph.SerializeToString()
    # The default decision threshold, chosen on the fit part as the copy answers.
    decision = copy.metadata.decision
    assert decision is not None and decision.to_dict() == cal["written"]["decision"] and decision.photos == 40
    assert "95%" in decision.rule and decision.coverage >= 0.85 - 1e-9
    table = _eval(model, whole_set, "--calibrate", "--out", out, "--calibration-method", "vector_scaling")
    assert table.exit_code == EXIT_OK and "\ncalibration\n" in table.stdout and "which nothing was fitted on; the tables below are of that report part" in table.stdout
    assert Calibration.from_json(read_metadata(out)[KEY_CALIBRATION]).method == "vector_scaling"


def test_an_evaluation_measures_the_recorded_calibration_and_recalibrating_fits_on_raw_logits(model: Path, whole_set: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first.onnx", tmp_path / "second.onnx"
    assert _eval(model, whole_set, "--calibrate", "--out", first).exit_code == EXIT_OK
    recorded = Classifier(first).calibration

    measured = _eval(first, whole_set, "--json")
    assert measured.exit_code == EXIT_OK
    assert f"first.onnx applies its recorded calibration ({recorded.describe()})" in measured.stderr
    assert _strict_json(measured.stdout)["evaluations"][0]["calibration"] == f"recorded {recorded.describe()}"
    plain = _eval(model, whole_set)
    assert "tiny.onnx records no calibration: its answers are the plain softmax" in plain.stderr
    # Fitting again on the calibrated copy fits on its raw logits: the same temperature as on
    # the model itself (not one stacked on the first), and replaces the record.
    again = _eval(first, whole_set, "--calibrate", "--out", second, "--seed", "5", "--json")
    assert again.exit_code == EXIT_OK and "fitting on its raw logits, the copy's replaces it" in again.stderr
    direct = _eval(model, whole_set, "--calibrate", "--out", tmp_path / "direct.onnx", "--seed", "5")
    assert direct.exit_code == EXIT_OK
    t_again = Classifier(second).calibration.parameters["temperature"]
    assert t_again == pytest.approx(Classifier(tmp_path / "direct.onnx").calibration.parameters["temperature"])
    assert Classifier(second).calibration.fitted_on["seed"] == 5


def test_calibration_is_fitted_on_the_fit_part_only(model: Path, whole_set: Path) -> None:
    outcomes = classify_set(Classifier(model), list_labelled(whole_set))
    fit = fit_on_part(outcomes, data_root=whole_set, model_sha256="0" * 64, seed=1)

    assert not set(fit.fit.paths) & set(fit.report.paths)
    assert len(fit.fit.paths) + len(fit.report.paths) == outcomes.n
    from gclf.runtime.evaluation.calibration import fit_temperature, log_probabilities

    on_fit = fit_temperature(log_probabilities(fit.fit.probabilities), fit.fit.labels)
    on_report = fit_temperature(log_probabilities(fit.report.probabilities), fit.report.labels)
    assert fit.fitted["temperature"].parameters["temperature"] == pytest.approx(on_fit)
    assert abs(on_fit - on_report) > 1e-6  # else this test could not tell the parts apart
    calibrated = fit.calibrated_report("temperature")
    assert (calibrated.predicted == fit.report.predicted).all() and not np.allclose(calibrated.probabilities, fit.report.probabilities)


def test_the_commands_methods_are_the_libraries() -> None:
    assert CALIBRATION_METHODS == METHODS


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--calibrate"], "--calibrate needs --out"),
        (["--out", "x.onnx"], "add --calibrate"),
        (["--calibrate", "--out", "MODEL"], "is the model itself"),
    ],
)
def test_option_mistakes_are_one_sentence_usage_errors(model: Path, whole_set: Path, extra: list[str], message: str) -> None:
    result = _eval(model, whole_set, *[str(model) if e == "MODEL" else e for e in extra])
    assert result.exit_code == EXIT_USAGE
    assert message in result.stderr and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_three_models_or_two_with_calibrate_are_refused(model: Path, whole_set: Path, tmp_path: Path) -> None:
    three = _eval(model, model, model, whole_set)
    assert three.exit_code == EXIT_USAGE and "one or two model files" in three.stderr
    both = _eval(model, model, whole_set, "--calibrate", "--out", tmp_path / "c.onnx")
    assert both.exit_code == EXIT_USAGE and "calibrates one model" in both.stderr


def test_a_class_folder_the_model_does_not_know_is_bad_data(model: Path, tmp_path: Path) -> None:
    write_image_file(tmp_path / "data" / "red" / "a.png", _picture([]))
    write_image_file(tmp_path / "data" / "green" / "b.png", _picture([]))
    result = _eval(model, tmp_path / "data")
    assert result.exit_code == EXIT_BAD_DATA
    assert "class folder green is not among tiny.onnx's classes (red, blue)" in result.stderr


def test_bad_groups_file_and_empty_set_are_bad_data(model: Path, whole_set: Path, tmp_path: Path) -> None:
    (tmp_path / "groups.csv").write_text("red/nope.png,x\n", encoding="utf-8")
    bad = _eval(model, whole_set, "--groups", tmp_path / "groups.csv")
    assert bad.exit_code == EXIT_BAD_DATA and "1 path that is not a photo" in bad.stderr
    (tmp_path / "empty" / "red").mkdir(parents=True)
    empty = _eval(model, tmp_path / "empty")
    assert empty.exit_code == EXIT_BAD_DATA and "no images in class folders" in empty.stderr


def test_a_file_that_is_not_a_model_is_a_bad_model(whole_set: Path, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    result = _eval(tmp_path / "model.onnx", whole_set)
    assert result.exit_code == EXIT_BAD_MODEL
    assert result.stderr.startswith(f"error: {tmp_path / 'model.onnx'}: not a loadable ONNX model") and result.stderr.count("\n") == 1


def test_an_unreadable_photo_is_named_and_left_out_and_the_exit_code_says_so(model: Path, whole_set: Path) -> None:
    broken = whole_set / "red" / "broken.png"
    broken.write_bytes(b"not an image")

    result = _eval(model, whole_set, "--json")

    assert result.exit_code == EXIT_PARTIAL
    assert "broken.png" in result.stderr
    ev = _strict_json(result.stdout)["evaluations"][0]
    assert ev["photos"] == 80 and [u["path"] for u in ev["unreadable"]] == [str(broken)]


SCRIPT = r"""
import json, sys
{block}
from click.testing import CliRunner
import gclf.runtime.cli.evaluate
result = CliRunner().invoke(gclf.runtime.cli.evaluate.main, sys.argv[1:])
print(json.dumps({{"code": result.exit_code, "stderr": result.stderr, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})}}))
"""


def test_gclf_eval_and_its_calibrated_copy_need_neither_torch_nor_onnx(model: Path, whole_set: Path, tmp_path: Path) -> None:
    code = SCRIPT.format(block=BLOCK.format(heavy=HEAVY), heavy=HEAVY)
    args = [str(model), str(whole_set), "--calibrate", "--out", str(tmp_path / "c.onnx"), "--groups", "utkface", "--report", str(tmp_path / "r")]
    proc = subprocess.run([sys.executable, "-c", "import sys\n" + code, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == EXIT_OK, report["stderr"]
    assert report["loaded"] == []
    assert KEY_CALIBRATION in read_metadata(tmp_path / "c.onnx")


def test_calibrating_on_photos_of_one_class_is_bad_data(model: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(6):
        write_image_file(tmp_path / "data" / "red" / f"{i}.png", _tinted(rng, RED, 0.5))
    result = _eval(model, tmp_path / "data", "--calibrate", "--out", tmp_path / "c.onnx")
    assert result.exit_code == EXIT_BAD_DATA and "all of one class" in result.stderr
    assert not (tmp_path / "c.onnx").exists()


def test_calibrate_can_write_the_equal_recall_calibration(model: Path, whole_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "equal.onnx"

    result = _eval(model, whole_set, "--calibrate", "--out", out, "--calibration-method", "equal_recall")

    assert result.exit_code == EXIT_OK, result.output
    assert "equal_recall" in result.stdout and "written to" in result.stdout
    written = Calibration.from_json(read_metadata(out)[KEY_CALIBRATION])
    assert written.method == "equal_recall" and len(written.parameters["bias"]) == 2
    assert Classifier(out).calibration == written  # the runtime answers with it
