"""Run reports: the figures and summary.md written beside metrics.json.

The plotting functions are called directly with small made-up histories and reports and a
few generated images; one slow test trains a tiny real run and checks all four files.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.metrics import classification_report
from gclf.train.scan import Sample
from gclf.train.reports import (
    ImageOutcome,
    order_for_grid,
    plot_confusion_matrix,
    plot_test_predictions,
    plot_training_progress,
    predictions_from_probabilities,
    split_class_counts,
    summary_markdown,
    write_run_reports,
    write_summary_markdown,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["cats", "dogs", "ferrets"]
HISTORY = [
    {"epoch": e, "iteration": 3 * e, "elapsed_s": 1.0 * e, "train_loss": tl, "train_accuracy": ta, "val_loss": vl, "val_accuracy": va, "learn_rate": 1e-3}
    for e, tl, ta, vl, va in [(1, 1.1, 0.40, 1.0, 0.45), (2, 0.8, 0.60, 0.7, 0.65), (3, 0.5, 0.80, 0.75, 0.60)]
]
OPTIONS = {"max_epochs": 3, "batch_size": 4, "learn_rate": 1e-3, "momentum": 0.9, "optimizer": "sgdm", "lr_schedule": "none", "l2": 1e-4, "seed": 0, "image_size": 32}
INIT = "random initialisation (from scratch)"


def _assert_png(path: Path, min_side: int = 100) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = cv2.imread(str(path))
    assert img is not None, f"{path} is not readable as an image"
    h, w = img.shape[:2]
    assert min_side <= h <= 3000 and min_side <= w <= 3000, (h, w)
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporary file


def _report() -> dict:
    y_true = [0, 0, 1, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0, 2]
    return classification_report(y_true, y_pred, CLASSES)


def _images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = (int(v) for v in rng.integers(20, 48, size=2))
        assert cv2.imwrite(str(path), rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def _pred(i: int, true: int, predicted: int, confidence: float) -> ImageOutcome:
    return ImageOutcome(Path(f"{i}.png"), true, predicted, confidence)


# --- the grid order (pure) ------------------------------------------------------------------


def test_grid_order_puts_wrong_predictions_first_most_confident_first() -> None:
    preds = [_pred(0, 0, 0, 0.9), _pred(1, 1, 0, 0.6), _pred(2, 1, 1, 0.7), _pred(3, 0, 1, 0.95), _pred(4, 2, 2, 0.5)]

    ordered = order_for_grid(preds)

    assert [p.path.name for p in ordered] == ["3.png", "1.png", "0.png", "2.png", "4.png"]
    assert [p.correct for p in ordered] == [False, False, True, True, True]


def test_grid_order_limits_to_16_keeping_every_wrong_one_that_fits() -> None:
    preds = [_pred(i, 0, 0, 0.9) for i in range(20)] + [_pred(100 + i, 0, 1, 0.5) for i in range(3)]

    ordered = order_for_grid(preds)

    assert len(ordered) == 16
    assert [p.correct for p in ordered[:3]] == [False] * 3
    assert all(p.correct for p in ordered[3:])
    assert order_for_grid(preds[:2]) == preds[:2]  # fewer than the limit: all, in order
    assert order_for_grid([]) == []


def test_predictions_from_probabilities_take_argmax_and_its_probability() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])

    preds = predictions_from_probabilities([Path("a.png"), Path("b.png")], np.array([0, 1]), probs)

    assert [(p.predicted, p.correct) for p in preds] == [(0, True), (2, False)]
    assert preds[1].confidence == pytest.approx(0.6)
    with pytest.raises(ValueError):
        predictions_from_probabilities([Path("a.png")], np.array([0, 1]), probs)


# --- figures ---------------------------------------------------------------------------------


def test_training_progress_png(tmp_path: Path) -> None:
    dest = tmp_path / "training_progress.png"
    plot_training_progress(HISTORY, best_epoch=2, dest=dest)
    _assert_png(dest)


def test_training_progress_png_of_a_single_epoch(tmp_path: Path) -> None:
    dest = tmp_path / "progress.png"
    plot_training_progress(HISTORY[:1], best_epoch=1, dest=dest)
    _assert_png(dest)


def test_confusion_matrix_png(tmp_path: Path) -> None:
    dest = tmp_path / "confusion_matrix.png"
    plot_confusion_matrix(_report(), dest)
    _assert_png(dest)


def test_test_predictions_png_grid(tmp_path: Path) -> None:
    paths = _images(tmp_path / "images", 5)
    preds = [ImageOutcome(p, i % 3, (i + (i == 1)) % 3, 0.5 + 0.1 * i) for i, p in enumerate(paths)]
    dest = tmp_path / "test_predictions.png"

    plot_test_predictions(order_for_grid(preds), CLASSES, PreprocessSpec(input_height=32, input_width=32), dest)

    _assert_png(dest)


def test_test_predictions_refuse_an_empty_list(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_test_predictions([], CLASSES, PreprocessSpec(input_height=32, input_width=32), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# --- summary.md ------------------------------------------------------------------------------


def _summary_fields(report: dict | None) -> dict:
    counts = {"train": {"cats": 5, "dogs": 6, "ferrets": 4}, "val": {"cats": 1, "dogs": 1, "ferrets": 1}, "test": {"cats": 2, "dogs": 2, "ferrets": 3}}
    return dict(data=["/data/pets"], class_counts=counts, init=INIT, options=OPTIONS, history=HISTORY, best_epoch=2,
                test_report=report, wall_time_s=75.4, figures=["training_progress.png", "confusion_matrix.png", "test_predictions.png"])


def test_summary_mentions_accuracy_init_classes_and_links(tmp_path: Path) -> None:
    report = _report()
    dest = tmp_path / "summary.md"

    write_summary_markdown(dest, **_summary_fields(report))
    text = dest.read_text(encoding="utf-8")

    assert f"{report['accuracy'] * 100:.2f}%" in text  # 71.43%
    assert INIT in text
    assert "/data/pets" in text
    for name in CLASSES:
        assert text.count(f"| {name} |") == 2  # split counts and precision/recall tables
    assert "| cats | 5 | 1 | 2 | 8 |" in text
    assert "best epoch: 2" in text
    assert "sgdm" in text and "32x32" in text and "00:01:15" in text
    for png in ("training_progress.png", "confusion_matrix.png", "test_predictions.png"):
        assert f"]({png})" in text


def test_summary_without_a_test_split_says_so() -> None:
    text = summary_markdown(**{**_summary_fields(None), "figures": ["training_progress.png"]})

    assert "No test split" in text
    assert "precision" not in text
    assert "confusion_matrix.png" not in text


def test_summary_escapes_pipes_in_class_names() -> None:
    fields = _summary_fields(None)
    fields["class_counts"] = {"train": {"a|b": 1, "c": 2}}

    text = summary_markdown(**fields)

    assert "| a\\|b | 1 | 1 |" in text


def test_split_class_counts() -> None:
    splits = {"train": [Sample(Path("a"), 0, "x"), Sample(Path("b"), 0, "y")], "test": [Sample(Path("c"), 2, "z")]}

    assert split_class_counts(splits, CLASSES) == {"train": {"cats": 2, "dogs": 0, "ferrets": 0}, "test": {"cats": 0, "dogs": 0, "ferrets": 1}}


# --- all reports together --------------------------------------------------------------------


class _Eval:
    def __init__(self, labels: list[int], probabilities: np.ndarray) -> None:
        self.labels, self.probabilities = np.array(labels), probabilities


def test_write_run_reports_with_and_without_a_test_split(tmp_path: Path) -> None:
    paths = _images(tmp_path / "images", 4)
    splits = {"train": [Sample(paths[0], 0, "a")], "val": [Sample(paths[1], 1, "b")], "test": [Sample(paths[2], 0, "c"), Sample(paths[3], 1, "d")]}
    test = _Eval([0, 1], np.array([[0.8, 0.2], [0.9, 0.1]]))
    report = classification_report([0, 1], [0, 0], ["a", "b"])
    common = dict(data=["d"], class_names=["a", "b"], spec=PreprocessSpec(input_height=32, input_width=32), init=INIT, options=OPTIONS,
                  history=HISTORY, best_epoch=2, wall_time_s=3.0)

    written = write_run_reports(tmp_path / "run", splits=splits, test=test, test_report=report, **common)
    assert [p.name for p in written] == ["training_progress.png", "confusion_matrix.png", "test_predictions.png", "summary.md"]

    no_test = {**splits, "test": []}
    write_run_reports(tmp_path / "run-no-test", splits=no_test, test=None, test_report=None, **common)
    assert sorted(p.name for p in (tmp_path / "run-no-test").iterdir()) == ["summary.md", "training_progress.png"]

    shuffled = _Eval([1, 0], test.probabilities)
    with pytest.raises(ValueError, match="order"):
        write_run_reports(tmp_path / "run-bad", splits=splits, test=shuffled, test_report=report, **common)


@pytest.mark.slow
def test_real_tiny_training_writes_all_reports(tmp_path: Path) -> None:
    from gclf.train.config import TrainConfig
    from gclf.train.run import run_training
    from gclf.train.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "data", per_class=8, min_side=40, max_side=80)
    out = tmp_path / "run"

    result = run_training(TrainConfig(data=(data,), out=out, weights="none", image_size=64, max_epochs=1, batch_size=8, verbose=False), log=lambda s: None)

    for png in ("training_progress.png", "confusion_matrix.png", "test_predictions.png"):
        _assert_png(out / png)
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert result.test_report is not None
    assert f"{result.test_report['accuracy'] * 100:.2f}%" in summary
    assert result.init_description in summary
    assert "circles" in summary and "squares" in summary
