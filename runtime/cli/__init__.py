"""The `gclf-infer` command: options, the files job, the live job, `--check`.

- `infer`: the click command itself (options, and which job they ask for).
- `files_job`, `live_job`: each job set up from validated options and run.
- `preflight`: `--check`, a device's preflight.
- `params`, `support`: click parameter types; one-sentence errors and exit codes.

The only package of the runtime that imports click; it may import everything below it
(core, faces, live, serve). gclf-train and gclf-export reuse `support` and `params`.
`main` is looked up on first use, so that importing `gclf.runtime.cli.support` does not
load the whole command.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "main":
        from gclf.runtime.cli.infer import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
