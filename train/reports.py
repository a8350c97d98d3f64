"""Human-readable reports of a finished run: three PNG figures and a Markdown summary.

Written by `run_training` beside metrics.json (each file atomically):
  training_progress.png  loss (top) and accuracy (bottom) per epoch, train and validation
  confusion_matrix.png   the test split's confusion matrix with counts
  test_predictions.png   up to 16 test images as the model saw them, wrong ones first
  summary.md             data, split counts, init, options, best epoch, test metrics, links

Plots use `matplotlib.figure.Figure` directly (no pyplot): no GUI backend, no global
figure registry, so nothing depends on a display or leaks between calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gclf.runtime.atomic import write_atomic_with, write_text_atomic
from gclf.runtime.decode import decode_image
from gclf.runtime.preprocess import PreprocessSpec, resize_to_input
from gclf.train.progress import hms
from gclf.train.scan import SPLIT_NAMES, Sample

if TYPE_CHECKING:
    from gclf.train.epoch import EvalResult

PROGRESS_PNG = "training_progress.png"
CONFUSION_PNG = "confusion_matrix.png"
PREDICTIONS_PNG = "test_predictions.png"
SUMMARY_MD = "summary.md"
GRID_LIMIT = 16  # test images shown in test_predictions.png
DPI = 100
WRONG_COLOR = "#c00000"
TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#222222"  # MATLAB's progress window: blue train, black validation


@dataclass(frozen=True)
class ImageOutcome:
    """One test image's outcome: true and predicted class indices, confidence in [0, 1]."""

    path: Path
    true_label: int
    predicted: int
    confidence: float  # softmax probability of the predicted class

    @property
    def correct(self) -> bool:
        return self.predicted == self.true_label


def predictions_from_probabilities(paths: Sequence[Path], labels: np.ndarray, probabilities: np.ndarray) -> list[ImageOutcome]:
    """Pair each test file with its label and softmax row (same order as the evaluation loader)."""
    if not len(paths) == len(labels) == len(probabilities):
        raise ValueError(f"{len(paths)} paths, {len(labels)} labels and {len(probabilities)} probability rows do not match")
    predicted = probabilities.argmax(1) if len(probabilities) else np.empty(0, dtype=np.int64)
    return [
        ImageOutcome(Path(p), int(y), int(k), float(row[k]))
        for p, y, k, row in zip(paths, labels, predicted, probabilities)
    ]


def order_for_grid(predictions: Sequence[ImageOutcome], limit: int = GRID_LIMIT) -> list[ImageOutcome]:
    """The images to show, at most `limit`: wrong ones first, most confident mistakes first,
    then correct ones in their original (test-split) order."""
    wrong = sorted((p for p in predictions if not p.correct), key=lambda p: -p.confidence)
    right = [p for p in predictions if p.correct]
    return (wrong + right)[:limit]


def split_class_counts(splits: Mapping[str, Sequence[Sample]], class_names: Sequence[str]) -> dict[str, dict[str, int]]:
    """{split: {class: number of images}} for every split present, every class listed."""
    counts: dict[str, dict[str, int]] = {}
    for split, samples in splits.items():
        per_class = {name: 0 for name in class_names}
        for s in samples:
            per_class[class_names[s.label]] += 1
        counts[split] = per_class
    return counts


# --- figures --------------------------------------------------------------------------------


