"""Classification metrics from labels and predictions (numpy only)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> dict:
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    total = int(cm.sum())
    per_class = {}
    for i, name in enumerate(class_names):
        tp = int(cm[i, i])
        predicted, actual = int(cm[:, i].sum()), int(cm[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    return {
        "n": total,
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "per_class": per_class,
        "confusion_matrix": {"labels": list(class_names), "rows_true_cols_predicted": cm.tolist()},
    }


def format_report(report: dict) -> str:
    """A few lines for the terminal: accuracy, per-class precision/recall, confusion matrix."""
    names = report["confusion_matrix"]["labels"]
    width = max(8, *(len(n) for n in names))
    lines = [f"accuracy {report['accuracy'] * 100:.2f}% on {report['n']} images"]
    lines.append(f"  {'class':<{width}}  precision  recall  support")
    for name, m in report["per_class"].items():
        lines.append(f"  {name:<{width}}  {m['precision'] * 100:8.2f}%  {m['recall'] * 100:5.1f}%  {m['support']:7d}")
    lines.append(f"  confusion (rows true, columns predicted): {' '.join(f'{n:>{width}}' for n in names)}")
    for name, row in zip(names, report["confusion_matrix"]["rows_true_cols_predicted"]):
        lines.append(f"  {name:>{width + 41}} {' '.join(f'{v:>{width}d}' for v in row)}")
    return "\n".join(lines)
