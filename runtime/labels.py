"""The label gclf reserves for itself: `UNSURE`, the answer whose top confidence is below the
run's threshold (gclf.runtime.threshold). No class may be called that, in any case: training
refuses such a class folder and the runtime such a model.

Dependency-free on purpose: the live loop's tracker and counts (pure Python) use it too.
"""

from __future__ import annotations

UNSURE = "unsure"


def is_unsure(name: object) -> bool:
    """Whether a class name is the reserved `UNSURE`, in any case ("Unsure", "UNSURE")."""
    return isinstance(name, str) and name.strip().casefold() == UNSURE
