"""The MQTT publisher against a real Mosquitto broker (started per test on a free loopback
port, with a password file): events with unique ids in order, nothing lost while the broker
is away, the queue's cap, a restart with a queue on disk, online/offline through the last
will, and a wrong password said in one sentence that does not hold it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from mosquitto_testutil import Message, MosquittoBroker, Subscriber

from gclf.runtime.mqtt.check import check_broker
from gclf.runtime.mqtt.publisher import MqttPublisher
from gclf.runtime.mqtt.settings import PASSWORD_ENV, BrokerSettings, broker_settings
from gclf.runtime.mqtt.topics import Topics
from gclf.runtime.live.people import TrackEvent

GCLF_PASSWORD = "gclf-pw-7Hq2xV9mLr"  # distinctive: every output is grepped for it
HOUSE_PASSWORD = "house-pw-Rk4Wd8"
WAIT_S = 10.0  # the longest any one expected message may take
BROKER_KEEPALIVE_CHECK_S = 6.0  # how often Mosquitto 2.0 looks for clients that fell silent ("+ 5 <" whole seconds)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    server = MosquittoBroker(tmp_path / "broker", {"gclf": GCLF_PASSWORD, "house": HOUSE_PASSWORD})
    yield server
    server.stop()


@pytest.fixture
def house(broker: MosquittoBroker) -> Iterator[Subscriber]:
    """What the house sees: everything under gclf/, through stops and starts of the broker."""
    subscriber = Subscriber(broker, "house", HOUSE_PASSWORD, topics=("gclf/#",))
    yield subscriber
    subscriber.close()


def _settings(broker: MosquittoBroker, *, password: str = GCLF_PASSWORD, keepalive_s: int = 2) -> BrokerSettings:
    return broker_settings(f"mqtt://gclf@{broker.host}:{broker.port}", environ={PASSWORD_ENV: password}, keepalive_s=keepalive_s)


@contextlib.contextmanager
def _publisher(broker: MosquittoBroker, folder: Path, camera: str = "door", **options: Any) -> Iterator[tuple[MqttPublisher, list[str]]]:
    reports: list[str] = []
    options.setdefault("reconnect_max_s", 0.5)
    publisher = MqttPublisher(_settings(broker), camera=camera, queue_folder=folder, report=reports.append, **options)
    try:
        yield publisher, reports
    finally:
        publisher.close()


def _event(n: int) -> TrackEvent:
    return TrackEvent(n, "woman" if n % 2 else "man", 0.9, {"man": 0.1, "woman": 0.9}, 1000.0 + n, 1001.0 + n, 12, (10, 20, 30, 40))


def _events(messages: list[Message], camera: str = "door") -> list[dict[str, Any]]:
    return [m.json() for m in messages if m.topic == Topics(camera).event]


def _unique(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At least once, deduplicated by id as a consumer does (the first copy kept)."""
    seen: set[str] = set()
    return [e for e in events if not (e["id"] in seen or seen.add(e["id"]))]


