"""gclf-infer --video/--camera: the live loop run headless on short generated videos.

A video of alternating red and blue frames with the tiny model (class "red" follows the red
channel) gives known labels per frame. MJPG in .avi is written and read by every OpenCV wheel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from gclf.runtime.cli.infer import main
from gclf.runtime.errors import EXIT_BAD_DATA, EXIT_BAD_MODEL, EXIT_PARTIAL, EXIT_USAGE
from gclf_testutil import BLUE_BGR, RED_BGR, write_video

N_FRAMES = 12
FPS = 10.0




@pytest.fixture
def red_blue_video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "red_blue.avi", [RED_BGR if i % 2 == 0 else BLUE_BGR for i in range(N_FRAMES)])


def _infer(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _records(result: Result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def _faces_model(tiny_onnx, kind: str) -> Path:
    return tiny_onnx(f"{kind}.onnx", props_update={"gclf.training": json.dumps({"input_kind": kind})})


def test_headless_prints_one_json_line_per_frame_with_known_labels(tiny_onnx, red_blue_video: Path) -> None:
    result = _infer(tiny_onnx(), "--video", red_blue_video, "--headless")

    assert result.exit_code == 0, result.output
    records = _records(result)
    assert [r["frame"] for r in records] == list(range(N_FRAMES))  # every frame, in order
    for r in records:
        assert set(r) == {"timestamp", "frame", "faces", "fps"}
        assert isinstance(r["timestamp"], float) and isinstance(r["fps"], (int, float))
        (face,) = r["faces"]  # whole frames: one entry covering the frame
        assert set(face) == {"box", "label", "confidence"}
        assert face["box"] == [0, 0, 64, 48]
        assert 0.5 < face["confidence"] <= 1.0
    assert [r["faces"][0]["label"] for r in records] == ["red", "blue"] * (N_FRAMES // 2)


def test_end_of_file_is_a_clean_exit_with_a_summary(tiny_onnx, red_blue_video: Path) -> None:
    result = _infer(tiny_onnx(), "--video", red_blue_video, "--headless")

    assert result.exit_code == 0
    assert f"{N_FRAMES} frames processed, 0 dropped, mean" in result.stderr
    assert f"stopped: end of video {red_blue_video}" in result.stderr
    assert "Traceback" not in result.output


def test_a_model_without_input_kind_is_run_on_whole_frames_with_one_warning(tiny_onnx, red_blue_video: Path) -> None:
    result = _infer(tiny_onnx(), "--video", red_blue_video, "--headless")

    assert result.stderr.count("no input_kind") == 1
    assert "whole_image" in result.stderr and "classifying whole frames" in result.stderr


def test_a_faces_model_detects_faces_first(tiny_onnx, red_blue_video: Path) -> None:
    # Solid colours hold no face: every frame has an empty face list, nothing is classified.
    result = _infer(_faces_model(tiny_onnx, "faces"), "--video", red_blue_video, "--headless")

    assert result.exit_code == 0, result.output
    assert "no input_kind" not in result.stderr
    assert "classifying faces (haar detector)" in result.stderr
    assert [r["faces"] for r in _records(result)] == [[]] * N_FRAMES


def test_no_faces_overrides_the_metadata(tiny_onnx, red_blue_video: Path) -> None:
    result = _infer(_faces_model(tiny_onnx, "faces"), "--video", red_blue_video, "--headless", "--no-faces")

    assert result.exit_code == 0
    assert [r["faces"][0]["label"] for r in _records(result)] == ["red", "blue"] * (N_FRAMES // 2)


def test_an_unknown_input_kind_is_refused(tiny_onnx, red_blue_video: Path) -> None:
    result = _infer(_faces_model(tiny_onnx, "torsos"), "--video", red_blue_video, "--headless")

    assert result.exit_code == EXIT_BAD_MODEL
    assert "input_kind 'torsos'" in result.stderr


def test_max_frames_stops_early(tiny_onnx, red_blue_video: Path) -> None:
    result = _infer(tiny_onnx(), "--video", red_blue_video, "--headless", "--max-frames", "3")

    assert result.exit_code == 0
    assert len(_records(result)) == 3
    assert "3 frames processed" in result.stderr


def test_save_writes_the_annotated_video(tiny_onnx, red_blue_video: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "annotated.avi"

    result = _infer(tiny_onnx(), "--video", red_blue_video, "--headless", "--save", out)

    assert result.exit_code == 0, result.output
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == N_FRAMES
    assert frames[0].shape == (48, 64, 3)
    assert not np.array_equal(frames[0], np.full_like(frames[0], RED_BGR))  # text drawn on it
    assert sorted(p.name for p in out.parent.iterdir()) == ["annotated.avi"]  # no partial file left


def test_realtime_paces_the_file_and_counts_drops(tiny_onnx, tmp_path: Path) -> None:
    video = write_video(tmp_path / "fast.avi", [RED_BGR] * 8, fps=200.0)

    result = _infer(tiny_onnx(), "--video", video, "--realtime", "--headless")

    assert result.exit_code == 0, result.output
    records = _records(result)
    indices = [r["frame"] for r in records]
    assert indices == sorted(set(indices)) and indices[-1] == 7
    dropped = 8 - len(records)
    assert re.search(rf"\b{len(records)} frames? processed, {dropped} dropped", result.stderr)  # 1 frame: singular


def test_a_camera_that_does_not_exist_exits_2_with_a_sentence(tiny_onnx) -> None:
    result = _infer(tiny_onnx(), "--camera", "99", "--headless")

    assert result.exit_code == EXIT_USAGE
    assert "error: cannot open camera 99" in result.stderr
    assert isinstance(result.exception, SystemExit)  # a sentence and an exit code, no traceback
    assert "Traceback" not in result.output


def test_a_camera_unplugged_mid_run_ends_cleanly_with_a_summary_and_exit_5(tiny_onnx, monkeypatch) -> None:
    from gclf.runtime.live import sources as video_sources

    class UnpluggedCamera:
        name, fps, closed = "camera 0", 30.0, False

        def __init__(self) -> None:
            self.count = 0

        def read(self) -> np.ndarray:
            if self.count == 3:
                raise video_sources.SourceLostError("camera 0 stopped delivering frames (unplugged?)")
            self.count += 1
            return np.full((8, 8, 3), RED_BGR, dtype=np.uint8)

        def close(self) -> None:
            UnpluggedCamera.closed = True

    monkeypatch.setattr(video_sources.CaptureSource, "camera", classmethod(lambda cls, index, size=None: UnpluggedCamera()))

    result = _infer(tiny_onnx(), "--camera", "0", "--headless")

    assert result.exit_code == EXIT_PARTIAL
    assert 1 <= len(_records(result)) <= 3
    assert "stopped: camera 0 stopped delivering frames (unplugged?)" in result.stderr
    assert re.search(r"\d+ frames? processed, \d+ dropped, mean [\d.]+ FPS", result.stderr)
    assert UnpluggedCamera.closed
    assert "Traceback" not in result.output


def test_a_file_that_is_not_a_video_exits_3(tiny_onnx, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.avi"
    bogus.write_text("not a video")

    result = _infer(tiny_onnx(), "--video", bogus, "--headless")

    assert result.exit_code == EXIT_BAD_DATA
    assert f"error: {bogus}: not a video OpenCV can read" in result.stderr or "no frame could be read" in result.stderr


@pytest.mark.parametrize("display", [None, ":0"])
def test_without_a_gui_the_window_is_refused_with_a_pointer_to_headless(tiny_onnx, red_blue_video: Path, monkeypatch, display) -> None:
    # No display at all, or a display but opencv-python-headless (no GUI backend compiled in).
    if display is None:
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    else:
        if not re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
            pytest.skip("this OpenCV has a GUI backend: a window could open")
        monkeypatch.setenv("DISPLAY", display)

    result = _infer(tiny_onnx(), "--video", red_blue_video)

    assert result.exit_code == EXIT_USAGE
    assert "cannot open a window" in result.stderr and "--headless" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--camera", "0", "--video", "{video}"], "one live source"),
        (["{video}", "--video", "{video}"], "not both"),
        (["--realtime", "{video}"], "only apply to live sources"),
        (["--headless", "{video}"], "only apply to live sources"),
        (["--camera", "0", "--realtime"], "--realtime paces a --video file"),
        ([], "give image files or folders to classify, or a live source"),
        (["--video", "{video}", "--save", "{video}.gif", "--headless"], "use a .mp4 or .avi"),
    ],
)
def test_option_mistakes_are_usage_errors(tiny_onnx, red_blue_video: Path, args: list[str], message: str) -> None:
    result = _infer(tiny_onnx(), *[a.format(video=red_blue_video) for a in args])

    assert result.exit_code == EXIT_USAGE
    assert message in result.output


def test_a_face_model_that_is_not_yunet_is_a_usage_error(tiny_onnx, red_blue_video: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "face.onnx"
    bogus.write_bytes(b"not onnx")

    result = _infer(tiny_onnx(), "--video", red_blue_video, "--headless", "--faces", "--face-model", bogus)

    assert result.exit_code == EXIT_USAGE
    assert "not a YuNet face model" in result.stderr


def test_ctrl_c_ends_the_run_with_a_summary_and_exit_130(tiny_onnx, red_blue_video: Path, monkeypatch) -> None:
    from gclf.runtime.live import sinks

    original = sinks.JsonLinesSink.write

    def write_then_interrupt(self, result, annotated) -> bool:
        original(self, result, annotated)
        if result.index == 2:
            raise KeyboardInterrupt
        return True

    monkeypatch.setattr(sinks.JsonLinesSink, "write", write_then_interrupt)

    result = _infer(tiny_onnx(), "--video", red_blue_video, "--headless")

    assert result.exit_code == 130
    assert len(_records(result)) == 3
    assert "3 frames processed, 0 dropped" in result.stderr and "stopped: interrupted" in result.stderr
