"""Decoder bombs: files that tell a header check one size and the decoder another.

Each bomb (tests/decoder_bombs.py) is a small file that OpenCV decodes at 16384x16384 or
20000x20000, or a WebP of millions of empty chunks. Every one must be refused by name before
a decoder allocates anything: in the Python API and training's scan (here with
`cv2.imdecode` made to fail the test if it is reached), and in `gclf-infer MODEL FOLDER`,
whose peak memory is measured for all of them in one run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from decoder_bombs import BOMBS, webp_many_chunks, write_bombs
from gclf.runtime import decode as decode_module
from gclf.runtime.classifier import Classifier
from gclf.runtime.decode import MAX_HEADER_ITEMS, MAX_IMAGE_PIXELS, check_frame_size, decode_image
from gclf.runtime.errors import EXIT_PARTIAL, ImageDecodeError
from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.scan import ImageStore, scan_folders
from gclf_testutil import MEASURE_PEAK, solid_bgr, write_image_file

PEAK_LIMIT = 300_000_000  # bytes: all bombs in one run; each decoded would need 0.5 to 2.4 GB
TOO_LARGE = rf"image too large \(\d+x\d+ pixels; gclf reads images of up to {MAX_IMAGE_PIXELS // 1_000_000} megapixels"
# name -> what its refusal says after "<path>: "
REFUSALS = {name: TOO_LARGE for name in BOMBS} | {"many-chunks.webp": rf"not a readable image \(more than {MAX_HEADER_ITEMS} RIFF chunks\)"}


@pytest.fixture
def no_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a decoder is reached: the refusal must come from the header."""

    def imdecode(*args, **kwargs):
        raise AssertionError("cv2.imdecode was called: the bomb reached the decoder")

    monkeypatch.setattr(decode_module.cv2, "imdecode", imdecode)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every bomb, the many-chunk WebP with 100,000 chunks (800 KB) instead of 12 million."""
    folder = tmp_path_factory.mktemp("bombs")
    made = {name: build(folder / name) for name, build in BOMBS.items() if name != "many-chunks.webp"}
    made["many-chunks.webp"] = webp_many_chunks(folder / "many-chunks.webp", n_chunks=100_000)
    return made


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_each_bomb_is_refused_by_name_from_its_header(name: str, bombs: dict[str, Path], no_decoder) -> None:
    with pytest.raises(ImageDecodeError, match=rf"^{bombs[name]}: {REFUSALS[name]}"):
        decode_image(bombs[name])


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_the_python_api_refuses_each_bomb_by_name(name: str, bombs: dict[str, Path], tiny_onnx, no_decoder) -> None:
    clf = Classifier(tiny_onnx())

    with pytest.raises(ImageDecodeError, match=rf"^{bombs[name]}: {REFUSALS[name]}"):
        clf.predict(bombs[name])


def test_trainings_scan_skips_each_bomb_by_name_and_keeps_the_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    photos = set()
    for cls, colour in (("red", (250, 0, 0)), ("blue", (0, 0, 250))):
        for i in range(2):
            photos.add(write_image_file(data / cls / f"{i}.png", solid_bgr(colour)).read_bytes())
    made = write_bombs(data / "red")
    decode = decode_module.cv2.imdecode

    def photos_only(buf, flags):  # the photos are decoded; a bomb must not reach the decoder
        assert buf.tobytes() in photos, "a bomb reached the decoder"
        return decode(buf, flags)

    monkeypatch.setattr(decode_module.cv2, "imdecode", photos_only)

    scan = scan_folders([data], ImageStore(PreprocessSpec(input_height=16, input_width=16)))

    assert scan.class_counts() == {"blue": 2, "red": 2}
    reasons = dict(scan.skipped)
    assert set(reasons) == {str(path) for path in made.values()}
    for name, path in made.items():
        assert re.match(REFUSALS[name], reasons[str(path)]), (name, reasons[str(path)])


def _peak_of(args: list[str], **run) -> tuple[subprocess.CompletedProcess, int]:
    """Run `args` in a child and return it with its peak resident memory (bytes)."""
    done = subprocess.run([sys.executable, "-c", MEASURE_PEAK, *args], capture_output=True, text=True, timeout=300, **run)
    *messages, peak = done.stderr.strip().splitlines()
    done.stderr = "\n".join(messages)
    return done, int(peak)


def test_gclf_infer_refuses_every_bomb_by_name_in_one_run_under_300_mb(tmp_path: Path, tiny_onnx) -> None:
    """The full-size bombs, the 96 MB WebP of 12 million chunks included, beside a photo."""
    photos = tmp_path / "photos"
    made = write_bombs(photos)
    write_image_file(photos / "ok.png", solid_bgr((250, 0, 0)))

    run, peak = _peak_of([sys.executable, "-m", "gclf.runtime.cli", str(tiny_onnx()), str(photos)])

    assert run.returncode == EXIT_PARTIAL, run.stderr
    skipped = [line.removeprefix("skipped: ") for line in run.stderr.splitlines() if line.startswith("skipped: ")]
    for name, path in made.items():
        assert any(re.match(rf"{path}: {REFUSALS[name]}", line) for line in skipped), (name, skipped)
    assert "ok.png" in run.stdout and f"1 classified, {len(made)} skipped" in run.stderr
    assert "Traceback" not in run.stderr
    assert peak < PEAK_LIMIT, f"peak memory {peak / 1e6:.0f} MB"


API_AND_SCAN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from gclf.runtime import Classifier, ImageDecodeError
    from gclf.runtime.preprocess import PreprocessSpec
    from gclf.train.scan import ImageStore, scan_folders

    clf = Classifier(sys.argv[1])
    refused = {}
    for path in sorted(Path(sys.argv[2]).glob("red/*.*")):
        try:
            clf.predict(path)
        except ImageDecodeError as exc:
            refused[str(path)] = str(exc)
    scan = scan_folders([Path(sys.argv[2])], ImageStore(PreprocessSpec(input_height=16, input_width=16)), workers=2)
    print(json.dumps({"api": refused, "scan": dict(scan.skipped), "counts": scan.class_counts()}))
    """
)


