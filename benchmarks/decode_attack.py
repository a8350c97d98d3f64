"""Decoder bombs: what each would cost decoded, and what gclf-infer spends refusing it.

    python -m benchmarks.decode_attack [--skip-decoder]

For each bomb of tests/decoder_bombs.py (files that tell a header check one size and the
decoder another, and a WebP of 12 million empty chunks), two children, each measured by its
peak resident memory (ru_maxrss) and wall time:

- "decoder alone": `cv2.imdecode` on the file in a child that imports OpenCV without gclf (no
  size limits): what the file costs wherever nothing refuses it, i.e. before gclf's header
  checks and OpenCV's limits. `--skip-decoder` leaves these out (they need up to 2.4 GB each).
- "OpenCV's limit": the same with OPENCV_IO_MAX_IMAGE_PIXELS at gclf's cap (what
  `import gclf.runtime` sets), without gclf's header parse: the guarantee behind it.
- "gclf-infer": `gclf-infer MODEL BOMB ok.png` with a tiny model: its exit code, how the bomb
  was refused, peak memory and time.

Then all bombs and the photo in one folder, one `gclf-infer` run (the tests assert its peak
under 300 MB). Prints figures and asserts nothing. Needs the `train` extra (onnx) for the
generated model.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

# The tests' builders, so there is one of each bomb (tests/ is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from decoder_bombs import BOMBS, write_bombs  # noqa: E402
from gclf_testutil import MEASURE_PEAK, build_tiny_onnx, solid_bgr, write_image_file  # noqa: E402

from gclf.runtime.limits import MAX_IMAGE_PIXELS, OPENCV_PIXELS_ENV  # noqa: E402

DECODE_ALONE = """
import sys, cv2, numpy as np
try:
    img = cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_UNCHANGED)
except cv2.error as exc:
    print("refused by validateInputImageSize" if "validateInputImageSize" in str(exc) else "cv2.error")
else:
    print("failed" if img is None else "x".join(map(str, img.shape[1::-1])))
"""


def _measured(args: list[str], timeout: float = 600, env: dict[str, str] | None = None) -> tuple[int, str, str, float, float]:
    """(exit code, stdout, stderr, peak MB, seconds) of `args` in a measured child."""
    started = time.monotonic()
    env = None if env is None else {**os.environ, **env}
    run = subprocess.run([sys.executable, "-c", MEASURE_PEAK, *args], capture_output=True, text=True, timeout=timeout, env=env)
    seconds = time.monotonic() - started
    *lines, peak = run.stderr.strip().splitlines()
    return run.returncode, run.stdout, "\n".join(lines), int(peak) / 1e6, seconds


def _refusal(stderr: str, path: Path) -> str:
    line = next((line for line in stderr.splitlines() if line.startswith(f"skipped: {path}: ")), None)
    return line.removeprefix(f"skipped: {path}: ")[:70] if line else "not refused"


@click.command()
@click.option("--skip-decoder", is_flag=True, help="Leave out the decoder-alone runs (up to 2.4 GB each).")
def main(skip_decoder: bool) -> None:
    run_bombs(skip_decoder)


def run_bombs(skip_decoder: bool) -> None:
    """Every bomb as the module's docstring says, its figures printed (benchmarks/serve_attack.py runs it too)."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        model = build_tiny_onnx(work / "tiny.onnx")
        ok = write_image_file(work / "ok.png", solid_bgr((250, 0, 0)))
        bombs = write_bombs(work / "bombs")
        code, _, _, base_mb, base_s = _measured([sys.executable, "-m", "gclf.runtime.cli", str(model), str(ok)])
        print(f"baseline: gclf-infer on one photo: exit {code}, peak {base_mb:.0f} MB, {base_s:.1f} s")
        for name in BOMBS:
            path = bombs[name]
            size = f"{path.stat().st_size / 1e6:.2f} MB" if path.stat().st_size >= 100_000 else f"{path.stat().st_size} B"
            print(f"{name} ({size}):")
            if not skip_decoder:
                code, out, err, mb, s = _measured([sys.executable, "-c", DECODE_ALONE, str(path)])
                print(f"  decoder alone:  {out.strip() if code == 0 else f'exit {code}'}, peak {mb:.0f} MB, {s:.1f} s")
            code, out, err, mb, s = _measured([sys.executable, "-c", DECODE_ALONE, str(path)], env={OPENCV_PIXELS_ENV: str(MAX_IMAGE_PIXELS)})
            print(f"  OpenCV's limit: {out.strip() if code == 0 else f'exit {code}'}, peak {mb:.0f} MB, {s:.1f} s")
            code, _, err, mb, s = _measured([sys.executable, "-m", "gclf.runtime.cli", str(model), str(path), str(ok)])
            print(f"  gclf-infer:     exit {code}, peak {mb:.0f} MB, {s:.1f} s: {_refusal(err, path)}")
        ok.rename(work / "bombs" / "ok.png")
        code, out, err, mb, s = _measured([sys.executable, "-m", "gclf.runtime.cli", str(model), str(work / "bombs")])
        refused = sum(_refusal(err, path) != "not refused" for path in bombs.values())
        print(f"all {len(bombs)} bombs and the photo in one folder: exit {code}, {refused} refused by name, "
              f"photo classified: {'ok.png' in out}, peak {mb:.0f} MB (tests assert < 300 MB), {s:.1f} s")


if __name__ == "__main__":
    main()
