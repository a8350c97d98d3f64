"""How gclf's library functions talk to the user: `Log` for progress, `warn` for trouble.

A function that has something to tell the user takes `log: Log` (default `print`), so a
command prints, a test collects the lines in a list, and a rank of a distributed run other
than rank 0 passes a function that drops them. Defined here, in the runtime, so that every
layer (runtime, train, export, studies) can name the one type.

`warn` writes one `warning: ...` line on stderr: what a library function says when it goes
on despite something the user should know (a detector file that is not the recorded one). It
is plain stderr, not click's, so that library code needs no command-line framework.
"""

from __future__ import annotations

import sys
from typing import Callable

Log = Callable[[str], None]


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
