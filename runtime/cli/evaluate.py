"""`gclf-eval MODEL [MODEL2] DATA`: how well a model does on a labelled folder-per-class set,
overall, per class, per group, and how far its confidence can be trusted; optionally fit a
calibration on a seeded part of the set and write a calibrated copy of the model.

This module is the command line (options, output); the figures are gclf.runtime.evaluation's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import click

from gclf.runtime.cli.support import report_errors, warn
from gclf.runtime.errors import EXIT_OK, EXIT_PARTIAL, UsageError
from gclf.runtime.cli.params import FaceModelParam

if TYPE_CHECKING:
    from gclf.runtime.evaluation.fit_report import FitReport
    from gclf.runtime.evaluation.groups import Grouping
    from gclf.runtime.evaluation.report import Block, Column
    from gclf.runtime.evaluation.run import LabelledSet
    from gclf.runtime.metadata import Decision

UTKFACE = "utkface"
CALIBRATION_METHODS = ("temperature", "vector_scaling", "equal_recall")  # gclf.runtime.evaluation.calibration.METHODS, without importing numpy for --help
REPORT_MD = "report.md"
REPORT_JSON = "evaluation.json"


class GroupsParam(click.ParamType):
    """`--groups utkface|FILE.csv`: groups from UTKFace's file names, or a path,group CSV file."""

    name = "utkface|FILE.csv"

    def convert(self, value, param, ctx):
        if isinstance(value, Path) or value == UTKFACE:
            return value
        return click.Path(exists=True, dir_okay=False, path_type=Path).convert(value, param, ctx)


