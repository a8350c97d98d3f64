"""MODEL_CARD.md: what a model is for, what it is not for, and how well it did, in the style of
Mitchell et al.'s "Model Cards for Model Reporting" and Hugging Face's model cards.

Every figure on the card is read from the model files themselves (their `metadata_props`):
`gclf.card` (what gclf-export knew of the run, `card_record`), `gclf.training`,
`gclf.quantization` (int8 parity) and `gclf.calibration`. A card can therefore be written, or
rewritten, from the files alone: by gclf-export beside a fresh export, and by
`gclf-eval --card` where a model travelled without one.

`gclf.card` (JSON object, optional, written by gclf-export into the fp32 file before its int8
copy is made, so both carry it): "format" 1; "data" {"folders": [folder names], "per_class":
{class: photos}}; "duplicates" {"groups", "files", "label_conflicts_excluded", "skipped"};
"split" {"seed", "fractions" (or null when the folders were pre-split), "sizes" {split: n},
"per_class" {split: {class: n}}}; "init" {"kind": imagenet|random|checkpoint, "description"};
"options" {gclf-train option: value}; "input_kind"; "face_detector" (null, or {"kind",
"model_file", "model_sha256", "margin"}); "test" {"accuracy", "images"} or null;
"trained_utc". Folder names only, never paths: a model file travels to devices.

The last section, "Evaluations on other data", holds one sub-section per data folder and
model, each between markers that `upsert_evaluation` finds again to replace it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gclf.runtime.evaluation.metrics import wilson_interval
from gclf.runtime.files import sha256_file
from gclf.runtime.onnx_metadata import read_metadata

KEY_CARD = "gclf.card"
CARD_FORMAT = 1
CARD_NAME = "MODEL_CARD.md"
OTHER_DATA_HEADING = "## Evaluations on other data"
NONE_YET = "_None yet. `gclf-eval MODEL DATA --card` adds one section per data folder and model here._"
RESPONSIBLE_USE = "docs/responsible-use.md"
_MARK = "<!-- gclf-eval {} -->"
_END = "<!-- /gclf-eval -->"


@dataclass(frozen=True)
class ModelFacts:
    """One model file as the card describes it: its name, sha256 and metadata."""

    name: str
    sha256: str
    props: Mapping[str, str]

    def record(self, key: str) -> dict | None:
        """The JSON object stored under `key`, or None (absent, or not a JSON object)."""
        try:
            value = json.loads(self.props[key])
        except (KeyError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def class_names(self) -> list[str]:
        try:
            names = json.loads(self.props.get("gclf.class_names", "[]"))
        except ValueError:
            return []
        return [str(n) for n in names] if isinstance(names, list) else []


def read_model_facts(path: Path) -> ModelFacts:
    """Name, sha256 and metadata of a model file (BadModelError when it is no ONNX file)."""
    return ModelFacts(Path(path).name, sha256_file(path), read_metadata(Path(path)))


def render_card(fp32: ModelFacts, int8: ModelFacts | None = None, *, bundled_detector: bool | None = None) -> str:
    """The whole card for `fp32` (and its int8 copy), from their metadata alone."""
    card = fp32.record(KEY_CARD) or {}
    training = fp32.record("gclf.training") or {}
    parts = [
        *_front_matter(),
        f"# Model card: {fp32.name}",
        "",
        "A GoogLeNet image classifier written by gclf-export. Everything below is read from the model "
        f"{'files (their' if int8 else 'file (its'} `gclf.*` metadata), so it describes exactly {'these files' if int8 else 'this file'}. "
        "Sections follow Mitchell et al., *Model Cards for Model Reporting* (2019).",
        "",
        *_details(fp32, int8, card, training, bundled_detector),
        *_intended_use(fp32.class_names()),
        *_training_data(card),
        *_evaluation(fp32, int8, card, training),
        OTHER_DATA_HEADING,
        "",
        NONE_YET,
        "",
    ]
    return "\n".join(parts)


def _front_matter() -> list[str]:
    """Hugging Face's model-card metadata block (YAML between --- lines), read by hubs."""
    return ["---", "library_name: onnx", "pipeline_tag: image-classification", "tags: [gclf, googlenet, onnx]", "metrics: [accuracy]", "---", ""]


