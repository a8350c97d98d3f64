"""What gclf sends and keeps about people holds no pixels: the --events JSON lines and the
MQTT event messages are labels, numbers and one box, never an image (no arrays beyond a
box, no long strings, no base64), small enough that no face could hide in them.
docs/responsible-use.md promises this."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import gclf.runtime.faces
from benchmarks.fleet_bench import people_clip
from gclf.runtime.cli.infer import main
from gclf_testutil import FACES_MODEL, SquareDetector

EVENT_KEYS = {"event", "camera", "track", "label", "confidence", "probabilities", "first_seen", "last_seen", "frames", "largest_box"}
MQTT_HEAD = {"id", "boot", "seq", "queued_at"}
MAX_BYTES = 1024  # an event is a few hundred bytes; the smallest JPEG of a face is several KB
IMAGE_SIGNS = ("data:image", "/9j/", "iVBOR", "base64")  # a data URL, base64 JPEG and PNG headers


def assert_no_pixels(value: Any, where: str = "event") -> None:
    """Scalars, short strings, dicts of them, and lists of at most 4 numbers (a box) only."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str) and len(key) <= 64, f"{where}: key {key!r}"
            assert_no_pixels(item, f"{where}.{key}")
    elif isinstance(value, list):
        assert len(value) <= 4 and all(isinstance(v, (int, float)) for v in value), f"{where}: a list that is not a box: {value!r}"
    elif isinstance(value, str):
        assert len(value) <= 64 and not any(sign in value for sign in IMAGE_SIGNS), f"{where}: {value[:80]!r}"
    else:
        assert value is None or isinstance(value, (bool, int, float)), f"{where}: {type(value).__name__}"


@pytest.fixture
def square_detector(monkeypatch) -> None:
    monkeypatch.setattr(gclf.runtime.faces.detectors, "make_detector", lambda face_model: SquareDetector())


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return people_clip(tmp_path / "door.avi", ["red", "blue"], fps=10.0, walk_s=1.5, gap_s=0.3)


def _infer(tiny_onnx, *args: object):
    model = tiny_onnx("faces.onnx", props_update=FACES_MODEL)
    return CliRunner().invoke(main, [str(model), *map(str, args)])


def test_event_lines_hold_labels_numbers_and_one_box(tiny_onnx, clip: Path, square_detector) -> None:
    result = _infer(tiny_onnx, "--video", clip, "--headless", "--events", "--detect-every", "1")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2  # one per person
    for line in lines:
        assert len(line.encode()) < MAX_BYTES
        event = json.loads(line)
        assert set(event) == EVENT_KEYS
        assert_no_pixels(event)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once this returns: nothing listens there


def test_mqtt_event_messages_hold_no_pixels(tiny_onnx, clip: Path, square_detector, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("paho.mqtt")  # the mqtt extra
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))

    # No broker: every event message waits on disk, byte for byte what would be published.
    result = _infer(tiny_onnx, "--video", clip, "--headless", "--events", "--detect-every", "1", "--name", "door",
                    "--mqtt", f"mqtt://127.0.0.1:{_closed_port()}")

    assert result.exit_code == 0, result.output
    queued = sorted((tmp_path / "state" / "mqtt-queue" / "door").glob("0*.json"))
    assert len(queued) == 2
    for path in queued:
        data = path.read_bytes()
        assert len(data) < MAX_BYTES
        message = json.loads(data)
        assert set(message) == EVENT_KEYS | MQTT_HEAD
        assert_no_pixels(message)
