"""gclf-infer --camera picam: the Raspberry Pi camera through picamera2, with a stand-in module.

The stand-in `picamera2` (tests/picam_stand_in) records what gclf asks of it (camera number,
configuration) and hands out frames the way picamera2's "RGB888" format lays them out in
memory: [B, G, R] per pixel. The tiny model labels a frame "red" when its red channel
dominates, so a red scene labelled "red" proves the colour order end to end.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner, Result

import picam_stand_in.picamera2 as stand_in

from gclf.runtime.live import sources as video_sources
from gclf.runtime.live.cameras import open_camera
from gclf.runtime.cli.infer import main
from gclf.runtime.cli.params import Camera
from gclf.runtime.errors import EXIT_MISSING_DEPENDENCY, EXIT_PARTIAL, EXIT_USAGE
from gclf.runtime.live.picamera import PicameraSource
from gclf.runtime.live.sources import LatestFrameGrabber

RED_SCENE_RGB = stand_in.RED_SCENE_RGB
BLUE_SCENE_RGB = (20, 20, 230)




def _infer(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize(("scene", "label"), [(RED_SCENE_RGB, "red"), (BLUE_SCENE_RGB, "blue")])
def test_picam_frames_are_classified_in_the_right_colour_order(tiny_onnx, fake_picamera2, scene, label) -> None:
    fake_picamera2.scene_rgb = scene

    result = _infer(tiny_onnx(), "--camera", "picam", "--camera-size", "96x64", "--headless", "--max-frames", 4)

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 4
    assert all(r["faces"][0]["label"] == label and r["faces"][0]["box"] == [0, 0, 96, 64] for r in records)
    (camera,) = fake_picamera2.instances
    assert camera.camera_num == 0
    assert camera.config_request["main"] == {"size": (96, 64), "format": "RGB888"}
    assert camera.stopped and camera.closed  # released at the end of the run
    assert "live: Pi camera 0 (96x64)" in result.stderr


def test_picam_n_opens_the_nth_camera_at_the_default_size(tiny_onnx, fake_picamera2, monkeypatch) -> None:
    monkeypatch.setattr(fake_picamera2, "camera_info", [{"Model": "imx708"}, {"Model": "imx219"}])

    result = _infer(tiny_onnx(), "--camera", "picam:1", "--headless", "--max-frames", 2)

    assert result.exit_code == 0, result.output
    (camera,) = fake_picamera2.instances
    assert camera.camera_num == 1
    assert camera.config_request["main"]["size"] == (640, 480)


def test_picam_frames_flow_through_the_newest_frame_thread_and_drops_are_counted(fake_picamera2) -> None:
    source = PicameraSource.open(0, (32, 24))
    grabber = LatestFrameGrabber(source).start()
    try:
        first = grabber.next_frame()
        time.sleep(0.1)  # the camera goes on delivering while the consumer is busy
        later = grabber.next_frame()
    finally:
        grabber.close()
    (camera,) = fake_picamera2.instances
    assert first.bgr.shape == (24, 32, 3) and later.index > first.index
    assert tuple(first.bgr[0, 0]) == (20, 20, 230)  # B, G, R of the red scene: OpenCV order, no conversion
    # every frame between the two taken was replaced by a newer one before the consumer came back
    assert grabber.dropped >= later.index - first.index - 1 > 0
    # the first frame is read while opening (a dead camera fails there), the rest in the capture thread
    assert camera.capture_threads == {threading.main_thread().name, f"gclf-capture {source.name}"}
    assert camera.closed


def test_without_picamera2_one_sentence_names_the_install_step(tiny_onnx, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as if not installed

    result = _infer(tiny_onnx(), "--camera", "picam", "--headless")

    assert result.exit_code == EXIT_MISSING_DEPENDENCY
    assert "sudo apt install python3-picamera2" in result.stderr
    assert "--system-site-packages" in result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output


def test_a_pi_camera_that_is_not_there_exits_2(tiny_onnx, fake_picamera2) -> None:
    result = _infer(tiny_onnx(), "--camera", "picam:3", "--headless")

    assert result.exit_code == EXIT_USAGE
    assert "error: no Pi camera 3 (cameras found: 0: imx708)" in result.stderr
    assert fake_picamera2.instances == []


def test_a_pi_camera_failing_mid_run_ends_cleanly_with_exit_5(tiny_onnx, fake_picamera2) -> None:
    fake_picamera2.fail_after = 5

    result = _infer(tiny_onnx(), "--camera", "picam", "--headless")

    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "Pi camera 0 (640x480) stopped delivering frames (Device or resource busy)" in result.stderr
    assert "frames processed" in result.stderr and "Traceback" not in result.output
    assert fake_picamera2.instances[0].closed


def test_a_pi_camera_that_opens_but_delivers_nothing_is_closed_and_exits_2(tiny_onnx, fake_picamera2) -> None:
    fake_picamera2.fail_after = 0

    result = _infer(tiny_onnx(), "--camera", "picam", "--headless")

    assert result.exit_code == EXIT_USAGE
    assert "error: Pi camera 0 opened but delivers no frames" in result.stderr
    assert fake_picamera2.instances[0].closed


@pytest.mark.parametrize(
    ("text", "camera"),
    [("0", Camera("usb", 0)), ("2", Camera("usb", 2)), ("picam", Camera("picam", 0)), ("picam:1", Camera("picam", 1)), ("PiCam:0", Camera("picam", 0))],
)
def test_camera_values(text: str, camera: Camera) -> None:
    from gclf.runtime.cli.params import CameraParam

    assert CameraParam().convert(text, None, None) == camera


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--camera", "picam:x"], "is not a camera"),
        (["--camera", "-1"], "is not a camera"),
        (["--camera", "0", "--camera-size", "640"], "is not a frame size"),
        (["--camera", "0", "--camera-size", "8x8"], "is not a frame size"),
        (["--video", "{model}", "--camera-size", "640x480"], "--camera-size sets the size of a --camera"),
        (["--camera-size", "640x480", "{model}"], "only apply to live sources"),
    ],
)
def test_camera_option_mistakes_are_usage_errors(tiny_onnx, args: list[str], message: str) -> None:
    model = tiny_onnx()
    result = _infer(model, *[a.format(model=model) for a in args])

    assert result.exit_code == EXIT_USAGE
    assert message in result.output


def test_camera_size_is_asked_of_a_usb_camera_and_named(monkeypatch) -> None:
    asked: dict[int, float] = {}

    class FakeCapture:
        def __init__(self, index) -> None:
            self.width, self.height = 1280, 720

        def isOpened(self) -> bool:
            return True

        def set(self, prop, value) -> bool:
            asked[prop] = value
            if prop == video_sources.cv2.CAP_PROP_FRAME_WIDTH:
                self.width = int(value)
            if prop == video_sources.cv2.CAP_PROP_FRAME_HEIGHT:
                self.height = 360  # the driver rounds to a size it supports
            return True

        def get(self, prop) -> float:
            return 30.0

        def read(self):
            return True, np.zeros((self.height, self.width, 3), dtype=np.uint8)

        def release(self) -> None:
            pass

    monkeypatch.setattr(video_sources.cv2, "VideoCapture", FakeCapture)
    source = open_camera("usb", 0, (640, 480))
    assert asked[video_sources.cv2.CAP_PROP_FRAME_WIDTH] == 640 and asked[video_sources.cv2.CAP_PROP_FRAME_HEIGHT] == 480
    assert source.name == "camera 0 (640x360)"  # what it delivers, not what was asked
    source.close()
