"""mqtts://: a real Mosquitto with a TLS listener and a certificate from a throw-away CA;
with that CA the check passes and events arrive, without it the check says the certificate
is not trusted, and a plain mqtt:// client to the TLS port is told something is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from mosquitto_testutil import MosquittoBroker, Subscriber, make_tls_files

from gclf.runtime.errors import UsageError
from gclf.runtime.mqtt.check import check_broker
from gclf.runtime.mqtt.client import make_client
from gclf.runtime.mqtt.publisher import MqttPublisher
from gclf.runtime.mqtt.settings import PASSWORD_ENV, broker_settings

PASSWORD = "gclf-pw-Tl5Xs2Qa"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path / "broker", {"gclf": PASSWORD, "house": "house-pw"}, tls=make_tls_files(tmp_path / "tls"))
    yield broker
    broker.stop()


def test_mqtts_with_the_brokers_ca(tls_broker: MosquittoBroker, tmp_path: Path) -> None:
    env = {PASSWORD_ENV: PASSWORD}
    settings = broker_settings(f"mqtts://gclf@127.0.0.1:{tls_broker.port}", ca_file=tls_broker.ca, environ=env)
    ok = check_broker(settings, timeout_s=5)
    assert ok.ok and ok.text.startswith("the MQTT broker at mqtts://")

    untrusted = check_broker(broker_settings(f"mqtts://gclf@127.0.0.1:{tls_broker.port}", environ=env), timeout_s=5)
    assert not untrusted.ok and "does not trust" in untrusted.text

    plain = check_broker(broker_settings(f"mqtt://gclf@127.0.0.1:{tls_broker.port}", environ=env), timeout_s=2)
    assert not plain.ok and "mqtts://" in plain.text

    house = Subscriber(tls_broker, "house", "house-pw", topics=("gclf/#",))
    publisher = MqttPublisher(settings, camera="door", queue_folder=tmp_path / "queue", report=lambda s: None)
    try:
        event_id = publisher.event({"event": "track", "track": 1, "label": "man"})
        messages = house.wait_for(lambda m: any(x.topic == "gclf/door/event" for x in m))
    finally:
        publisher.close()
        house.close()
    assert [m.json()["id"] for m in messages if m.topic == "gclf/door/event"] == [event_id]


def test_a_ca_file_that_is_no_certificate_is_one_sentence(tmp_path: Path) -> None:
    not_a_cert = tmp_path / "ca.pem"
    not_a_cert.write_text("hello\n")
    settings = broker_settings("mqtts://broker.lan", ca_file=not_a_cert, environ={})
    with pytest.raises(UsageError, match="cannot be used"):
        make_client(settings, "gclf-test")