def _details(fp32: ModelFacts, int8: ModelFacts | None, card: dict, training: dict, bundled: bool | None) -> list[str]:
    names = fp32.class_names()
    preprocess = _json(fp32.props.get("gclf.preprocess"))
    size = f"{preprocess.get('input_width')}x{preprocess.get('input_height')} px" if preprocess else "not recorded"
    kind = card.get("input_kind") or training.get("input_kind") or "not recorded"
    init = card.get("init") or {}
    lines = [
        "## Model details",
        "",
        f"- Architecture: GoogLeNet (Inception v1), {len(names)} classes in output order: {', '.join(f'`{n}`' for n in names)}",
        f"- Files: `{fp32.name}` ({fp32.props.get('gclf.variant', 'fp32')}, sha256 `{fp32.sha256}`)"
        + (f"; `{int8.name}` (int8 QDQ, sha256 `{int8.sha256}`)" if int8 else ""),
        f"- Input: {'face crops' if kind == 'faces' else 'whole images' if kind == 'whole_image' else kind}, {size}",
        f"- Initialisation: {_init(init, training)}",
        f"- Training options: {_options(card.get('options') or {})}",
    ]
    detector = card.get("face_detector") or training.get("face_crop")
    if kind == "faces":
        lines.append(f"- Face detector: {_detector(detector, bundled)}")
    if card.get("trained_utc"):
        lines.append(f"- Trained: {card['trained_utc']}")
    return lines + [""]


def _init(init: dict, training: dict) -> str:
    kind = init.get("kind", "not recorded")
    description = init.get("description") or training.get("init")
    return f"{kind} ({description})" if description and kind not in ("random", description) else kind


def _detector(detector: dict | None, bundled: bool | None) -> str:
    if not detector:
        return ("none recorded: the runtime finds faces with YuNet where it is cached, else OpenCV's Haar cascade, "
                "which finds far fewer faces than the detector a faces model is usually trained with")
    text = f"{detector.get('kind')} `{detector.get('model_file')}` (sha256 `{detector.get('model_sha256')}`), margin {detector.get('margin')}"
    if detector.get("kind") == "haar":
        return text + "; the cascade ships with OpenCV"
    if bundled is None:
        return text + "; the runtime looks for it beside the model, then in gclf's face-model cache"
    return text + ("; a copy lies beside the model: copy the whole folder to a device" if bundled else "; NOT beside the model: copy it there before deploying")


def _options(options: Mapping[str, Any]) -> str:
    if not options:
        return "not recorded"
    return ", ".join(f"{k} {v}" for k, v in options.items())


def _intended_use(classes: list[str]) -> list[str]:
    labels = " / ".join(f"`{c}`" for c in classes) or "its classes"
    return [
        "## Intended use",
        "",
        f"Counting, in aggregate, how the people in view of a camera present ({labels}), by a camera owner "
        "who has told those people that the camera is there, what it counts and what is kept "
        f"(see gclf's {RESPONSIBLE_USE}). The answer is a count over many people, never a fact about one.",
        "",
        "## Out-of-scope uses",
        "",
        "- The label is **perceived presentation**, how a face looks to a model trained on labelled photos. "
        "It is not anyone's gender identity and must not be reported as such.",
        "- Not for children: the label is not meant for them, and the training photos may hold few or none.",
        "- Not for identifying, tracking or recognising individuals.",
        "- Not on people who were not told that a camera is there.",
        "- Not for any decision about a person (access, service, treatment, security, hiring, advertising to them).",
        "",
    ]


def _training_data(card: dict) -> list[str]:
    lines = ["## Training data", ""]
    data = card.get("data")
    if not data:
        return lines + ["Not recorded in the model file (exported before gclf wrote `gclf.card`, or without the run's manifest).", ""]
    lines.append(f"- Data folders: {', '.join(f'`{f}`' for f in data.get('folders', [])) or 'not recorded'}")
    lines.append(f"- Photos per class: {_counts(data.get('per_class'))}")
    dup = card.get("duplicates") or {}
    if dup:
        lines.append(
            f"- Identical files: {dup.get('groups', 0)} group(s), {dup.get('files', 0)} files, each group kept inside one split; "
            f"photos under two labels left out: {dup.get('label_conflicts_excluded', 0)}; unreadable files skipped: {dup.get('skipped', 0)}"
        )
    split = card.get("split") or {}
    if split:
        how = "the folders' own train/val/test" if split.get("fractions") is None else _counts(split.get("fractions"))
        lines.append(f"- Split ({how}, seed {split.get('seed')}): {_counts(split.get('sizes'))}")
        for name, counts in (split.get("per_class") or {}).items():
            lines.append(f"  - {name}: {_counts(counts)}")
    return lines + [""]


def _counts(counts: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (counts or {}).items()) or "not recorded"


