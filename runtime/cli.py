"""`gclf-infer`: classify image files and folders with a gclf ONNX model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gclf.runtime.cli_support import report_errors
from gclf.runtime.errors import EXIT_BAD_DATA, EXIT_PARTIAL


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Images per inference call.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="onnxruntime intra-op threads (0: one per core).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image instead of a table.")
@report_errors
def main(model: Path, paths: tuple[Path, ...], batch_size: int, threads: int, as_json: bool) -> None:
    """Classify image files and folders (searched recursively) with MODEL.

    Unreadable files are reported by name on stderr and skipped. Exit code 0: all images
    classified; 5: some could not be read; 3: none could.
    """
    # Imported here so that `gclf-infer --help` stays fast (no onnxruntime import).
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.files import expand_inputs

    files = expand_inputs(list(paths))
    if not files:
        click.echo("error: no image files found in " + ", ".join(map(str, paths)), err=True)
        sys.exit(EXIT_BAD_DATA)
    clf = Classifier(model, threads=threads or None)
    n_ok = n_failed = 0
    width = max(len(str(f)) for f in files)
    if not as_json:
        click.echo(f"{'image':<{width}}  {'label':<16} confidence")
    for result in clf.classify_files(files, batch_size=batch_size):
        if result.prediction is None:
            n_failed += 1
            click.echo(f"skipped: {result.error}", err=True)
            continue
        n_ok += 1
        pred = result.prediction
        if as_json:
            record = {
                "path": str(result.path),
                "label": pred.label,
                "confidence": round(pred.confidence, 6),
                "probabilities": {c: round(p, 6) for c, p in zip(clf.class_names, pred.probabilities)},
            }
            click.echo(json.dumps(record))
        else:
            click.echo(f"{str(result.path):<{width}}  {pred.label:<16} {pred.confidence:.3f}")
    click.echo(f"{n_ok} classified, {n_failed} skipped ({clf.metadata.variant} model {model.name})", err=True)
    if n_failed:
        sys.exit(EXIT_PARTIAL if n_ok else EXIT_BAD_DATA)


if __name__ == "__main__":
    main()
