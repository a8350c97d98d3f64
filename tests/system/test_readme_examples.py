"""Every command example in the README runs as written, in order, as a new user would type it.

The README's bash blocks (all but the install commands, which .ci/run runs itself) are run on a
tiny generated photo set, with these stand-ins, each the smallest change that lets a machine
with no camera, no network and two cores run them in a test:
- `photos/`, `labelled-photos/`, `new-photos/` and `clip.mp4` are generated (two classes of
  shapes, other shapes of the same classes, a short video);
- `--camera 0` is that video in the camera's place (`--video`), `--serve 8080` a free port;
- training gets `--device cpu --image-size 32 --max-epochs 1 --batch-size 4 --weights none
  --quiet` on top (options given win over a recipe's, so a recipe runs its stages just as fast),
  and `--face-crop yunet` becomes `haar`, also for the faces recipe (no download);
- a line that opens a window must fail only at the window: this test has no display.
So a README example that names a model it never made, an option that is gone, or a faces
example on a whole-image model fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gclf.train.synthetic import make_shapes_dataset
from gclf_testutil import REPO, write_image_file

README = REPO / "README.md"
FAST_TRAINING = ["--device", "cpu", "--image-size", "32", "--max-epochs", "1", "--batch-size", "4", "--weights", "none", "--quiet"]
WINDOW_REFUSED = "cannot open a window"


def readme_commands(markdown: str) -> list[str]:
    """The command lines of the README's bash blocks, comments stripped, in order; the blocks
    .ci/run reads itself (after a `<!-- ci:... -->` marker) and install lines left out."""
    commands = []
    for marker, block in re.findall(r"(<!-- ci:[\w-]+ -->\n)?```bash\n(.*?)```", markdown, flags=re.S):
        if marker:
            continue
        for line in block.splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line and not line.startswith("#") and "pip install" not in line:
                commands.append(line)
    return commands


def _clip(path: Path, frames: int = 12) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 72))
    for i in range(frames):
        frame = np.full((72, 96, 3), 40, np.uint8)
        cv2.circle(frame, (20 + 4 * i, 36), 14, (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def stand_in(line: str, where: Path) -> list[str]:
    """The README line as argv, with this test's stand-ins (see the module docstring)."""
    words = shlex.split(line)
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--camera":
            out += ["--video", str(where / "clip.avi")]
            i += 2
            continue
        if word == "--serve":
            out += ["--serve", "0"]
            i += 2
            continue
        if word == "--face-crop" and words[i + 1] == "yunet":
            out += ["--face-crop", "haar"]
            i += 2
            continue
        word = {"photos/": str(where / "photos"), "labelled-photos/": str(where / "labelled-photos"), "new-photos/": str(where / "new-photos"), "clip.mp4": str(where / "clip.avi"),
                "annotated.mp4": str(where / "annotated.mp4")}.get(word, word)
        if word.startswith("runs/"):
            word = str(where / word)
        out.append(word)
        i += 1
    if out[0] == "gclf-train":
        out += FAST_TRAINING
        if "--recipe" in out and "--face-crop" not in out:
            out += ["--face-crop", "haar"]  # the faces recipe's YuNet would be downloaded
    return out


def test_the_readme_has_the_examples_this_test_runs() -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    programs = {c.split()[0] for c in commands}
    assert {"gclf-train", "gclf-export", "gclf-infer", "gclf-eval"} <= programs
    assert any("--recipe" in c for c in commands) and any("--camera" in c for c in commands)
    assert not any("pip install" in c for c in commands)


@pytest.mark.slow
def test_every_readme_example_runs_as_written(tmp_path: Path) -> None:
    make_shapes_dataset(tmp_path / "photos", per_class=6, min_side=32, max_side=64)
    make_shapes_dataset(tmp_path / "labelled-photos", per_class=6, seed=1, min_side=32, max_side=64)
    for i in range(3):
        write_image_file(tmp_path / "new-photos" / f"{i}.png", np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8))
    _clip(tmp_path / "clip.avi")
    bin_dir = Path(sys.executable).parent
    environment = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "GCLF_HOME": str(tmp_path / "gclf-home")}

    for line in readme_commands(README.read_text(encoding="utf-8")):
        argv = stand_in(line, tmp_path)
        started = time.monotonic()
        done = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], capture_output=True, text=True, env=environment, timeout=600, cwd=tmp_path)
        opens_a_window = argv[0] == "gclf-infer" and ("--video" in argv or "--camera" in line) and "--headless" not in argv and "--serve" not in argv
        if opens_a_window:
            assert done.returncode == 2 and WINDOW_REFUSED in done.stderr, f"{line}\n{done.stdout}\n{done.stderr}"
        else:
            assert done.returncode == 0, f"README example failed: {line}\n{done.stdout}\n{done.stderr}"
        print(f"{time.monotonic() - started:5.1f} s  {line}")
    assert (tmp_path / "runs" / "best" / "model.int8.onnx").is_file() and (tmp_path / "annotated.mp4").is_file()
