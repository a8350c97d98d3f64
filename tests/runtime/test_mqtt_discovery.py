"""Home Assistant discovery: the retained config messages a real broker holds after the
publisher connected, checked against Home Assistant's documented MQTT discovery schema, and
their value templates against the counts message gclf actually published."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from mosquitto_testutil import Message, MosquittoBroker, Subscriber

from gclf.runtime.mqtt.discovery import discovery_messages
from gclf.runtime.mqtt.publisher import MqttPublisher
from gclf.runtime.mqtt.settings import PASSWORD_ENV, broker_settings
from gclf.runtime.mqtt.topics import Topics

PASSWORD = "gclf-pw-Jd83kQz"
HOUSE_PASSWORD = "house-pw-Vb27Lm"
LABELS = ("man", "woman", "Men 20-30")  # one label that is no valid id, to be made one

# Home Assistant's MQTT discovery schema, as documented (integrations/mqtt: "Discovery
# topic", the sensor and binary_sensor pages) and enforced by its mqtt integration:
# discovery.py's TOPIC_MATCHER, schemas.py (MQTT_ENTITY_COMMON_SCHEMA, the device and origin
# schemas), sensor.py and binary_sensor.py.
DISCOVERY_TOPIC = re.compile(r"^homeassistant/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config$")
COMMON_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic", "payload_available",
    "payload_not_available", "device", "origin", "enabled_by_default", "entity_category", "entity_picture", "icon",
    "json_attributes_template", "json_attributes_topic", "object_id", "default_entity_id", "unique_id", "name",
    "qos", "encoding", "state_topic", "value_template",
}
COMPONENT_KEYS = {
    "sensor": COMMON_KEYS | {"device_class", "expire_after", "force_update", "last_reset_value_template", "options",
                             "state_class", "suggested_display_precision", "unit_of_measurement"},
    "binary_sensor": COMMON_KEYS | {"device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on"},
}
REQUIRED_KEYS = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}}
DEVICE_KEYS = {"identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version", "serial_number",
               "sw_version", "via_device", "suggested_area", "configuration_url"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
BINARY_SENSOR_DEVICE_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas", "heat",
    "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
    "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}
ICON = re.compile(r"^[a-z0-9-]+:[a-z0-9-]+$")  # cv.icon: "prefix:name"
VALUE_JSON_PATH = re.compile(r"value_json((?:\.[A-Za-z_]\w*|\[\"(?:[^\"\\]|\\.)*\"\])+)")
PATH_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[(\"(?:[^\"\\]|\\.)*\")\]")


@pytest.fixture
def published(tmp_path: Path) -> Iterator[tuple[list[Message], list[Message]]]:
    """(discovery configs as a client subscribing afterwards gets them, everything under gclf/)."""
    broker = MosquittoBroker(tmp_path / "broker", {"gclf": PASSWORD, "house": HOUSE_PASSWORD})
    house = Subscriber(broker, "house", HOUSE_PASSWORD, topics=("gclf/#",))
    settings = broker_settings(f"mqtt://gclf@{broker.host}:{broker.port}", environ={PASSWORD_ENV: PASSWORD})
    publisher = MqttPublisher(settings, camera="front-door", queue_folder=tmp_path / "queue", labels=LABELS,
                              discovery=True, model="faces.int8.onnx", report=lambda s: None)
    expected = len(discovery_messages(Topics("front-door"), LABELS))
    try:
        publisher.publish_counts({"at": 5.0, "total": {"woman": 3, "Men 20-30": 1}, "last_minute": {"woman": 1}, "last_hour": {"woman": 2}}, fps=12.5)
        gclf = house.wait_for(lambda m: any(x.topic == "gclf/front-door/counts" for x in m))
        # Home Assistant subscribes whenever it starts: the configs must be retained.
        late = Subscriber(broker, "house", HOUSE_PASSWORD, topics=("homeassistant/#",), client_id="home-assistant")
        configs = late.wait_for(lambda m: len(m) >= expected)
        late.close()
        yield configs, gclf
    finally:
        publisher.close()
        house.close()
        broker.stop()


def _value_paths(template: str) -> list[list[str]]:
    """The value_json field paths a template reads: `value_json.a["b c"]` -> ["a", "b c"]."""
    paths = []
    for match in VALUE_JSON_PATH.finditer(template):
        paths.append([name or json.loads(quoted) for name, quoted in PATH_STEP.findall(match.group(1))])
    return paths


def test_discovery_configs_follow_home_assistants_schema(published: tuple[list[Message], list[Message]]) -> None:
    configs, gclf = published
    topics = Topics("front-door")
    received_topics = {m.topic for m in gclf}
    assert configs and all(m.retain for m in configs)
    unique_ids, devices, components = set(), [], []
    for message in configs:
        match = DISCOVERY_TOPIC.match(message.topic)
        assert match, message.topic
        component = match["component"]
        components.append(component)
        payload = message.json()
        assert component in COMPONENT_KEYS
        assert REQUIRED_KEYS[component] <= payload.keys() <= COMPONENT_KEYS[component], set(payload) - COMPONENT_KEYS[component]
        assert "availability" not in payload or "availability_topic" not in payload  # exclusive
        # Every topic it reads is one gclf publishes, and gclf did publish on it.
        for key in ("state_topic", "availability_topic"):
            assert payload[key] in topics.all() and payload[key] in received_topics
        assert payload.get("payload_available", "online") == "online" and payload.get("payload_not_available", "offline") == "offline"
        assert isinstance(payload["unique_id"], str) and payload["unique_id"] not in unique_ids
        unique_ids.add(payload["unique_id"])
        device = payload["device"]
        assert device.keys() <= DEVICE_KEYS and device["identifiers"] and all(isinstance(i, str) for i in device["identifiers"])
        devices.append(json.dumps(device, sort_keys=True))
        assert payload["origin"].keys() <= ORIGIN_KEYS and payload["origin"]["name"]
        assert payload.get("state_class", "measurement") in STATE_CLASSES
        assert payload.get("entity_category", "diagnostic") in ENTITY_CATEGORIES
        assert "icon" not in payload or ICON.match(payload["icon"])
        if component == "binary_sensor":
            assert payload["device_class"] in BINARY_SENSOR_DEVICE_CLASSES
    assert len(set(devices)) == 1  # one device per camera, its sensors grouped under it
    assert components.count("sensor") == 3 * len(LABELS) + 3 and components.count("binary_sensor") == 1  # + FPS, dropped, waiting; camera up


def test_every_value_template_reads_fields_of_the_counts_message(published: tuple[list[Message], list[Message]]) -> None:
    configs, gclf = published
    counts = next(m.json() for m in gclf if m.topic == "gclf/front-door/counts")
    names = {m.json()["name"] for m in configs}
    for label in LABELS:  # each label's three windows
        assert {f"{label} last minute", f"{label} last hour", f"{label} total"} <= names
    assert {"FPS", "camera"} <= names
    for message in configs:
        template = message.json()["value_template"]
        paths = _value_paths(template)
        assert paths, template
        for path in paths:
            value: Any = counts
            for step in path:
                assert isinstance(value, dict) and step in value, f"{template}: {step!r} not in the counts message"
                value = value[step]


def test_the_templates_render_what_home_assistant_expects(published: tuple[list[Message], list[Message]]) -> None:
    jinja2 = pytest.importorskip("jinja2")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    configs, gclf = published
    counts = next(m.json() for m in gclf if m.topic == "gclf/front-door/counts")
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)  # a missing field fails here
    rendered = {}
    for message in configs:
        payload = message.json()
        value = env.from_string(payload["value_template"]).render(value_json=counts).strip()
        rendered[payload["name"]] = value
        if message.topic.startswith("homeassistant/binary_sensor/"):
            assert value in (payload["payload_on"], payload["payload_off"])
        elif "state_class" in payload:
            float(value)  # numeric, as a sensor with a state class must be
    assert rendered["woman total"] == "3" and rendered["Men 20-30 total"] == "1" and rendered["man total"] == "0"
    assert rendered["woman last minute"] == "1" and rendered["FPS"] == "12.5" and rendered["camera"] == "ON"


def test_unsure_gets_its_sensors_beside_the_classes() -> None:
    configs = {payload["name"]: payload for _, payload in discovery_messages(Topics("door"), ("man", "woman", "unsure"))}

    assert configs["unsure total"]["value_template"] == '{{ value_json.total["unsure"] | default(0) }}'
    assert configs["unsure last minute"]["icon"] == "mdi:account-question"
    assert configs["man total"]["icon"] == "mdi:account-multiple"


def test_the_counts_message_has_unsure_apart_and_zero_filled() -> None:
    from gclf.runtime.mqtt.payloads import counts_payload

    payload = counts_payload({"at": 1.0, "total": {"man": 2, "unsure": 1}}, labels=("man", "woman", "unsure"), fps=10.0,
                             camera_up=True, events_dropped=0, events_waiting=0)
    assert payload["total"] == {"man": 2, "woman": 0, "unsure": 1}
    assert payload["last_minute"] == {"man": 0, "woman": 0, "unsure": 0}


def test_two_cameras_never_share_an_id() -> None:
    first = discovery_messages(Topics("door"), ("a b", "a_b", "a-b"))
    second = discovery_messages(Topics("door2"), ("a b", "a_b", "a-b"))
    topics = [t for t, _ in first + second]
    ids = [p["unique_id"] for _, p in first + second]
    assert len(set(topics)) == len(topics) and len(set(ids)) == len(ids)
    assert all(DISCOVERY_TOPIC.match(t) for t in topics)