def _json(text: str | None) -> dict:
    try:
        value = json.loads(text or "")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _evaluation(fp32: ModelFacts, int8: ModelFacts | None, card: dict, training: dict) -> list[str]:
    lines = ["## Evaluation", ""]
    test = card.get("test") or ({"accuracy": training["test_accuracy"], "images": training.get("test_images")} if "test_accuracy" in training else None)
    if test and test.get("images"):
        lines.append(f"- Test split (held out from the training data's own sources): accuracy {_with_interval(test['accuracy'], int(test['images']))}")
    else:
        lines.append("- Test split: not recorded (the run had no test split, or the model predates the record)")
    for facts in (fp32, int8):
        if facts is not None and facts.props.get("gclf.variant") == "int8":
            lines.extend(_int8_lines(facts))
    for facts in (fp32, int8):
        if facts is not None and facts.record("gclf.calibration"):
            lines.append(_calibration_line(facts))
        if facts is not None and facts.record("gclf.decision"):
            lines.append(_decision_line(facts))
    lines += [
        "",
        "The test split comes from the same folders as the training photos: photos of other people, other cameras "
        "and other light usually score lower, and errors concentrate in some groups of people. Measure on your own "
        "labelled photos with `gclf-eval MODEL DATA --groups ... --card` before relying on the counts.",
        "",
    ]
    return lines


def _with_interval(accuracy: float, n: int) -> str:
    k = round(accuracy * n)
    low, high = wilson_interval(k, n)
    return f"{100 * accuracy:.1f}% ({k}/{n} photos, Wilson 95% interval {100 * low:.1f}-{100 * high:.1f}%)"


def _int8_lines(int8: ModelFacts) -> list[str]:
    q = int8.record("gclf.quantization") or {}
    if "top1_agreement" not in q:
        return [f"- int8 copy `{int8.name}`: no parity record"]
    gate = q.get("gate") or {}
    verdict = "passed" if gate.get("passed") else ("FAILED, written with --force" if gate.get("forced") else "not recorded")
    return [
        f"- int8 copy `{int8.name}` against its fp32 parent (sha256 `{q.get('parent_sha256')}`) on {q.get('images')} "
        f"{q.get('parity_split', 'test')} images, {q.get('parity_cpu_class')} CPU: top-1 agreement {100 * q['top1_agreement']:.2f}%, "
        f"accuracy fp32 {100 * q.get('fp32_accuracy', float('nan')):.2f}% / int8 {100 * q.get('int8_accuracy', float('nan')):.2f}%; "
        f"parity gate {verdict}" + (f" ({gate['remedy']})" if gate.get("remedy") else "")
    ]


def _calibration_line(facts: ModelFacts) -> str:
    cal = facts.record("gclf.calibration") or {}
    params = ", ".join(f"{k} {v}" for k, v in (cal.get("parameters") or {}).items())
    fitted = (cal.get("fitted_on") or {}).get("description", "not recorded")
    figures = cal.get("fit_figures") or {}
    ece = f"; ECE on the fit part {figures['ece_before']:.4f} -> {figures['ece_after']:.4f}" if {"ece_before", "ece_after"} <= figures.keys() else ""
    return f"- Calibration recorded in `{facts.name}`: {cal.get('method')} ({params}), fitted on {fitted}{ece}"


def _decision_line(facts: ModelFacts) -> str:
    d = facts.record("gclf.decision") or {}
    if not d.get("min_confidence"):
        return (f"- Decision threshold recorded in `{facts.name}`: none needed on {d.get('chosen_on')} ({d.get('photos')} photos: "
                f"every answer together was right {100 * d.get('accuracy', float('nan')):.1f}% of the time); every answer is given unless `--min-confidence P` says otherwise")
    return (f"- Decision threshold recorded in `{facts.name}`: answers below confidence {d['min_confidence']:.3f} are `unsure`; on {d.get('chosen_on')} "
            f"({d.get('photos')} photos) it answered {100 * d.get('coverage', float('nan')):.1f}% of them, right {100 * d.get('accuracy', float('nan')):.1f}% of the time")


# --- "Evaluations on other data": one sub-section per data folder and model --------------------


def section_marker(data_name: str, model_name: str) -> str:
    """The comment that opens the section of `data_name` evaluated with `model_name`."""
    key = json.dumps({"data": data_name, "model": model_name}, sort_keys=True).replace(">", "\\u003e")
    return _MARK.format(key)


def upsert_evaluation(card_text: str, data_name: str, model_name: str, section: str) -> str:
    """`card_text` with `section` as the evaluation of `data_name` by `model_name`: in place of a
    previous one for the same pair, else at the end of "Evaluations on other data" (the
    heading is added where a card lacks it). Everything else is kept as it was."""
    block = f"{section_marker(data_name, model_name)}\n{section.strip()}\n{_END}\n"
    pattern = re.compile(re.escape(section_marker(data_name, model_name)) + r".*?" + re.escape(_END) + r"\n?", re.DOTALL)
    if pattern.search(card_text):
        return pattern.sub(lambda _: block, card_text, count=1)
    text = card_text.replace(NONE_YET + "\n", "").rstrip("\n") + "\n"
    if OTHER_DATA_HEADING not in text:
        text += f"\n{OTHER_DATA_HEADING}\n"
    return text + "\n" + block
