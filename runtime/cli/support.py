"""What every gclf command shares: user errors become one sentence and an exit code.

Commands raise `GclfError`s (or return an exit status, for outcomes that are not errors,
such as "some images were skipped"); this is the one place that turns them into
`error: ...` on stderr and the process's exit code.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

import click

from gclf.runtime.errors import EXIT_INTERRUPTED, GclfError
from gclf.runtime.log import warn

__all__ = ["exit_with", "report_errors", "warn"]

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
            exit_with(exc)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if isinstance(status, int) and status:
            sys.exit(status)
        return status

    return wrapper  # type: ignore[return-value]


def exit_with(exc: GclfError) -> None:
    """`error: <message>` on stderr and the error's exit code: for errors met outside a
    command's body (an option's callback, while click parses)."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)
