"""gclf-infer runs with the OpenCV builds the Pi guide installs, not only the newest.

On bookworm the guide's numpy pin makes pip pick opencv-python-headless 4.11, whose cv2 has
no `cv2.utils.logging` (found by the ARM check, tools/arm_check.py): `--video` and
`--camera N` ended in an AttributeError traceback there.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import cv2
from click.testing import CliRunner

from gclf.runtime.cli.infer import main
from gclf_testutil import RED_BGR, write_video


def test_a_video_runs_with_an_opencv_without_utils_logging(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    video = write_video(tmp_path / "clip.avi", [RED_BGR] * 3)
    bare = types.SimpleNamespace(**{k: v for k, v in vars(cv2.utils).items() if k != "logging"})
    monkeypatch.setattr(cv2, "utils", bare)

    result = CliRunner().invoke(main, [str(tiny_onnx()), "--video", str(video), "--headless"])

    assert result.exit_code == 0, result.output
    assert [json.loads(line)["frame"] for line in result.stdout.splitlines()] == [0, 1, 2]
