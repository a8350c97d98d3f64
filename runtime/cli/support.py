"""What every gclf command shares: user errors become one sentence and an exit code.

Commands raise `GclfError`s (or return an exit status, for outcomes that are not errors,
such as "some images were skipped"); this is the one place that turns them into
`error: ...` on stderr and the process's exit code.
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Callable, TypeVar

import click

from gclf.runtime.errors import EXIT_INTERRUPTED, GclfError
from gclf.runtime.log import warn

if TYPE_CHECKING:
    from gclf.runtime.metadata import ModelMetadata

__all__ = ["report_errors", "warn", "use_face_detection"]

F = TypeVar("F", bound=Callable[..., object])


def report_errors(fn: F) -> F:
    """Turn `GclfError` into `error: <message>` on stderr and the error's exit code, and a
    non-zero int the command returns into the exit code.

    Anything else is a bug in gclf and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            status = fn(*args, **kwargs)
        except GclfError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if isinstance(status, int) and status:
            sys.exit(status)
        return status

    return wrapper  # type: ignore[return-value]


def use_face_detection(metadata: ModelMetadata, override: bool | None) -> bool:
    """Whether to detect faces: the --faces/--no-faces override, else the model's metadata."""
    from gclf.runtime.metadata import DEFAULT_INPUT_KIND  # here: gclf-train and gclf-export import this module, numpy need not load for --help

    if override is not None:
        return override
    kind = metadata.input_kind
    if kind is None:
        warn(
            f"the model does not record whether it expects face crops or whole images (no input_kind); "
            f"treating it as {DEFAULT_INPUT_KIND} (pass --faces if it was trained on faces)"
        )
        kind = DEFAULT_INPUT_KIND
    return kind == "faces"
