"""`gclf-eval --card`: one evaluation as a section of the MODEL_CARD.md beside the model.

The section holds what a reader of the card needs to judge the model on data it was not
trained on: the date, the data folder's name and photo count, the model file's name and
sha256, and the overview (accuracy with its interval, per-class recall, ECE, coverage) and
group tables of the console report. Only MODEL_CARD.md is written: never a model file.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from gclf.runtime.atomic import write_text_atomic
from gclf.runtime.evaluation.report import group_blocks, markdown_tables, overview_block
from gclf.runtime.evaluation.summary import Evaluation
from gclf.runtime.evaluation.model_card import CARD_NAME, read_model_facts, render_card, upsert_evaluation


def evaluation_section(evaluation: Evaluation, *, data_name: str, per_class: dict[str, int], model_name: str, model_sha256: str, date: str) -> str:
    """The Markdown of one evaluation for the card's "Evaluations on other data"."""
    column = [(model_name, evaluation)]
    o = evaluation.outcomes
    counts = ", ".join(f"{name} {n}" for name, n in per_class.items())
    lines = [
        f"### `{data_name}`, `{model_name}`",
        "",
        f"- Date: {date}",
        f"- Data: folder `{data_name}`, {sum(per_class.values())} photos ({counts})" + (f", {len(o.unreadable)} unreadable" if o.unreadable else ""),
        f"- Model: `{model_name}`, sha256 `{model_sha256}`" + (f"; faces found by {o.detector}" if o.faces else ""),
        "",
        *markdown_tables([overview_block(column), *group_blocks(column)], level=4),
    ]
    return "\n".join(lines)


def add_to_card(model: Path, evaluation: Evaluation, *, data_name: str, per_class: dict[str, int]) -> Path:
    """Put `evaluation` in the MODEL_CARD.md beside `model`, replacing the section of the same
    data folder name and model file; a card is made from the model's metadata where there is
    none. Returns the card's path."""
    facts = read_model_facts(model)
    card = model.parent / CARD_NAME
    text = card.read_text(encoding="utf-8") if card.is_file() else render_card(facts)
    date = datetime.now(timezone.utc).date().isoformat()
    section = evaluation_section(evaluation, data_name=data_name, per_class=per_class, model_name=facts.name, model_sha256=facts.sha256, date=date)
    write_text_atomic(card, upsert_evaluation(text, data_name, facts.name, section))
    return card
