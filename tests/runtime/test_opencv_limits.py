"""OpenCV's own image-size limits, set from gclf's pixel cap when gclf.runtime is imported.

OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS/_WIDTH/_HEIGHT once, when its library loads, and
every decoder it builds in checks the size its header reader found against them before it
allocates (loadsave.cpp, validateInputImageSize). Each case runs in a fresh interpreter, the
only place where "before cv2 loads" can be arranged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gclf.runtime.limits import MAX_IMAGE_PIXELS, OPENCV_HEIGHT_ENV, OPENCV_PIXELS_ENV, OPENCV_WIDTH_ENV, PIXELS_ENV, opencv_limits
from decoder_bombs import jpeg_stuffing_after_soi

OPENCV_ENVS = (OPENCV_PIXELS_ENV, OPENCV_WIDTH_ENV, OPENCV_HEIGHT_ENV)


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (*OPENCV_ENVS, PIXELS_ENV)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, env=clean | (env or {}))


def test_the_limits_are_the_cap_and_a_stricter_value_already_set_is_kept() -> None:
    assert opencv_limits({}) == {OPENCV_PIXELS_ENV: MAX_IMAGE_PIXELS, OPENCV_WIDTH_ENV: 1 << 20, OPENCV_HEIGHT_ENV: 1 << 20}
    stricter = opencv_limits({OPENCV_PIXELS_ENV: "1000000", OPENCV_WIDTH_ENV: "4Mb", OPENCV_HEIGHT_ENV: "2000"})
    assert stricter == {OPENCV_PIXELS_ENV: 1_000_000, OPENCV_WIDTH_ENV: 1 << 20, OPENCV_HEIGHT_ENV: 2000}
    assert opencv_limits({OPENCV_PIXELS_ENV: str(1 << 40)})[OPENCV_PIXELS_ENV] == MAX_IMAGE_PIXELS  # looser: lowered


# Every format gclf decodes, each 40x30 (1200 pixels: over a cap of 1000, under one of 2000),
# decoded by OpenCV alone after `import gclf.runtime`.
DECODE_EACH_FORMAT = """
import gclf.runtime
import io, json, os
import cv2, numpy as np
from PIL import Image

image = np.full((30, 40, 3), 128, np.uint8)
files = {ext: cv2.imencode(ext, image)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".tif", ".webp", ".ppm")}
buf = io.BytesIO()
Image.fromarray(image).save(buf, "GIF")
files[".gif"] = buf.getvalue()
outcome = {}
for ext, data in files.items():
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        outcome[ext] = "decoded" if img is not None else "failed"
    except cv2.error as exc:
        outcome[ext] = "refused" if "validateInputImageSize" in str(exc) else str(exc)
print(json.dumps({"outcome": outcome, "env": {k: os.environ[k] for k in os.environ if k.startswith("OPENCV_IO_")}}))
"""


@pytest.mark.parametrize("cap, refused", [(1000, True), (2000, False)])
def test_every_decoder_opencv_builds_in_honours_the_limits_set_on_import(cap: int, refused: bool) -> None:
    pytest.importorskip("PIL", reason="Pillow writes the GIF")

    run = _python(DECODE_EACH_FORMAT, {PIXELS_ENV: str(cap)})

    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert found["env"] == {OPENCV_PIXELS_ENV: str(cap), OPENCV_WIDTH_ENV: str(cap), OPENCV_HEIGHT_ENV: str(cap)}
    assert found["outcome"] == {ext: "refused" if refused else "decoded" for ext in (".jpg", ".png", ".bmp", ".tif", ".webp", ".ppm", ".gif")}


def test_a_stricter_limit_the_user_set_is_kept_and_a_looser_one_lowered() -> None:
    code = "import gclf.runtime, os, json; print(json.dumps({k: os.environ[k] for k in os.environ if k.startswith('OPENCV_IO_')}))"

    stricter = json.loads(_python(code, {OPENCV_PIXELS_ENV: "1000", OPENCV_WIDTH_ENV: "500"}).stdout)
    looser = json.loads(_python(code, {OPENCV_PIXELS_ENV: str(1 << 40)}).stdout)

    assert stricter == {OPENCV_PIXELS_ENV: "1000", OPENCV_WIDTH_ENV: "500", OPENCV_HEIGHT_ENV: str(1 << 20)}
    assert looser[OPENCV_PIXELS_ENV] == str(MAX_IMAGE_PIXELS)


def test_with_cv2_imported_first_the_header_check_still_refuses_and_gclf_warns_once(tmp_path: Path) -> None:
    bomb = jpeg_stuffing_after_soi(tmp_path / "bomb.jpg")
    ok = tmp_path / "ok.png"
    run = _python(
        f"""
        import cv2, numpy as np
        cv2.imwrite({str(ok)!r}, np.zeros((8, 8, 3), np.uint8))
        from gclf.runtime.decode import decode_image
        from gclf.runtime.errors import ImageDecodeError
        from gclf.runtime.limits import opencv_limits_in_force
        print("in force:", opencv_limits_in_force())
        for path in ({str(ok)!r}, {str(ok)!r}, {str(bomb)!r}):
            try:
                print("decoded", decode_image(path).shape)
            except ImageDecodeError as exc:
                print("refused", exc)
        """
    )
    assert run.returncode == 0, run.stderr
    assert "in force: False" in run.stdout
    assert run.stdout.count("decoded (8, 8, 3)") == 2
    assert f"refused {bomb}: image too large (20000x20000 pixels; gclf reads images of up to" in run.stdout
    assert run.stderr.count("RuntimeWarning: OpenCV was imported before gclf.runtime") == 1, run.stderr


def test_with_gclf_runtime_imported_first_there_is_no_warning(tmp_path: Path) -> None:
    ok = tmp_path / "ok.png"
    run = _python(
        f"""
        import gclf.runtime
        import cv2, numpy as np
        cv2.imwrite({str(ok)!r}, np.zeros((8, 8, 3), np.uint8))
        from gclf.runtime.decode import decode_image
        from gclf.runtime.limits import opencv_limits_in_force
        print("in force:", opencv_limits_in_force(), decode_image({str(ok)!r}).shape)
        """
    )
    assert run.returncode == 0 and "in force: True (8, 8, 3)" in run.stdout, run.stderr
    assert "Warning" not in run.stderr
