"""The live runtime runs on a device without torch, torchvision or onnx, like the rest of gclf.runtime.

The CLI imports the live modules only when --camera/--video is given, so the runtime's own
torch-free test does not reach them; this one runs a live video in a fresh interpreter where
the heavy packages look uninstalled.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gclf_testutil import BLOCK, BLUE_BGR, HEAVY, RED_BGR, write_video

SCRIPT = r"""
import json, sys
{block}
import gclf.runtime.faces, gclf.runtime.live, gclf.runtime.live.sources
from click.testing import CliRunner
from gclf.runtime.cli.infer import main

run = CliRunner().invoke(main, [sys.argv[1], "--video", sys.argv[2], "--headless"])
print(json.dumps({{
    "run": [run.exit_code, run.stdout, run.stderr, repr(run.exception)],
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r}),
}}))
"""


def test_the_live_loop_runs_with_torch_and_onnx_uninstalled(tmp_path: Path, tiny_onnx) -> None:
    video = write_video(tmp_path / "rb.avi", [RED_BGR, BLUE_BGR])
    code = SCRIPT.format(block=BLOCK.format(heavy=HEAVY), heavy=HEAVY)

    proc = subprocess.run([sys.executable, "-c", code, str(tiny_onnx()), str(video)], capture_output=True, text=True, timeout=120)

    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    exit_code, stdout, stderr, exception = report["run"]
    assert exit_code == 0, (stderr, exception)
    assert [json.loads(line)["faces"][0]["label"] for line in stdout.splitlines()] == ["red", "blue"]
    assert report["loaded"] == []
