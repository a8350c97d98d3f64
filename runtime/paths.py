"""`gclf_home()`: the one folder gclf keeps its caches in.

`$GCLF_HOME`, defaulting to `$XDG_CACHE_HOME/gclf` (~/.cache/gclf): downloaded face models
(gclf.runtime.faces.models, `face_models/`) and training's decoded-image cache (`images/`)
live under it.
"""

from __future__ import annotations

import os
from pathlib import Path


def gclf_home() -> Path:
    home = os.environ.get("GCLF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(xdg, "gclf")
    return Path(home)
