"""A short fleet (benchmarks/fleet_bench.py): four gclf-infer processes on generated videos of
known people report to a real Mosquitto (password file, loopback), which is stopped for a
few seconds mid-run and started again; one gclf is then killed with SIGKILL.

Delivery is at least once (MQTT QoS 1): a consumer drops duplicates by the events' unique
id, and so does this test. Then every event each process wrote down arrives, in order, and
is one of the clip's people; the killed camera shows `offline` within 1.5 keepalives; the
counts add up over the fleet; nothing was dropped. Its /metrics passes promtool and a real
Prometheus scrapes two of them. The bench runs the long version (a 20 s outage) and prints
its figures.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest.importorskip("paho.mqtt")  # the mqtt extra
pytest.importorskip("tornado")  # the serve extra
pytest.importorskip("prometheus_client")

from gclf_testutil import find_program  # noqa: E402

from benchmarks.fleet_bench import COLOURS, KEEPALIVE_S, event_key, run_fleet  # noqa: E402

OUTAGE_S = 3.0


def _samples(text: bytes) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name: s.value for f in text_string_to_metric_families(text.decode()) for s in f.samples if not s.labels}


def test_a_fleet_loses_no_event_across_a_broker_restart_and_a_killed_camera_shows_offline(tmp_path: Path) -> None:
    prometheus = find_program("prometheus") is not None
    result = run_fleet(tmp_path, cameras=4, people=7, outage_s=OUTAGE_S, prometheus=prometheus)
    report = result.report()

    for camera in result.cameras:
        written = camera.written_events()
        unique = [event for event, _ in result.unique_events(camera.name)]
        # Every event the process wrote down arrived; deduplicated by id, each once, in order.
        assert [event_key(e) for e in unique] == [event_key(e) for e in written], report
        assert len({e["boot"] for e in unique}) == 1 and [e["seq"] for e in unique] == list(range(1, len(unique) + 1)), report
        assert all(e["id"] == f"{camera.name}:{e['boot']}:{e['seq']}" and e["camera"] == camera.name for e in unique)
        assert result.last_json(f"gclf/{camera.name}/queue") is None or result.last_json(f"gclf/{camera.name}/queue")["dropped"] == 0

    victim = next(c for c in result.cameras if c.name == result.victim)
    survivors = [c for c in result.cameras if c is not victim]
    for camera in survivors:
        assert camera.exit_code == 0, camera.stderr_tail()
        # The clip's people, one event each, with their labels.
        assert [e["label"] for e in camera.written_events()] == camera.labels, report
        counts = result.last_json(f"gclf/{camera.name}/counts")
        assert counts is not None and counts["total"] == {label: camera.labels.count(label) for label in COLOURS}, report
        assert counts["events_dropped"] == 0
        assert result.last_json(f"gclf/{camera.name}/queue") == {"waiting": 0, "dropped": 0, "max": 2000}
        assert result.on(f"gclf/{camera.name}/status")[-1].payload == b"offline"  # a clean end says so itself
    fleet_counted = sum(sum(result.last_json(f"gclf/{c.name}/counts")["total"].values()) for c in survivors)
    assert fleet_counted == sum(len(c.labels) for c in survivors) == sum(len(result.unique_events(c.name)) for c in survivors)

    # The killed one: what it saw up to then (a prefix of its people), and its last will.
    assert victim.exit_code == -9
    seen = [e["label"] for e in victim.written_events()]
    assert 2 <= len(seen) < len(victim.labels) and seen == victim.labels[: len(seen)], report
    offline = result.offline_after_kill_s()
    assert offline is not None and offline <= 1.5 * KEEPALIVE_S, report

    # Events were kept while the broker was away, and delivered when it was back.
    assert result.latencies(waited=True), report

    # /healthz while frames flowed, and /metrics from a live process, scraped by Prometheus.
    assert result.healthz == (200, b"ok\n")
    samples = _samples(result.metrics_text)
    assert samples["gclf_frames_processed_total"] > 0 and samples["gclf_camera_up"] == 1 and samples["gclf_mqtt_connected"] == 1
    if prometheus:
        assert len(result.prometheus) == 2 and all(v > 0 for v in result.prometheus.values()), report
    promtool = find_program("promtool")
    if promtool is None or not prometheus:
        pytest.skip("Prometheus is not installed: python tools/test_deps.py installs it (Debian: apt-get install prometheus)")
    done = subprocess.run([promtool, "check", "metrics"], input=result.metrics_text, capture_output=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr
