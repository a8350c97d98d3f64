"""The hint for a missing extra works the way gclf is installed: from a checkout or a wheel.

gclf is not on a package index, so `pip install "gclf[serve]"` finds nothing; the hint names
the checkout form and the wheel `pip wheel` makes, with this version."""

from __future__ import annotations

import re
from importlib.metadata import version

from gclf.runtime.errors import install_hint
from gclf_testutil import REPO


def test_the_hint_names_the_checkout_and_this_versions_wheel() -> None:
    hint = install_hint("serve")

    assert 'pip install ".[serve]"' in hint
    assert f'"gclf-{version("gclf")}-py3-none-any.whl[serve]"' in hint
    assert 'pip install "gclf[' not in hint


def test_the_wheel_name_is_the_one_pyproject_makes() -> None:
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), flags=re.M)
    assert declared is not None and declared.group(1) == version("gclf")