def test_the_api_and_trainings_scan_refuse_every_bomb_in_one_run_under_300_mb(tmp_path: Path, tiny_onnx) -> None:
    data = tmp_path / "data"
    for cls, colour in (("red", (250, 0, 0)), ("blue", (0, 0, 250))):
        write_image_file(data / cls / "photo.png", solid_bgr(colour))
    made = write_bombs(data / "red")
    (data / "red" / "photo.png").rename(data / "red" / "photo.bmp.png")  # still a photo, sorted after the bombs

    run, peak = _peak_of([sys.executable, "-c", API_AND_SCAN, str(tiny_onnx()), str(data)])

    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert found["counts"] == {"blue": 1, "red": 1}
    for name, path in made.items():
        assert re.match(rf"{path}: {REFUSALS[name]}", found["api"][str(path)]), found["api"]
        assert re.match(REFUSALS[name], found["scan"][str(path)]), found["scan"]
    assert peak < PEAK_LIMIT, f"peak memory {peak / 1e6:.0f} MB"


def test_frames_from_cameras_and_streams_are_held_to_the_same_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    check_frame_size((1080, 1920, 3), source="camera 0")  # a camera's frame passes
    with pytest.raises(ImageDecodeError, match=rf"^rtsp://cam/stream: image too large \(10000x8000 pixels; gclf reads images of up to {MAX_IMAGE_PIXELS // 1_000_000} megapixels"):
        check_frame_size((8000, 10000, 3), source="rtsp://cam/stream")
    monkeypatch.setenv("GCLF_MAX_IMAGE_PIXELS", str(1920 * 1080 - 1))
    with pytest.raises(ImageDecodeError, match=r"^camera 0: image too large \(1920x1080 pixels"):
        check_frame_size((1080, 1920), source="camera 0")
