"""What a training run shows while it runs: a progress bar per epoch (tqdm), the study's
iteration table, a line per epoch.

The study's verbose table (`--verbose`) is for logs; the bar is the default on a terminal and
stays silent when stderr is a file or a pipe, so logs never fill with carriage returns.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator, TextIO

from tqdm import tqdm

from gclf.runtime.log import Log
from gclf.train.epoch import EvalResult, StepInfo


class EpochProgressBar:
    def __init__(self, iters_per_epoch: int, max_epochs: int, stream: TextIO | None = None) -> None:
        self.iters_per_epoch = iters_per_epoch
        self.max_epochs = max_epochs
        self.stream = stream if stream is not None else sys.stderr
        self._bar: tqdm | None = None

    def step(self, s: StepInfo) -> None:
        if self._bar is None:
            self._bar = tqdm(
                total=self.iters_per_epoch, desc=f"epoch {s.epoch}/{self.max_epochs}", unit="batch",
                file=self.stream, disable=not _is_terminal(self.stream), leave=False, dynamic_ncols=True,
            )
        self._bar.set_postfix(loss=f"{s.batch_loss:.4f}", lr=f"{s.learn_rate:.2e}", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        """End this epoch's bar (the epoch's summary line follows); the next step starts a new one."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def hms(seconds: float) -> str:
    """Elapsed time as hh:mm:ss (whole seconds), the study's format."""
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class TrainingScreen:
    """What a run prints while it trains: the study's iteration table (--verbose), a bar per
    epoch (the default; shown only on a terminal) and one line per epoch."""

    def __init__(self, log: Log, *, verbose: bool, verbose_frequency: int, progress_bar: bool, iters_per_epoch: int, max_epochs: int, started: float) -> None:
        self.log = log
        self.verbose = verbose
        self.verbose_frequency = verbose_frequency
        self.max_epochs = max_epochs
        self.started = started
        self.bar = EpochProgressBar(iters_per_epoch, max_epochs) if progress_bar else None

    def table_header(self) -> None:
        if self.verbose:
            self.log(f"{'epoch':>5} {'iteration':>9} {'elapsed':>8} {'batch acc':>9} {'batch loss':>10} {'val acc':>8} {'val loss':>8} {'learn rate':>10}")

    def on_step(self, s: StepInfo) -> None:
        if self.verbose and (s.iteration == 1 or s.iteration % self.verbose_frequency == 0):
            self.log(f"{s.epoch:>5} {s.iteration:>9} {hms(s.elapsed_s):>8} {s.batch_accuracy * 100:8.2f}% {s.batch_loss:10.4f} {'':>8} {'':>8} {s.learn_rate:10.2e}")
        if self.bar is not None:
            self.bar.step(s)

    @contextlib.contextmanager
    def epoch(self) -> Iterator[None]:
        """Around an epoch's training steps: its bar ends with them, even on an error."""
        try:
            yield
        finally:
            if self.bar is not None:
                self.bar.close()

    def epoch_line(self, epoch: int, train_loss: float, train_acc: float, val: EvalResult | None, *, saved_as_best: bool) -> None:
        if val is None:
            val_text = "not validated this epoch"
        else:
            saved = "  (best so far, saved)" if saved_as_best else ""
            val_text = f"val loss {val.loss:.4f} acc {val.accuracy * 100:.1f}%{saved}"
        self.log(f"epoch {epoch}/{self.max_epochs}: train loss {train_loss:.4f} acc {train_acc * 100:.1f}% | {val_text} | {hms(time.monotonic() - self.started)}")
