"""Errors a user can cause, and the exit code each one ends a command with.

Every failure that is the user's (a bad option, a bad file, a diverged training) is a
`GclfError` with a sentence for the user; the CLIs print that sentence and exit with the
error's code instead of a traceback. The codes are documented in the README.
"""

from __future__ import annotations

# Distinct exit codes, so scripts can tell failures apart. 2 is click's own usage code.
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_DATA = 3
EXIT_DIVERGED = 4
EXIT_PARTIAL = 5
EXIT_BAD_MODEL = 6
EXIT_WEIGHTS_UNAVAILABLE = 7
EXIT_MISSING_DEPENDENCY = 8
EXIT_QUALITY_GATE = 9
EXIT_EXPORT_CHECK = 10
EXIT_WRITE_FAILED = 11
EXIT_INTERRUPTED = 130


class GclfError(Exception):
    """A failure with a message meant for the user and the exit code to end with."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(GclfError):
    exit_code = EXIT_USAGE


class BadDataError(GclfError):
    """The data folder cannot be used (no classes, an empty class, ...)."""

    exit_code = EXIT_BAD_DATA


class ImageDecodeError(GclfError):
    """One image file cannot be read; callers report it by name and go on."""

    exit_code = EXIT_BAD_DATA


class BadModelError(GclfError):
    """A model file that is not a usable gclf model (not ONNX, no or wrong metadata)."""

    exit_code = EXIT_BAD_MODEL


class TrainingDivergedError(GclfError):
    exit_code = EXIT_DIVERGED


class WeightsUnavailableError(GclfError):
    exit_code = EXIT_WEIGHTS_UNAVAILABLE


class MissingDependencyError(GclfError):
    exit_code = EXIT_MISSING_DEPENDENCY


class QualityGateError(GclfError):
    exit_code = EXIT_QUALITY_GATE


class ExportCheckError(GclfError):
    """An exported model failed its own verification (e.g. ONNX disagrees with PyTorch)."""

    exit_code = EXIT_EXPORT_CHECK


class OutputWriteError(GclfError):
    """A file could not be written (read-only folder, full disk, ...); the previous file is kept."""

    exit_code = EXIT_WRITE_FAILED
