"""The runtime installs and runs on a Raspberry Pi: it never imports torch, torchvision or onnx.

Checked in a fresh interpreter, since this test process has long imported all three.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gclf_testutil import BLOCK, HEAVY, solid_bgr, write_image_file


SCRIPT = r"""
import json, sys
{block}
import gclf.runtime
import gclf.runtime.classifier
import gclf.runtime.cli.infer
from click.testing import CliRunner

runner = CliRunner()
help_run = runner.invoke(gclf.runtime.cli.infer.main, ["--help"])
infer_run = runner.invoke(gclf.runtime.cli.infer.main, ["--json", sys.argv[1], sys.argv[2]])
heavy = {heavy!r}
print(json.dumps({{
    "help": [help_run.exit_code, help_run.output],
    "infer": [infer_run.exit_code, infer_run.stdout, infer_run.stderr, repr(infer_run.exception)],
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in heavy),
}}))
"""



def _run_runtime(tmp_path: Path, tiny_onnx, *, block: bool) -> dict:
    model = tiny_onnx(class_names=("red", "blue"))
    image = write_image_file(tmp_path / "red.png", solid_bgr((255, 0, 0)))
    code = SCRIPT.format(block=BLOCK.format(heavy=HEAVY) if block else "", heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code, str(model), str(image)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_runtime_worked(report: dict) -> None:
    help_code, help_text = report["help"]
    assert help_code == 0 and "Classify image files and folders" in help_text
    infer_code, stdout, stderr, exception = report["infer"]
    assert infer_code == 0, (stderr, exception)
    assert json.loads(stdout.strip())["label"] == "red"


def test_runtime_and_its_cli_do_not_import_torch_or_onnx(tmp_path: Path, tiny_onnx) -> None:
    report = _run_runtime(tmp_path, tiny_onnx, block=False)

    _assert_runtime_worked(report)
    assert report["loaded"] == []


def test_runtime_classifies_with_torch_and_onnx_uninstalled(tmp_path: Path, tiny_onnx) -> None:
    report = _run_runtime(tmp_path, tiny_onnx, block=True)

    _assert_runtime_worked(report)
