"""`Log`: how gclf's library functions report progress, one line at a time.

A function that has something to tell the user takes `log: Log` (default `print`), so a
command prints, a test collects the lines in a list, and a rank of a distributed run other
than rank 0 passes a function that drops them. Defined here, in the runtime, so that every
layer (runtime, train, export, studies) can name the one type.
"""

from __future__ import annotations

from typing import Callable

Log = Callable[[str], None]
