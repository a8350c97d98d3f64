"""Home Assistant MQTT discovery: the retained config messages that make each camera a device
in Home Assistant, with no YAML.

Per camera, on `<prefix>/<component>/<node>/<object>/config` (prefix "homeassistant"; node
`gclf_<camera>`, both ids of `[a-zA-Z0-9_-]` as discovery requires):

    sensor         <label> last minute, <label> last hour, <label> total   (per label, and for
                   unsure where the run has a confidence threshold)
    sensor         FPS, events dropped, events waiting                      (diagnostic)
    binary_sensor  camera (connectivity: whether the camera delivers frames)

Every state comes from the retained `gclf/<camera>/counts` message through a value template;
every entity is available while `gclf/<camera>/status` says "online" (Home Assistant's
default payloads), so a dead device's entities turn unavailable through its last will.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from gclf.runtime.labels import UNSURE
from gclf.runtime.mqtt.topics import Topics

DEFAULT_PREFIX = "homeassistant"
ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
WINDOW_NAMES = {"last_minute": "last minute", "last_hour": "last hour", "total": "total"}
PEOPLE_UNIT = "people"


def node_id(camera: str) -> str:
    return "gclf_" + ID_CHARS.sub("_", camera)


def _object_ids(labels: Sequence[str]) -> dict[str, str]:
    """A discovery object id per label, of [a-zA-Z0-9_-], distinct even when two labels
    differ only in characters that are replaced."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for label in labels:
        base = ID_CHARS.sub("_", label).strip("_").lower() or "label"
        candidate, n = base, 2
        while candidate in used:
            candidate, n = f"{base}_{n}", n + 1
        used.add(candidate)
        out[label] = candidate
    return out


def discovery_messages(
    topics: Topics,
    labels: Sequence[str],
    *,
    prefix: str = DEFAULT_PREFIX,
    model: str | None = None,
    sw_version: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of every retained discovery config for this camera."""
    node = node_id(topics.camera)
    device: dict[str, Any] = {"identifiers": [node], "name": topics.camera, "manufacturer": "gclf", "model": model or "gclf camera"}
    if sw_version:
        device["sw_version"] = sw_version
    origin: dict[str, Any] = {"name": "gclf"}
    if sw_version:
        origin["sw_version"] = sw_version

    def entity(component: str, object_id: str, name: str, template: str, **extra: Any) -> tuple[str, dict[str, Any]]:
        payload = {
            "name": name,
            "unique_id": f"{node}_{object_id}",
            "state_topic": topics.counts,
            "value_template": template,
            "availability_topic": topics.status,
            "device": device,
            "origin": origin,
            **extra,
        }
        return f"{prefix}/{component}/{node}/{object_id}/config", payload

    messages = []
    for label, object_id in _object_ids(labels).items():
        key = json.dumps(label)  # a Jinja string literal, whatever the label holds
        for window, words in WINDOW_NAMES.items():
            messages.append(entity(
                "sensor", f"{object_id}_{window}", f"{label} {words}",
                f"{{{{ value_json.{window}[{key}] | default(0) }}}}",
                unit_of_measurement=PEOPLE_UNIT,
                state_class="total_increasing" if window == "total" else "measurement",
                icon="mdi:account-question" if label == UNSURE else "mdi:account-multiple",
            ))
    messages.append(entity("sensor", "fps", "FPS", "{{ value_json.fps }}", unit_of_measurement="fps", state_class="measurement",
                           icon="mdi:speedometer", entity_category="diagnostic"))
    messages.append(entity("sensor", "events_dropped", "events dropped", "{{ value_json.events_dropped }}", state_class="total_increasing",
                           icon="mdi:delete-alert", entity_category="diagnostic"))
    messages.append(entity("sensor", "events_waiting", "events waiting", "{{ value_json.events_waiting }}", state_class="measurement",
                           icon="mdi:tray-full", entity_category="diagnostic"))
    messages.append(entity("binary_sensor", "camera", "camera", "{{ 'ON' if value_json.camera_up else 'OFF' }}", device_class="connectivity",
                           payload_on="ON", payload_off="OFF"))
    return messages