def _wait_until(condition: Any, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_events_arrive_once_each_with_unique_ids_in_order(broker: MosquittoBroker, house: Subscriber, tmp_path: Path) -> None:
    n = 45  # more than the publisher keeps in flight at once
    with _publisher(broker, tmp_path / "queue") as (publisher, reports):
        ids = [publisher.event(_event(i)) for i in range(n)]
        messages = house.wait_for(lambda m: len(_events(m)) >= n)
        assert _wait_until(lambda: publisher.stats().waiting == 0)
        assert publisher.stats().delivered == n
    events = _events(messages)
    assert [e["id"] for e in events] == ids  # each once, in order (no broker restart here)
    assert len(set(ids)) == n and [e["seq"] for e in events] == list(range(1, n + 1))
    assert {e["camera"] for e in events} == {"door"} and len({e["boot"] for e in events}) == 1
    for i, e in enumerate(events):  # the --events line, with the id in front
        assert {k: v for k, v in e.items() if k not in ("id", "camera", "boot", "seq", "queued_at")} == json.loads(json.dumps(_event(i).to_json()))
    assert not list((tmp_path / "queue").glob("0*.json"))  # acknowledged: removed from disk
    assert reports == []
    # A clean close says so itself; the house hears it a moment after the publisher closed.
    house.wait_for(lambda ms: any(m.topic == "gclf/door/status" and m.payload == b"offline" for m in ms))
    status = [m.payload for m in house.on("gclf/door/status")]
    assert status[0] == b"online" and status[-1] == b"offline"


def test_no_event_is_lost_while_the_broker_is_away(broker: MosquittoBroker, house: Subscriber, tmp_path: Path) -> None:
    with _publisher(broker, tmp_path / "queue") as (publisher, reports):
        before = [publisher.event(_event(i)) for i in range(5)]
        house.wait_for(lambda m: len(_events(m)) >= 5)
        broker.stop()
        during = [publisher.event(_event(i)) for i in range(5, 15)]
        assert _wait_until(lambda: publisher.stats().waiting == 10 and not publisher.stats().connected)
        time.sleep(2.0)  # the broker stays away a while
        assert len(list((tmp_path / "queue").glob("0*.json"))) == 10  # kept on disk meanwhile
        broker.start()
        after = [publisher.event(_event(i)) for i in range(15, 20)]
        messages = house.wait_for(lambda m: len({e["id"] for e in _events(m)}) >= 20)
        assert _wait_until(lambda: publisher.stats().waiting == 0)
    delivered = _unique(_events(messages))
    assert [e["id"] for e in delivered] == before + during + after  # 0 lost, in order
    assert any("lost the MQTT broker" in r for r in reports) and any("connected to the MQTT broker" in r for r in reports)


def test_at_the_cap_the_oldest_are_dropped_and_the_count_is_published(broker: MosquittoBroker, house: Subscriber, tmp_path: Path) -> None:
    broker.stop()  # away from the start: everything waits on disk
    with _publisher(broker, tmp_path / "queue", queue_max=5, labels=("man", "woman")) as (publisher, reports):
        ids = [publisher.event(_event(i)) for i in range(8)]
        assert _wait_until(lambda: publisher.stats().dropped == 3 and publisher.stats().waiting == 5)
        publisher.publish_counts({"at": 1.0, "total": {"woman": 2}}, fps=9.5)
        assert sum("queue" in r and "full" in r for r in reports) == 1  # said once, not per event
        assert "3 dropped (cap 5)" in publisher.stats().line()
        broker.start()
        messages = house.wait_for(lambda m: len({e["id"] for e in _events(m)}) >= 5)
        assert _wait_until(lambda: publisher.stats().waiting == 0)
        messages = house.wait_for(lambda m: any(x.topic == "gclf/door/queue" and x.json()["waiting"] == 0 for x in m))
    assert [e["id"] for e in _unique(_events(messages))] == ids[3:]  # the newest five, in order
    queue_state = [m.json() for m in messages if m.topic == "gclf/door/queue"]
    assert queue_state and all(q["dropped"] == 3 and q["max"] == 5 for q in queue_state)
    counts = [m.json() for m in messages if m.topic == "gclf/door/counts"]
    assert counts and counts[-1]["events_dropped"] == 3
    assert counts[-1]["total"] == {"man": 0, "woman": 2} and counts[-1]["fps"] == 9.5


def test_a_restart_delivers_what_the_last_run_left_on_disk(broker: MosquittoBroker, house: Subscriber, tmp_path: Path) -> None:
    broker.stop()
    with _publisher(broker, tmp_path / "queue") as (first, _):
        left = [first.event(_event(i)) for i in range(4)]
        assert _wait_until(lambda: first.stats().waiting == 4)
    broker.start()
    with _publisher(broker, tmp_path / "queue") as (second, _):
        assert second.ids.boot != first.ids.boot
        new = [second.event(_event(i)) for i in range(4, 6)]
        messages = house.wait_for(lambda m: len({e["id"] for e in _events(m)}) >= 6)
        assert _wait_until(lambda: second.stats().waiting == 0)
    assert [e["id"] for e in _unique(_events(messages))] == left + new  # the old run's first, ids kept


CHILD = """
import sys, time
from gclf.runtime.mqtt.publisher import MqttPublisher
from gclf.runtime.mqtt.settings import broker_settings
settings = broker_settings(sys.argv[1], keepalive_s=int(sys.argv[2]))
publisher = MqttPublisher(settings, camera=sys.argv[3], queue_folder=sys.argv[4])
while not publisher.stats().connected:
    time.sleep(0.02)
print("connected", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_dead_or_hung_device_shows_offline_within_one_and_a_half_keepalives(
    broker: MosquittoBroker, house: Subscriber, tmp_path: Path, how: str
) -> None:
    keepalive_s = 1
    env = {**os.environ, PASSWORD_ENV: GCLF_PASSWORD}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, f"mqtt://gclf@{broker.host}:{broker.port}", str(keepalive_s), "porch", str(tmp_path / "queue")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "connected"
        house.wait_for(lambda m: any(x.topic == "gclf/porch/status" and x.payload == b"online" for x in m))
        # killed: the kernel closes its socket; hung (stopped): the socket stays open and only
        # the missing keepalive tells, after 1.5 keepalives at most.
        child.send_signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        gone = time.time()
        messages = house.wait_for(lambda m: any(x.topic == "gclf/porch/status" and x.payload == b"offline" for x in m))
    finally:
        child.kill()
        output = child.communicate(timeout=10)[0]
    offline = next(x for x in messages if x.topic == "gclf/porch/status" and x.payload == b"offline")
    # The broker publishes the will at once for a closed socket; for a silent one, when its
    # keepalive check finds it, and Mosquitto 2.0 runs that check every 6 s on a clock of whole
    # seconds (its keepalive.c; 2.1 checks every second).
    slack = 0.25 if how == "killed" else BROKER_KEEPALIVE_CHECK_S + 1.0
    assert offline.at - gone <= 1.5 * keepalive_s + slack
    assert GCLF_PASSWORD not in output


def test_a_wrong_password_is_one_sentence_that_does_not_hold_it(broker: MosquittoBroker, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    wrong = "wrong-pw-Bn6Tq0Zx"
    settings = _settings(broker, password=wrong)
    result = check_broker(settings, timeout_s=5)
    assert not result.ok and "refused user gclf" in result.text and f"${PASSWORD_ENV}" in result.text
    reports: list[str] = []
    publisher = MqttPublisher(settings, camera="door", queue_folder=tmp_path / "queue", report=reports.append, reconnect_max_s=0.2)
    try:
        publisher.event(_event(1))
        assert _wait_until(lambda: reports)
        time.sleep(1.0)  # several refused tries: still said once
        stats = publisher.stats()
    finally:
        publisher.close()
    assert len(reports) == 1 and "refused user gclf" in reports[0] and stats.waiting == 1 and not stats.connected
    for text in [result.text, reports[0], stats.problem]:
        assert "\n" not in text and ". " not in text  # one sentence
    captured = capfd.readouterr()
    everything = "\n".join([result.text, *reports, repr(settings), repr(stats), captured.out, captured.err, broker.log.read_text()])
    assert wrong not in everything and GCLF_PASSWORD not in everything


def test_the_check_answers_in_bounded_time_when_nothing_or_no_broker_answers(broker: MosquittoBroker) -> None:
    ok = check_broker(_settings(broker))
    assert ok.ok and "accepts user gclf" in ok.text
    broker.stop()
    started = time.monotonic()
    refused = check_broker(_settings(broker), timeout_s=2)
    assert not refused.ok and "cannot reach" in refused.text
    import socket

    with socket.socket() as silent:  # takes connections, says nothing (a wrong service, a stuck broker)
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        quiet = check_broker(broker_settings(f"mqtt://127.0.0.1:{silent.getsockname()[1]}", environ={}), timeout_s=1)
    assert not quiet.ok and "did not answer within 1 s" in quiet.text
    assert time.monotonic() - started < 2 + 1 + 3  # each within its timeout, plus a margin for a busy machine


def test_the_sink_publishes_the_counts_as_the_loop_runs(broker: MosquittoBroker, house: Subscriber, tmp_path: Path) -> None:
    from gclf.runtime.live.frames import FrameResult
    from gclf.runtime.mqtt.sink import MqttSink
    from gclf.runtime.live.people import PeopleCounts

    counts = PeopleCounts()
    with _publisher(broker, tmp_path / "queue", labels=("man", "woman")) as (publisher, _):
        sink = MqttSink(publisher, counts, every_s=2.0)
        assert sink.write(FrameResult(0, 1000.0, (), 10.0), None)
        first = house.wait_for(lambda m: any(x.topic == "gclf/door/counts" for x in m))
        for i in range(1, 40):  # 4 s of capture time at 10 frames/s
            counts.set_label(i, 1000.0 + i / 10, "woman" if i % 2 else "man", 1000.0 + i / 10)
            assert sink.write(FrameResult(i, 1000.0 + i / 10, (), 8.0), None)
        sink.close()
        messages = house.wait_for(lambda m: any(x.topic == "gclf/door/counts" and x.json()["total"] == {"man": 19, "woman": 20} for x in m))
    assert next(m.json() for m in first if m.topic == "gclf/door/counts")["total"] == {"man": 0, "woman": 0}  # the first frame's
    last = [m.json() for m in messages if m.topic == "gclf/door/counts"][-1]
    assert last["total"] == {"man": 19, "woman": 20} and last["fps"] == 8.0 and last["camera_up"] is True
    assert last["at"] == pytest.approx(1003.9)
