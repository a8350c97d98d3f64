"""A progress bar per training epoch (tqdm), for people watching a terminal.

The study's verbose table (`--verbose`) is for logs; the bar is the default on a terminal and
stays silent when stderr is a file or a pipe, so logs never fill with carriage returns.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from gclf.train.engine import StepInfo


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
