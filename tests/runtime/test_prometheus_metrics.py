"""The live metrics in Prometheus's text format: `promtool check metrics` passes on them, and
they say what the updates told them; a missing extra is named."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from gclf_testutil import REPO, find_program

from gclf.runtime.serve.metrics import CONTENT_TYPE, LiveMetrics
from gclf.runtime.live.people import TrackEvent


def _event(label: str) -> TrackEvent:
    return TrackEvent(1, label, 0.9, {label: 0.9}, 1.0, 2.0, 10, (0, 0, 8, 8))


def _metrics() -> LiveMetrics:
    metrics = LiveMetrics(labels=("man", "woman", "Men 20-30"), camera="door", model="faces.int8.onnx", version="0.1.0")
    for i in range(7):
        metrics.frame_processed(fps=12.5, inference_s=0.004 * (i + 1), detection_s=0.03 if i % 3 == 0 else None)
    metrics.frames_dropped(3)
    metrics.frames_dropped(5)  # the feed's running total: 5 in all
    for label in ("woman", "woman", "man"):
        metrics.track_ended(_event(label))
    metrics.camera_state(True)
    metrics.camera_state(False)
    metrics.camera_state(False)  # still down: one outage
    metrics.camera_state(True)
    metrics.mqtt_state(connected=True, waiting=4, dropped=2)
    metrics.viewers(2)
    return metrics


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_promtool_accepts_the_metrics() -> None:
    promtool = find_program("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: python tools/test_deps.py installs it (Debian: apt-get install prometheus)")
    text = _metrics().render()
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def test_the_metrics_say_what_the_loop_reported() -> None:
    samples = _samples(_metrics().render())
    assert samples[("gclf_frames_processed_total", ())] == 7
    assert samples[("gclf_frames_dropped_total", ())] == 5
    assert samples[("gclf_loop_fps", ())] == 12.5
    assert samples[("gclf_inference_duration_seconds_count", ())] == 7
    assert samples[("gclf_inference_duration_seconds_sum", ())] == pytest.approx(0.004 * 28)
    assert samples[("gclf_detection_duration_seconds_count", ())] == 3
    assert samples[("gclf_detection_duration_seconds_bucket", (("le", "0.025"),))] == 0
    assert samples[("gclf_detection_duration_seconds_bucket", (("le", "0.05"),))] == 3
    tracks = {dict(labels)["label"]: v for (name, labels), v in samples.items() if name == "gclf_tracks_total"}
    assert tracks == {"woman": 2, "man": 1, "Men 20-30": 0}  # every class, from 0
    assert samples[("gclf_camera_up", ())] == 1 and samples[("gclf_camera_outages_total", ())] == 1
    assert samples[("gclf_mqtt_connected", ())] == 1 and samples[("gclf_mqtt_queue_depth", ())] == 4
    assert samples[("gclf_mqtt_events_dropped_total", ())] == 2
    assert samples[("gclf_viewers", ())] == 2
    assert samples[("gclf_info", (("camera", "door"), ("model", "faces.int8.onnx"), ("version", "0.1.0")))] == 1
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_each_instance_has_a_registry_of_its_own() -> None:
    first, second = LiveMetrics(), LiveMetrics()  # the same names twice: no "duplicated timeseries"
    first.frame_processed(fps=1.0)
    assert _samples(first.render())[("gclf_frames_processed_total", ())] == 1
    assert _samples(second.render())[("gclf_frames_processed_total", ())] == 0


def test_only_the_metrics_module_imports_prometheus_client_and_never_its_http_server() -> None:
    sources = {p: p.read_text(encoding="utf-8") for p in (REPO / "runtime").rglob("*.py")}
    importing = [p.name for p, text in sources.items() if re.search(r"^\s*(import|from)\s+prometheus_client\b", text, flags=re.M)]
    assert importing == ["metrics.py"]
    assert not [p.name for p, text in sources.items() if "start_http_server" in text or "make_wsgi_app" in text]


# Imports fail for these packages, as where they are not installed.
BLOCKED = r"""
import importlib.abc, sys
class _Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Uninstalled())
from gclf.runtime.errors import MissingDependencyError
try:
    {make}
except MissingDependencyError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("blocked", "make", "extra"),
    [
        ("prometheus_client", "from gclf.runtime.serve.metrics import LiveMetrics; LiveMetrics()", '".[serve]" in a gclf checkout'),
        ("paho", "from gclf.runtime.mqtt.settings import broker_settings; from gclf.runtime.mqtt.publisher import MqttPublisher; "
                 "MqttPublisher(broker_settings('mqtt://127.0.0.1', environ={}), camera='door')", '".[mqtt]" in a gclf checkout'),
    ],
)
def test_a_missing_extra_is_named(blocked: str, make: str, extra: str) -> None:
    code = BLOCKED.format(blocked=(blocked,), make=make)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert extra in done.stdout and "\n" not in done.stdout.strip()
