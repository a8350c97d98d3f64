"""The report's figures: reliability diagrams and accuracy-coverage curves, as PNG files.

matplotlib is optional on a device: without it no figure is drawn and `write_plots` returns
a one-line note instead. `matplotlib.figure.Figure` is used directly (no pyplot): no GUI
backend, nothing global.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from gclf.runtime.atomic import write_atomic_with
from gclf.runtime.evaluation.reliability import Reliability
from gclf.runtime.evaluation.summary import Evaluation

RELIABILITY_PNG = "reliability.png"
COVERAGE_PNG = "coverage.png"
DPI = 100
NO_MATPLOTLIB = "no figures: matplotlib is not installed (pip install matplotlib for reliability.png and coverage.png)"


def _bars(ax, rel: Reliability, title: str) -> None:
    filled = [b for b in rel.bins if b.n]
    width = rel.bins[0].high - rel.bins[0].low if rel.bins else 1.0
    ax.bar([b.low for b in filled], [b.accuracy for b in filled], width=width, align="edge", color="#1f77b4", edgecolor="white", label="share right")
    ax.plot([b.mean_confidence for b in filled], [b.mean_confidence for b in filled], "o", color="#c00000", markersize=3, label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="#888888", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_title(f"{title}\nECE {rel.ece:.3f}, n {rel.n}", fontsize=9)


def plot_reliability(columns: Sequence[tuple[str, Evaluation]], dest: Path) -> None:
    """One row per evaluation: all answers, then the answers naming each class."""
    from matplotlib.figure import Figure

    n_classes = len(columns[0][1].outcomes.class_names)
    fig = Figure(figsize=(3.2 * (1 + n_classes), 3.4 * len(columns)), layout="constrained")
    axes = fig.subplots(len(columns), 1 + n_classes, squeeze=False)
    for row, (heading, ev) in enumerate(columns):
        _bars(axes[row][0], ev.reliability, f"{heading}: all answers")
        for k, (name, rel) in enumerate(ev.reliability_per_answer.items(), start=1):
            _bars(axes[row][k], rel, f"answers {name!r}")
        axes[row][0].set_ylabel("share right")
    axes[0][0].legend(loc="upper left", fontsize=8)
    write_atomic_with(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def plot_coverage(columns: Sequence[tuple[str, Evaluation]], dest: Path) -> None:
    """Accuracy of the answers given against the share answered, one line per evaluation."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.subplots()
    for heading, ev in columns:
        ax.plot([100 * p.coverage for p in ev.curve], [100 * p.accuracy.value for p in ev.curve], label=heading)
    ax.set_xlabel("answered (% of photos with an answer, most confident first)")
    ax.set_ylabel("accuracy of the answers (%)")
    ax.set_xlim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    write_atomic_with(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def write_plots(columns: Sequence[tuple[str, Evaluation]], folder: Path) -> tuple[list[Path], str | None]:
    """Draw both figures into `folder`: (files written, None), or ([], a note) without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], NO_MATPLOTLIB
    files = [folder / RELIABILITY_PNG, folder / COVERAGE_PNG]
    plot_reliability(columns, files[0])
    plot_coverage(columns, files[1])
    return files, None
