"""Evaluations as people read them: tables for the console and a Markdown report.

Several evaluations (fp32 and int8, or a model before and after calibration) are shown side
by side, one column each, over the same photos. Both renderings come from the same blocks,
so the console and the report never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from gclf.runtime.evaluation.coverage import REPORTED_COVERAGES
from gclf.runtime.evaluation.metrics import Proportion
from gclf.runtime.evaluation.summary import COVERAGE_NOTE, NO_FACE_NOTE, Evaluation

Column = tuple[str, Evaluation]  # (heading, evaluation)


@dataclass(frozen=True)
class Block:
    """One table: a title, a header row, rows of cells, and sentences under it."""

    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    notes: list[str] = field(default_factory=list)


def heading(evaluation: Evaluation) -> str:
    o = evaluation.outcomes
    return f"{o.model} ({o.variant}{', ' + o.calibration if o.calibration else ''})"


def _pct(p: Proportion) -> str:
    return p.percent()


def overview_block(columns: Sequence[Column]) -> Block:
    evs = [e for _, e in columns]
    first = evs[0]
    faces = first.outcomes.faces
    n_bins = len(first.reliability.bins)
    rows: list[tuple[str, ...]] = [("photos read", *(str(e.outcomes.n) for e in evs))]
    if faces:
        rows.append(("faces found", *(f"{e.outcomes.n - e.n_no_answer} of {e.outcomes.n}" for e in evs)))
    rows.append(("accuracy" + (" (no face = wrong)" if faces else ""), *(_pct(e.overall) for e in evs)))
    if faces:
        rows.append(("accuracy on faces found", *(_pct(e.on_answered) for e in evs)))
    for i, name in enumerate(first.outcomes.class_names):
        rows.append((f"{name}: recall", *(_pct(e.classes[i].recall) for e in evs)))
        rows.append((f"{name}: precision", *(_pct(e.classes[i].precision) for e in evs)))
        rows.append((f"{name}: F1", *(f"{e.classes[i].f1:.3f}" for e in evs)))
    rows.append((f"ECE ({n_bins} bins)", *(f"{e.reliability.ece:.4f}" for e in evs)))
    rows.append(("mean confidence / accuracy", *(f"{e.reliability.mean_confidence:.3f} / {e.reliability.accuracy:.3f}" for e in evs)))
    for name in first.outcomes.class_names:
        rows.append((f"ECE of {name!r} answers", *(f"{e.reliability_per_answer[name].ece:.4f} (n {e.reliability_per_answer[name].n})" for e in evs)))
    for target in REPORTED_COVERAGES:
        points = [e.coverage_points.get(target) for e in evs]
        cells = [f"{_pct(p.accuracy)} at {100 * p.coverage:.1f}%, conf >= {p.threshold:.3f}" if p else "-" for p in points]
        rows.append((f"most confident {100 * target:.0f}%", *cells))
    for target in first.accuracy_points:
        points = [e.accuracy_points[target] for e in evs]
        cells = [f"conf >= {p.threshold:.3f}: {100 * p.coverage:.1f}% answered, {_pct(p.accuracy)}" if p else "not reached" for p in points]
        rows.append((f"right >= {100 * target:.0f}% of the time", *cells))
    if first.min_confidence is not None:
        rows.append((
            f"answered at conf >= {first.min_confidence.threshold:g}",
            *(f"{100 * e.min_confidence.coverage:.1f}% ({e.min_confidence.answered}/{e.min_confidence.total}), right {_pct(e.min_confidence.accuracy)}" for e in evs if e.min_confidence),
        ))
    notes = [NO_FACE_NOTE, COVERAGE_NOTE] if faces else []
    notes.append(
        "intervals are Wilson 95%; \"most confident X%\": accuracy of the answers at the highest confidence threshold that answers at least X% of them; "
        "\"right >= X% of the time\": the lowest threshold whose answers reach X% on these photos (a threshold to deploy is chosen on other photos)"
    )
    if first.min_confidence is not None:
        notes.append("answers below the minimum confidence count as unsure: not answered, neither right nor wrong")
    return Block("overview", ("", *(h for h, _ in columns)), rows, notes)


def group_blocks(columns: Sequence[Column]) -> list[Block]:
    blocks = []
    evs = [e for _, e in columns]
    for t, table in enumerate(evs[0].groups):
        rows = []
        for g, figure in enumerate(table.groups):
            cells = [_pct(e.groups[t].groups[g].accuracy) + ("" if figure.ranked else " *") for e in evs]
            rows.append((figure.name, str(figure.accuracy.n), *cells))
        notes = [f"{h}: {e.groups[t].sentence()}" for h, e in columns]
        if table.too_few:
            notes.append(f"* too few to rank (fewer than {table.min_n} photos): " + ", ".join(f"{g.name} ({g.accuracy.n})" for g in table.too_few))
        if table.ungrouped:
            notes.append(f"{table.ungrouped} photo{'s' if table.ungrouped > 1 else ''} in no group of this grouping")
        blocks.append(Block(f"accuracy by {table.grouping}", ("group", "n", *(h for h, _ in columns)), rows, notes))
    return blocks


def reliability_block(columns: Sequence[Column]) -> Block:
    evs = [e for _, e in columns]
    rows = []
    for b, bin_ in enumerate(evs[0].reliability.bins):
        cells = []
        for e in evs:
            x = e.reliability.bins[b]
            cells.append(f"{x.n:>5}  {x.mean_confidence:.3f}  {x.accuracy:.3f}" if x.n else "")
        if any(cells):
            rows.append((f"{bin_.low:.3f}-{bin_.high:.3f}", *cells))
    return Block(
        "reliability (answers per confidence bin: n, mean confidence, share right)",
        ("confidence", *(h for h, _ in columns)),
        rows,
        ["a calibrated model's mean confidence equals its share right in every bin"],
    )


def confusion_blocks(columns: Sequence[Column]) -> list[Block]:
    blocks = []
    for h, e in columns:
        names = e.outcomes.class_names
        with_none = e.outcomes.faces or bool(e.confusion[:, -1].sum())
        header = ("true \\ predicted", *names, *(("no face" if e.outcomes.faces else "no answer",) if with_none else ()))
        rows = [(name, *(str(v) for v in (row if with_none else row[:-1]))) for name, row in zip(names, e.confusion.tolist())]
        blocks.append(Block(f"confusion matrix, {h}", header, rows))
    return blocks


def blocks(columns: Sequence[Column]) -> list[Block]:
    """Every table of an evaluation report, in reading order."""
    return [overview_block(columns), *group_blocks(columns), reliability_block(columns), *confusion_blocks(columns)]


def render_text(blocks_: Sequence[Block]) -> str:
    out = []
    for block in blocks_:
        out.append(block.title)
        widths = [max(len(r[i]) for r in [block.header, *block.rows]) for i in range(len(block.header))]
        for r in [block.header, *block.rows]:
            out.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        out.extend(f"  {note}" for note in block.notes)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|") or " "


def render_markdown(title: str, intro: Sequence[str], blocks_: Sequence[Block], images: Sequence[tuple[str, str]] = ()) -> str:
    """A Markdown report: `title`, intro paragraphs, the tables, and (alt text, file) images."""
    out = [f"# {title}", ""]
    for paragraph in intro:
        out += [paragraph, ""]
    out += markdown_tables(blocks_, level=2)
    for alt, name in images:
        out += [f"![{alt}]({name})", ""]
    return "\n".join(out)


def markdown_tables(blocks_: Sequence[Block], *, level: int) -> list[str]:
    """The lines of `blocks_` as Markdown tables, each under a heading of `level` (2: ##)."""
    out = []
    for block in blocks_:
        out += [f"{'#' * level} {block.title[0].upper()}{block.title[1:]}", ""]
        out.append("| " + " | ".join(_md_cell(c) for c in block.header) + " |")
        out.append("|" + "|".join(" --- " for _ in block.header) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        out.append("")
        out += [f"- {note}" for note in block.notes]
        if block.notes:
            out.append("")
    return out
