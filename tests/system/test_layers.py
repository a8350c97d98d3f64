"""The layers hold: studies > export > train > runtime, the runtime never imports torch or onnx,
and inside the runtime the core, faces, live loop, browser view and command keep their rules.

The contracts live in pyproject.toml ([tool.importlinter]) and are checked here with
import-linter on a copy of the installed packages (the editable install's `gclf` is a path
hook that import-linter cannot walk, and the copy lets a test add a wrong arrow on purpose).
import-linter sees `import` statements only, so a grep of runtime/ catches the string
imports (importlib.import_module("gclf.export...")) it would miss.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gclf_testutil import REPO

PACKAGES = ("runtime", "train", "export", "studies")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(f"gclf.{name}")
    assert spec is not None and spec.submodule_search_locations, f"gclf.{name} is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tmp/gclf/<package>/*.py, the installed sources; gclf/__init__.py makes it a regular
    package, found before the installed namespace package."""
    root = tmp_path_factory.mktemp("layers")
    for name in PACKAGES:
        shutil.copytree(_package_dir(name), root / "gclf" / name, ignore=shutil.ignore_patterns("__pycache__", "*.html"))
    (root / "gclf" / "__init__.py").write_text("")
    return root


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(REPO / 'pyproject.toml')!r}, no_cache=True, no_logo=True))"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300)


def test_the_layers_contracts_hold(source_copy: Path) -> None:
    done = lint(source_copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 13 kept, 0 broken." in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("train/_wrong_arrow.py", "import gclf.export.pipeline", "studies > export > train > runtime"),
        ("runtime/_wrong_arrow.py", "from gclf.studies import quickstart", "studies > export > train > runtime"),
        ("runtime/_wrong_arrow.py", "import torch", "the runtime installs without torch or onnx"),
        ("runtime/faces/crops.py", "import gclf.runtime.live.loop", "runtime: command > browser view, MQTT > live loop > faces"),
        ("runtime/live/sinks.py", "import gclf.runtime.serve.sink", "runtime: command > browser view, MQTT > live loop > faces"),
        ("runtime/classifier.py", "from gclf.runtime.cli import support", "runtime: the core imports neither the live loop, the browser view, the command nor evaluation"),
        ("runtime/metadata.py", "import gclf.runtime.live.frames", "runtime: the core imports neither the live loop, the browser view, the command nor evaluation"),
        ("runtime/calibration.py", "import gclf.runtime.evaluation.reliability", "runtime: the core imports neither the live loop, the browser view, the command nor evaluation"),
        ("runtime/evaluation/run.py", "import gclf.runtime.cli.support", "runtime: evaluation imports neither the live loop, the browser view nor the command"),
        ("runtime/evaluation/report.py", "import click", "runtime: only the command imports click"),
        ("runtime/faces/choice.py", "import gclf.runtime.classifier", "runtime: faces import neither the classifier nor the model's metadata"),
        ("runtime/live/sinks.py", "import click", "runtime: only the command imports click"),
        ("runtime/serve/sink.py", "import gclf.runtime.mqtt.sink", "runtime: command > browser view, MQTT > live loop > faces"),
        ("runtime/live/loop.py", "import paho.mqtt.client", "runtime: only the MQTT package imports paho"),
        ("runtime/serve/sink.py", "import tornado", "runtime: only the browser view's server imports tornado"),
        ("runtime/live/loop.py", "import picamera2", "runtime: only the Pi camera's module imports picamera2"),
        ("runtime/live/people.py", "import gclf.runtime.live.loop", "runtime: no cycles, between packages or modules"),
        ("runtime/classifier.py", "import openvino", "runtime: only the OpenVINO engine imports openvino"),
        ("runtime/live/loop.py", "import openvino", "runtime: only the OpenVINO engine imports openvino"),
        ("runtime/openvino/engine.py", "import gclf.runtime.classifier", "runtime: the OpenVINO engine imports only the flat core"),
    ],
)
def test_a_wrong_arrow_breaks_a_contract(source_copy: Path, module: str, line: str, contract: str) -> None:
    """Each contract fails on an import that breaks its rule, added to a copy of the code (a new
    module, or the last line of an existing one)."""
    path = source_copy / "gclf" / module
    before = path.read_text() if path.exists() else None
    path.write_text((before or "") + "\n" + line + "\n")
    try:
        done = lint(source_copy)
    finally:
        if before is None:
            path.unlink()
        else:
            path.write_text(before)
    assert done.returncode != 0
    # import-linter wraps long lines: compare with the whitespace evened out.
    assert f"{contract} BROKEN" in " ".join(done.stdout.split()), done.stdout + done.stderr


def test_no_module_imports_a_private_name_of_another() -> None:
    """A leading underscore means "this module's own": another module that needs it needs a
    public name (import-linter sees modules, not names, so this is a grep)."""
    private = re.compile(r"^\s*from gclf\.[\w.]+ import .*\b_[a-z]\w*|^\s*import gclf\.[\w.]*\._[a-z]")
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if private.search(line)
    ]
    assert found == []


def test_the_runtime_does_not_name_training_or_export_even_in_a_string() -> None:
    # `gclf.training` is a metadata key, not the package: \b leaves it out.
    named = re.compile(r"gclf\.(train|export)\b")
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sorted((REPO / "runtime").rglob("*"))
        if path.is_file() and path.suffix in (".py", ".html")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if named.search(line)
    ]
    assert found == []