@dataclass(frozen=True)
class EvalOptions:
    groups: Path | str | None
    min_group_size: int
    as_json: bool
    report: Path | None
    calibrate: bool
    out: Path | None
    seed: int
    fit_share: float
    calibration_method: str
    min_confidence: float | None
    faces: bool | None
    face_model: Path | str | None
    batch_size: int
    threads: int
    card: bool = False


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=-1, required=True, metavar="MODEL [MODEL2]", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--groups", type=GroupsParam(), default=None, metavar="utkface|FILE.csv", help="Accuracy per group: utkface (race x gender and age band, from UTKFace's AGE_GENDER_RACE_... file names), or a CSV file of path,group rows (paths relative to DATA).")
@click.option("--min-group-size", type=click.IntRange(min=1), default=30, show_default=True, help="Groups with fewer photos are shown but not ranked (too few to rank).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every figure instead of tables.")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR", help=f"Write {REPORT_MD}, {REPORT_JSON} (every figure, and each photo's answer) and, where matplotlib is installed, reliability.png and coverage.png into DIR.")
@click.option("--calibrate", is_flag=True, help="Fit a calibration on a seeded part of DATA (each class split alike), report on the rest, and write a calibrated copy of MODEL to --out.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="NEW.onnx", help="With --calibrate: the calibrated copy (MODEL itself is never rewritten).")
@click.option("--seed", type=int, default=0, show_default=True, help="With --calibrate: seed of the split into fit and report parts.")
@click.option("--fit-share", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5, show_default=True, help="With --calibrate: the share of each class's photos the calibration is fitted on.")
@click.option("--calibration-method", type=click.Choice(CALIBRATION_METHODS), default="temperature", show_default=True, help="With --calibrate: the calibration written to --out (all are measured): one temperature (never changes an answer), a scale and bias per class (can move the threshold between classes), or a temperature and the per-class biases that make every class's recall equal on the fit part (closes a gap between classes, may cost a little accuracy).")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None, metavar="P", help="Count answers below confidence P as unsure: report how many are answered and how often those are right; 0: no threshold.  [default: the threshold the model records (gclf.decision), else none]")
@click.option("--faces/--no-faces", "faces", default=None, help="Detect faces and classify each photo's largest, or classify whole images. Default: what the model's metadata says it was trained on.")
@click.option("--face-model", type=FaceModelParam(), default=None, metavar="haar|yunet|PATH", help="Faces models: the face detector.  [default: the one the model was trained with, else yunet once cached, else haar]")
@click.option("--card", is_flag=True, help="Add the results as a section of the MODEL_CARD.md beside each model (made from the model's metadata where there is none), replacing that data folder's previous section for the model; model files are never rewritten.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Images per inference call.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="onnxruntime intra-op threads (0: one per core).")
@report_errors
def main(models: tuple[Path, ...], data: Path, **options) -> int:
    """Evaluate MODEL (and MODEL2, side by side: fp32 and int8) on DATA, one sub-folder per class.

    A faces model finds the faces first, as gclf-infer does; a photo's answer is its largest
    face's, and a photo without a face counts as wrong in the overall accuracy.
    """
    opts = EvalOptions(**options)
    _check_options(models, opts)
    return run_eval(list(models), data, opts)


def _check_options(models: Sequence[Path], opts: EvalOptions) -> None:
    if len(models) > 2:
        raise UsageError(f"give one or two model files, then the data folder; got {len(models)} models")
    if opts.calibrate:
        if opts.out is None:
            raise UsageError("--calibrate needs --out NEW.onnx, the calibrated copy to write")
        if len(models) != 1:
            raise UsageError("--calibrate calibrates one model; give one model file")
        if opts.out.resolve() == models[0].resolve():
            raise UsageError(f"--out {opts.out} is the model itself; a calibrated copy goes to a new file")
    elif opts.out is not None:
        raise UsageError("--out is the calibrated copy of --calibrate; add --calibrate")
    if opts.card and opts.calibrate:
        raise UsageError("--card records the model as it is, on the whole set; run it without --calibrate")


def run_eval(models: list[Path], data_root: Path, opts: EvalOptions) -> int:
    """Classify, compute, print, write; returns the exit code (5 when some files could not be read)."""
    # Imported here so that `gclf-eval --help` stays fast (no numpy, no onnxruntime).
    from gclf.runtime.atomic import check_writable_folder
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.evaluation.run import classify_set, list_labelled
    from gclf.runtime.evaluation.summary import evaluate

    for folder in ([opts.report] if opts.report else []) + ([opts.out.parent] if opts.out else []) + ([m.parent for m in models] if opts.card else []):
        check_writable_folder(folder)  # fail now, not after minutes of inference
    data = list_labelled(data_root, on_folder_error=lambda folder, reason: warn(f"{folder}: cannot read folder ({reason}); its images are left out"))
    if data.loose:
        warn(f"{len(data.loose)} image{'s' if len(data.loose) > 1 else ''} directly in {data_root} {'are' if len(data.loose) > 1 else 'is'} in no class folder and left out")
    groupings = _groupings(opts.groups, data)
    # Every model is loaded before any is run: a bad second file fails now, not after the first's minutes.
    # Measured as the runtime answers (a recorded calibration applied), but a calibration is
    # fitted on the raw logits: one fitted on calibrated answers would stack on the old one.
    classifiers = [Classifier(model, threads=opts.threads or None, min_confidence=opts.min_confidence, calibrated=not opts.calibrate) for model in models]
    for clf in classifiers:
        _say_calibration(clf, opts.calibrate)
    if len(classifiers) == 2 and classifiers[0].class_names != classifiers[1].class_names:
        raise UsageError(f"{models[0].name} and {models[1].name} have different classes; side by side needs the same ones")
    outcomes = []
    for clf in classifiers:
        click.echo(f"classifying {len(data.paths)} photos of {data_root} with {clf.path.name} ...", err=True)
        click.echo(f"{clf.path.name}: {clf.threshold.describe('--min-confidence')}", err=True)
        outcomes.append(classify_set(clf, data, faces=opts.faces, face_model=opts.face_model, batch_size=opts.batch_size))
    for path, reason in outcomes[0].unreadable:
        warn(f"skipped: {reason}")

    def evaluated(o, clf: Classifier):
        # The threshold each model answers with (given, else its recorded one); none: no line.
        threshold = clf.min_confidence if clf.threshold.active else None
        return evaluate(o, groupings=groupings, min_group=opts.min_group_size, min_confidence=threshold)

    fitted = _calibrate(models[0], data_root, outcomes[0], opts) if opts.calibrate else None
    if fitted is not None:
        fit, first = fitted[0], classifiers[0]
        evaluations = [evaluated(fit.report, first)] + [evaluated(fit.calibrated_report(m), first) for m in CALIBRATION_METHODS]
    else:
        evaluations = [evaluated(o, clf) for o, clf in zip(outcomes, classifiers)]
    _output(data, models, evaluations, fitted, opts)
    if opts.card:
        _add_to_cards(models, evaluations, data)
    return EXIT_PARTIAL if outcomes[0].unreadable else EXIT_OK


def _add_to_cards(models: list[Path], evaluations: list, data: LabelledSet) -> None:
    from gclf.runtime.evaluation.card_section import add_to_card

    for model, evaluation in zip(models, evaluations):
        card = add_to_card(model, evaluation, data_name=data.root.resolve().name, per_class=data.counts())
        click.echo(f"card: {card} (section {data.root.resolve().name}, {model.name})", err=True)


def _say_calibration(clf, fitting: bool) -> None:
    """One line on stderr: whether the answers measured are calibrated, and how."""
    recorded = clf.metadata.calibration
    if recorded is None:
        click.echo(f"{clf.path.name} records no calibration: its answers are the plain softmax", err=True)
    elif fitting:
        click.echo(f"{clf.path.name} records a calibration ({recorded.describe()}); fitting on its raw logits, the copy's replaces it", err=True)
    else:
        click.echo(f"{clf.path.name} applies its recorded calibration ({recorded.describe()}), as the runtime does", err=True)


def _groupings(groups: Path | str | None, data: LabelledSet) -> list[Grouping]:
    from gclf.runtime.evaluation.groups import csv_grouping, utkface_groupings

    if groups is None:
        return []
    if groups == UTKFACE:
        found, unnamed = utkface_groupings(list(data.paths))
        if unnamed:
            examples = ", ".join(p.name for p in unnamed[:3])
            warn(f"{len(unnamed)} photo{'s' if len(unnamed) > 1 else ''} without a UTKFace file name (e.g. {examples}) {'are' if len(unnamed) > 1 else 'is'} in no group")
        return found
    return [csv_grouping(Path(groups), data.root, list(data.paths))]


def _calibrate(model: Path, data_root: Path, outcomes, opts: EvalOptions) -> tuple[FitReport, Decision]:
    from gclf.runtime.evaluation.fit_report import decide_on_fit, fit_on_part, write_calibrated_copy
    from gclf.runtime.files import sha256_file

    fit = fit_on_part(outcomes, data_root=data_root, model_sha256=sha256_file(model), seed=opts.seed, fit_share=opts.fit_share)
    decision = decide_on_fit(fit, opts.calibration_method)
    assert opts.out is not None  # checked in _check_options
    write_calibrated_copy(model, opts.out, fit.fitted[opts.calibration_method], decision)
    return fit, decision


def _calibration_block(fit: FitReport, decision: Decision, opts: EvalOptions, report_ece: dict[str, float]) -> Block:
    from gclf.runtime.evaluation.fit_report import describe
    from gclf.runtime.evaluation.report import Block

    rows = []
    for method, cal in fit.fitted.items():
        f = cal.fit_figures
        chosen = f"written to {opts.out}" if method == opts.calibration_method else ""
        rows.append((method, describe(cal), f"{f['ece_before']:.4f} -> {f['ece_after']:.4f}", f"{report_ece['as is']:.4f} -> {report_ece[method]:.4f}", chosen))
    n_fit, n_report = fit.fit.n, fit.report.n
    return Block(
        "calibration",
        ("method", "fitted", f"ECE on the fit part ({n_fit})", f"ECE on the report part ({n_report})", ""),
        rows,
        [
            f"fitted on {fit.fit_share:.0%} of each class (seed {fit.seed}), measured on the other {n_report} photos, which nothing was fitted on; "
            "the tables below are of that report part",
            f"default decision threshold written to {opts.out}: {decision.min_confidence:.3f} (on the fit part it answers "
            f"{decision.coverage:.1%}, right {decision.accuracy:.1%} of the time; rule: {decision.rule})",
        ],
    )


def _output(data: LabelledSet, models: list[Path], evaluations: list, fitted: tuple[FitReport, Decision] | None, opts: EvalOptions) -> None:
    from gclf.runtime.evaluation.report import blocks, heading, render_markdown, render_text

    if fitted is None:
        columns: list[Column] = [(heading(e), e) for e in evaluations]
    else:  # the calibration block above the tables gives each method's parameters
        columns = list(zip((f"{models[0].name} as is (raw softmax)", *CALIBRATION_METHODS), evaluations))
    all_blocks = blocks(columns)
    calibration_json = None
    if fitted is not None:
        fit, decision = fitted
        ece = {"as is": evaluations[0].reliability.ece, **{m: e.reliability.ece for m, e in zip(CALIBRATION_METHODS, evaluations[1:])}}
        all_blocks.insert(0, _calibration_block(fit, decision, opts, ece))
        calibration_json = {
            "seed": fit.seed,
            "fit_share": fit.fit_share,
            "fit_photos": fit.fit.n,
            "report_photos": fit.report.n,
            "fitted": {m: c.to_dict() for m, c in fit.fitted.items()},
            "written": {"method": opts.calibration_method, "path": str(opts.out), "decision": decision.to_dict()},
            "note": "every evaluation is of the report part, which nothing was fitted on",
        }
    counts = ", ".join(f"{name} {n}" for name, n in data.counts().items())
    intro = f"{data.root}: {len(data.paths)} photos ({counts})"
    record = {"data": {"folder": str(data.root), "photos": len(data.paths), "per_class": data.counts()}, "evaluations": [e.to_dict() for e in evaluations], "calibration": calibration_json}
    if opts.as_json:
        click.echo(json.dumps(record, allow_nan=False))
    else:
        click.echo(intro + "\n")
        click.echo(render_text(all_blocks), nl=False)
    if opts.report is not None:
        from gclf.runtime.atomic import write_json_atomic, write_text_atomic
        from gclf.runtime.evaluation.plots import write_plots

        files, note = write_plots(columns, opts.report)
        if note:
            warn(note)
        images = [(f.stem, f.name) for f in files]
        intro_md = [intro + ", " + ", ".join(f"`{m.name}`" for m in models)] + ([note] if note else [])
        write_text_atomic(opts.report / REPORT_MD, render_markdown("Evaluation", intro_md, all_blocks, images))
        write_json_atomic(opts.report / REPORT_JSON, {**record, "evaluations": [e.to_dict(with_answers=True) for e in evaluations]})
        click.echo(f"report: {opts.report / REPORT_MD}", err=True)
