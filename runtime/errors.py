"""Errors a user can cause, and the exit code each one ends a command with.

Every failure that is the user's (a bad option, a bad file, a diverged training) is a
`GclfError` with a sentence for the user; the CLIs print that sentence and exit with the
error's code instead of a traceback. The codes are documented in docs/cli.md.
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
EXIT_CHECK_FAILED = 12  # gclf-infer --check found a problem (one sentence each)
EXIT_ENGINE_REFUSED = 13  # an inference engine's answers drift from the model's reference outputs on this machine
EXIT_INTERRUPTED = 130


class GclfError(Exception):
    """A failure with a message meant for the user; each subclass names its exit code.

    Messages say what is wrong with the file, folder or value, never which command-line
    option it came from: library code raises these, and the commands add the option's
    name where it helps.
    """

    exit_code: int = EXIT_USAGE


class UsageError(GclfError):
    """An invalid option or value, a missing file, an existing run folder."""

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


def install_hint(extra: str) -> str:
    """How to add an optional part of gclf: gclf is installed from a checkout or a wheel, not
    from a package index, so `pip install "gclf[extra]"` would find nothing."""
    try:
        from importlib.metadata import version

        wheel = f"gclf-{version('gclf')}-py3-none-any.whl"
    except Exception:  # not installed as a distribution (a source tree on sys.path)
        wheel = "gclf-VERSION-py3-none-any.whl"
    return f'pip install ".[{extra}]" in a gclf checkout, or pip install "{wheel}[{extra}]" with the wheel'


class QualityGateError(GclfError):
    exit_code = EXIT_QUALITY_GATE


class ExportCheckError(GclfError):
    """An exported model failed its own verification (e.g. ONNX disagrees with PyTorch)."""

    exit_code = EXIT_EXPORT_CHECK


class OutputWriteError(GclfError):
    """A file could not be written (read-only folder, full disk, ...); the previous file is kept."""

    exit_code = EXIT_WRITE_FAILED


class SourceUnavailableError(UsageError):
    """A camera that cannot be opened (wrong index, busy, no permission): a usage error, exit 2."""


class SourceLostError(GclfError):
    """A live source that stopped delivering frames mid-run (a camera unplugged): the run is partial."""

    exit_code = EXIT_PARTIAL


class EngineRefusedError(GclfError):
    """An inference engine whose answers on this machine drift from the reference outputs the
    model records (gclf.runtime.parity): refused rather than run."""

    exit_code = EXIT_ENGINE_REFUSED