def _save_png(fig: Figure, dest: Path) -> None:
    # The temporary file ends in .tmp, so the format is given, not guessed from the name.
    write_atomic_with(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def plot_training_progress(history: Sequence[Mapping[str, Any]], best_epoch: int, dest: Path) -> None:
    """Loss (top) and accuracy in % (bottom) per epoch, train and validation; best epoch marked."""
    if not history:
        raise ValueError("no epochs in the history: nothing to plot")
    epochs = [int(row["epoch"]) for row in history]
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    loss_ax, acc_ax = fig.subplots(2, 1, sharex=True)
    for ax, key, scale, ylabel in ((loss_ax, "loss", 1.0, "loss"), (acc_ax, "accuracy", 100.0, "accuracy (%)")):
        ax.plot(epochs, [row[f"train_{key}"] * scale for row in history], "o-", color=TRAIN_COLOR, label=f"training {key}")
        # Only validated epochs (--validation-frequency leaves NaN in the others): one joined line.
        validated = [(int(row["epoch"]), row[f"val_{key}"] * scale) for row in history if not math.isnan(row[f"val_{key}"])]
        ax.plot([e for e, _ in validated], [v for _, v in validated], "s--", color=VAL_COLOR, label=f"validation {key}")
        if best_epoch in epochs:
            ax.axvline(best_epoch, color="#2ca02c", linestyle=":", linewidth=1.5, label=f"best epoch ({best_epoch})")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    acc_ax.set_ylim(0, 100)
    acc_ax.set_xlabel("epoch")
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(epochs) == 1:
        acc_ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
    fig.suptitle(f"Training progress: {len(epochs)} epoch(s), best epoch {best_epoch} (lowest validation loss)")
    _save_png(fig, dest)


def plot_confusion_matrix(report: Mapping[str, Any], dest: Path) -> None:
    """Counts of `report["confusion_matrix"]` (rows true, columns predicted), as in metrics.json."""
    names = list(report["confusion_matrix"]["labels"])
    cm = np.asarray(report["confusion_matrix"]["rows_true_cols_predicted"], dtype=np.int64)
    if cm.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not match {len(names)} class names")
    side = min(4.0 + 0.6 * len(names), 20.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
    fig.colorbar(image, ax=ax, shrink=0.8, label="images", ticks=MaxNLocator(integer=True))
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, labels=names, rotation=45 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center")
    ax.set_yticks(ticks, labels=names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    threshold = cm.max() / 2
    fontsize = 10 if len(names) <= 10 else 7
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fontsize, color="white" if cm[i, j] > threshold else "black")
    ax.set_title(f"Test split: accuracy {report['accuracy'] * 100:.1f}% on {report['n']} images")
    _save_png(fig, dest)


def plot_test_predictions(items: Sequence[ImageOutcome], class_names: Sequence[str], spec: PreprocessSpec, dest: Path) -> None:
    """A grid of `items` in the given order (use `order_for_grid`), each image decoded and
    resized exactly as the model saw it; titled with the predicted class and confidence,
    wrong ones in red with a red frame and the true class."""
    if not items:
        raise ValueError("no test predictions to show")
    cols = math.ceil(math.sqrt(len(items)))
    rows = math.ceil(len(items) / cols)
    fig = Figure(figsize=(2.6 * cols, 2.9 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, item in zip(axes, items):
        ax.imshow(resize_to_input(decode_image(item.path), spec))
        ax.set_xticks([])
        ax.set_yticks([])
        title = f"{class_names[item.predicted]} ({item.confidence * 100:.0f}%)"
        color = "black"
        if not item.correct:
            title += f"\ntrue: {class_names[item.true_label]}"
            color = WRONG_COLOR
            for spine in ax.spines.values():
                spine.set_edgecolor(WRONG_COLOR)
                spine.set_linewidth(3)
        ax.set_title(title, color=color, fontsize=9)
    for ax in axes[len(items):]:
        ax.set_axis_off()
    n_wrong = sum(not p.correct for p in items)
    fig.suptitle(f"Test predictions ({len(items)} shown, {n_wrong} wrong, wrong ones first)")
    _save_png(fig, dest)


# --- Markdown summary ----------------------------------------------------------------------


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def summary_markdown(
    *,
    data: Sequence[str],
    class_counts: Mapping[str, Mapping[str, int]],
    init: str,
    options: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    best_epoch: int,
    test_report: Mapping[str, Any] | None,
    wall_time_s: float,
    figures: Sequence[str],
) -> str:
    """The run's summary.md text. `options` is `TrainConfig.to_dict()`; `figures` are file
    names in the run folder, linked relatively."""
    lines = ["# Training run summary", ""]
    lines += ["## Data", ""]
    lines += [f"- `{d}`" for d in data]
    classes = list(next(iter(class_counts.values()), {}))
    splits = [s for s in SPLIT_NAMES if s in class_counts] + [s for s in class_counts if s not in SPLIT_NAMES]
    lines += ["", "| class | " + " | ".join(splits) + " | total |", "| --- |" + " ---: |" * (len(splits) + 1)]
    for name in classes + ["**all**"]:
        values = [sum(class_counts[s].values()) if name == "**all**" else class_counts[s][name] for s in splits]
        lines.append(f"| {_cell(name)} | " + " | ".join(str(v) for v in values) + f" | {sum(values)} |")

    optimizer = str(options["optimizer"])
    if optimizer == "sgdm":
        optimizer += f" (momentum {options['momentum']})"
    lines += ["", "## Training", ""]
    lines += [
        f"- init: {init}",
        f"- epochs: {options['max_epochs']} (run: {len(history)}), mini-batch {options['batch_size']}, "
        f"learn rate {options['learn_rate']:g}, optimizer {optimizer}, schedule {options['lr_schedule']}, L2 {options['l2']:g}",
        f"- image size: {options['image_size']}x{options['image_size']}, seed {options['seed']}",
    ]
    if options.get("face_crop", "none") != "none":
        kept = "kept whole" if options.get("if_no_face") == "whole" else "left out"
        lines.append(
            f"- face crops: every photo cropped to its largest face ({Path(str(options['face_crop'])).name} detector, margin {options['face_margin']:g}); "
            f"photos without a face {kept}, listed by name in `manifest.json` (`no_face`)"
        )
    best = next((row for row in history if int(row["epoch"]) == best_epoch), None)
    if best is not None:
        lines.append(
            f"- best epoch: {best_epoch} (lowest validation loss {best['val_loss']:.4f}, "
            f"validation accuracy {best['val_accuracy'] * 100:.2f}%); its checkpoint is `best.pt`"
        )
    else:
        lines.append(f"- best epoch: {best_epoch}")
    lines.append(f"- wall time: {hms(wall_time_s)} ({wall_time_s:.1f} s)")

    lines += ["", "## Test split", ""]
    if test_report is None:
        lines.append("No test split in this run: no test accuracy.")
    else:
        lines.append(f"Test accuracy: **{test_report['accuracy'] * 100:.2f}%** on {test_report['n']} images (model of the best epoch).")
        lines += ["", "| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
        for name, m in test_report["per_class"].items():
            lines.append(f"| {_cell(name)} | {m['precision'] * 100:.1f}% | {m['recall'] * 100:.1f}% | {m['f1'] * 100:.1f}% | {m['support']} |")

    titles = {PROGRESS_PNG: "training progress", CONFUSION_PNG: "confusion matrix (test split)", PREDICTIONS_PNG: "test predictions, wrong ones first"}
    lines += ["", "## Figures", ""]
    lines += [f"- [{titles.get(f, f)}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def write_summary_markdown(dest: Path, **fields: Any) -> None:
    """`summary_markdown(**fields)` written atomically to `dest`."""
    write_text_atomic(dest, summary_markdown(**fields))


# --- everything, for run_training ------------------------------------------------------------


def write_run_reports(
    run_dir: Path,
    *,
    data: Sequence[str],
    class_names: Sequence[str],
    splits: Mapping[str, Sequence[Sample]],
    spec: PreprocessSpec,
    init: str,
    options: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    best_epoch: int,
    test: "EvalResult | None",
    test_report: Mapping[str, Any] | None,
    wall_time_s: float,
) -> list[Path]:
    """Write the figures and summary.md into `run_dir`; returns the paths written.

    Without a test split (`test` None) only the progress plot and the summary are written.
    `test` must come from evaluating `splits["test"]` in order (an unshuffled loader).
    """
    written = []
    plot_training_progress(history, best_epoch, run_dir / PROGRESS_PNG)
    written.append(run_dir / PROGRESS_PNG)
    if test is not None and test_report is not None:
        plot_confusion_matrix(test_report, run_dir / CONFUSION_PNG)
        written.append(run_dir / CONFUSION_PNG)
        samples = splits["test"]
        if [s.label for s in samples] != [int(y) for y in test.labels]:
            raise ValueError("the test evaluation's labels are not in the order of splits['test'] (was the loader shuffled?)")
        predictions = predictions_from_probabilities([s.path for s in samples], test.labels, test.probabilities)
        if predictions:
            plot_test_predictions(order_for_grid(predictions), class_names, spec, run_dir / PREDICTIONS_PNG)
            written.append(run_dir / PREDICTIONS_PNG)
    write_summary_markdown(
        run_dir / SUMMARY_MD,
        data=data,
        class_counts=split_class_counts(splits, class_names),
        init=init,
        options=options,
        history=history,
        best_epoch=best_epoch,
        test_report=test_report,
        wall_time_s=wall_time_s,
        figures=[p.name for p in written],
    )
    written.append(run_dir / SUMMARY_MD)
    return written
