"""`gclf-infer --mqtt` against a real Mosquitto (a free loopback port, a password file): each
person's event, the counts and online/offline reach the house, the last person still in view
included; Home Assistant's discovery configs are retained; the summary says what was
delivered; --check says whether the broker answers and takes the login; options that need
--mqtt or --serve say so. The password is never printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("paho.mqtt")  # the mqtt extra

from click.testing import CliRunner  # noqa: E402
from gclf_testutil import FACES_MODEL, SquareDetector  # noqa: E402
from mosquitto_testutil import MosquittoBroker, Subscriber  # noqa: E402

import gclf.runtime.faces  # noqa: E402
from benchmarks.fleet_bench import people_clip  # noqa: E402
from gclf.runtime.cli.infer import main  # noqa: E402
from gclf.runtime.mqtt.settings import PASSWORD_ENV  # noqa: E402

GCLF_PASSWORD = "gclf-live-pw-5Tz8Qk2R"
HOUSE_PASSWORD = "house-live-pw-9Lm3"
FPS, WALK_S = 10.0, 2.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    server = MosquittoBroker(tmp_path / "broker", {"gclf": GCLF_PASSWORD, "house": HOUSE_PASSWORD})
    yield server
    server.stop()


@pytest.fixture
def house(broker: MosquittoBroker) -> Iterator[Subscriber]:
    subscriber = Subscriber(broker, "house", HOUSE_PASSWORD, topics=("gclf/#", "homeassistant/#"))
    yield subscriber
    subscriber.close()


@pytest.fixture
def square_detector(monkeypatch) -> None:
    monkeypatch.setattr(gclf.runtime.faces.detectors, "make_detector", lambda face_model: SquareDetector())


def _infer(tiny_onnx, *args: object, env: dict[str, str] | None = None):
    model = tiny_onnx("faces.onnx", props_update=FACES_MODEL)
    return CliRunner().invoke(main, [str(model), *map(str, args)], env=env)


def test_a_live_run_reports_each_person_counts_and_availability(tiny_onnx, tmp_path: Path, broker: MosquittoBroker, house: Subscriber,
                                                                monkeypatch, square_detector) -> None:
    labels = ["red", "blue", "red"]
    clip = people_clip(tmp_path / "door.avi", labels, fps=FPS, walk_s=WALK_S, gap_s=0.5)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    frames = round((2 * (WALK_S + 0.5) + WALK_S / 2) * FPS)  # the third person is still in view at the end

    result = _infer(tiny_onnx, "--video", clip, "--headless", "--events", "--detect-every", "1", "--max-frames", frames,
                    "--name", "door", "--mqtt", f"mqtt://gclf@{broker.host}:{broker.port}", "--mqtt-discovery",
                    env={PASSWORD_ENV: GCLF_PASSWORD})

    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["label"] for e in printed] == labels
    messages = house.wait_for(lambda m: sum(x.topic == "gclf/door/event" for x in m) >= 3 and
                              any(x.topic == "gclf/door/status" and x.payload == b"offline" for x in m))
    events = [m.json() for m in messages if m.topic == "gclf/door/event"]
    # The --events lines, each with its unique id, the last one handed over as the loop ended.
    assert [{k: v for k, v in e.items() if k not in ("id", "boot", "seq", "queued_at")} for e in events] == printed  # "camera" in both
    assert len({e["id"] for e in events}) == 3 and [e["seq"] for e in events] == [1, 2, 3]
    counts = [m.json() for m in messages if m.topic == "gclf/door/counts"]
    assert counts[-1]["total"] == {"red": 2, "blue": 1} and counts[-1]["camera_up"] is True
    assert [m.payload for m in messages if m.topic == "gclf/door/status"] == [b"online", b"offline"]
    # Home Assistant, started later, finds the camera: the discovery configs are retained.
    later = Subscriber(broker, "house", HOUSE_PASSWORD, topics=("homeassistant/#",), client_id="home-assistant")
    try:
        configs = later.wait_for(lambda m: len(m) >= 10)
    finally:
        later.close()
    assert configs and all(m.retain and m.topic.endswith("/config") for m in configs)
    assert {m.json()["state_topic"] for m in configs} == {"gclf/door/counts"}
    assert {m.json()["availability_topic"] for m in configs} == {"gclf/door/status"}
    assert "live: mqtt: 3 events delivered, 0 waiting, 0 dropped (cap 2000)" in result.stderr
    assert "on gclf/door/" in result.stderr and str(tmp_path / "state" / "mqtt-queue" / "door") in result.stderr
    assert GCLF_PASSWORD not in result.output


def test_unsure_people_are_published_and_counted_apart_with_their_own_sensors(tiny_onnx, tmp_path: Path, broker: MosquittoBroker,
                                                                            house: Subscriber, monkeypatch, square_detector) -> None:
    clip = people_clip(tmp_path / "door.avi", ["red", "blue"], fps=FPS, walk_s=WALK_S, gap_s=0.5)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))

    # No answer is ever certain: at 1, every person is unsure.
    result = _infer(tiny_onnx, "--video", clip, "--headless", "--events", "--detect-every", "1", "--min-confidence", "1",
                    "--name", "door", "--mqtt", f"mqtt://gclf@{broker.host}:{broker.port}", "--mqtt-discovery",
                    env={PASSWORD_ENV: GCLF_PASSWORD})

    assert result.exit_code == 0, result.output
    messages = house.wait_for(lambda m: sum(x.topic == "gclf/door/event" for x in m) >= 2 and
                              any(x.topic == "gclf/door/status" and x.payload == b"offline" for x in m))
    events = [m.json() for m in messages if m.topic == "gclf/door/event"]
    assert [(e["label"], e["best"]) for e in events] == [("unsure", "red"), ("unsure", "blue")]
    counts = [m.json() for m in messages if m.topic == "gclf/door/counts"][-1]
    assert counts["total"] == {"red": 0, "blue": 0, "unsure": 2}  # never inside a class's count
    later = Subscriber(broker, "house", HOUSE_PASSWORD, topics=("homeassistant/#",), client_id="home-assistant")
    try:
        configs = [m.json() for m in later.wait_for(lambda m: len(m) >= 13)]
    finally:
        later.close()
    unsure = [c for c in configs if c["name"].startswith("unsure ")]
    assert sorted(c["name"] for c in unsure) == ["unsure last hour", "unsure last minute", "unsure total"]
    assert {c["value_template"] for c in unsure} >= {'{{ value_json.total["unsure"] | default(0) }}'}


def test_a_broker_away_at_the_end_leaves_the_events_on_disk_and_says_so(tiny_onnx, tmp_path: Path, broker: MosquittoBroker,
                                                                       monkeypatch, square_detector) -> None:
    clip = people_clip(tmp_path / "door.avi", ["blue"], fps=FPS, walk_s=1.0, gap_s=0.2)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    broker.stop()

    result = _infer(tiny_onnx, "--video", clip, "--headless", "--events", "--detect-every", "1", "--name", "door",
                    "--mqtt", f"mqtt://gclf@{broker.host}:{broker.port}", "--mqtt-queue-max", "10", env={PASSWORD_ENV: GCLF_PASSWORD})

    assert result.exit_code == 0, result.output  # a broker that is away is no error
    assert "live: mqtt: 0 events delivered, 1 waiting, 0 dropped (cap 10); not connected" in result.stderr
    assert len(list((tmp_path / "state" / "mqtt-queue" / "door").glob("0*.json"))) == 1  # for the next run


def test_check_says_whether_the_broker_takes_the_login(broker: MosquittoBroker, tmp_path: Path) -> None:
    url = f"mqtt://gclf@{broker.host}:{broker.port}"
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(GCLF_PASSWORD + "\n")
    password_file.chmod(0o600)
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text("not-the-password-4Xq\n")
    wrong_file.chmod(0o600)

    good = CliRunner().invoke(main, ["--check", "--mqtt", url, "--mqtt-password-file", str(password_file)])
    wrong = CliRunner().invoke(main, ["--check", "--mqtt", url, "--mqtt-password-file", str(wrong_file)])

    good_line = next(line for line in good.stdout.splitlines() if " mqtt: " in line)
    wrong_line = next(line for line in wrong.stdout.splitlines() if " mqtt: " in line)
    assert good_line.startswith("ok") and f"accepts user gclf with the password from the file {password_file}" in good_line
    assert wrong_line.startswith("PROBLEM") and "refused user gclf" in wrong_line and wrong.exit_code == 12
    assert GCLF_PASSWORD not in good.output + wrong.output and "not-the-password" not in wrong.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--mqtt-discovery"], "--mqtt-discovery only applies with --mqtt"),
        (["--mqtt-queue-max", "5", "--mqtt-ca", "{model}"], "--mqtt-ca, --mqtt-queue-max only apply with --mqtt"),
        (["--metrics-public"], "--metrics-public opens /metrics of --serve"),
        (["--serve", "0.0.0.0:0", "--metrics-public"], "--metrics-public serves /metrics without the token, so only on this machine"),
        (["--name", "front/door", "--mqtt", "mqtt://127.0.0.1"], "the camera name 'front/door' cannot be used"),
        (["--mqtt", "mqtt://gclf:hunter2-secret@127.0.0.1"], "the MQTT address holds a password"),
    ],
)
def test_options_that_need_another_say_so(tiny_onnx, tmp_path: Path, args: list[str], says: str) -> None:
    clip = people_clip(tmp_path / "one.avi", ["red"], fps=FPS, walk_s=1.0, gap_s=0.0)
    model = tiny_onnx("faces.onnx", props_update=FACES_MODEL)
    result = CliRunner().invoke(main, [str(model), "--video", str(clip), "--headless", *[a.format(model=model) for a in args]], env={"STATE_DIRECTORY": str(tmp_path)})
    assert result.exit_code == 2 and says in result.stderr, result.output
    assert "hunter2-secret" not in result.output
