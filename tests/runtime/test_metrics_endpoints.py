"""/metrics and /healthz on the --serve web server: the metrics behind the token (or, on
loopback only, public), fed by the live loop's MetricsSink; health without a token, 200 while
frames flow and 503 once they stop, with nothing else in the body."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("tornado")  # the serve extra
pytest.importorskip("prometheus_client")

from serve_testutil import get  # noqa: E402

from gclf.runtime.classifier import FaceResult  # noqa: E402
from gclf.runtime.errors import UsageError  # noqa: E402
from gclf.runtime.live.frames import FrameResult  # noqa: E402
from gclf.runtime.live.people import TrackEvent  # noqa: E402
from gclf.runtime.serve import ModelInfo, ServeAddress, WebSink  # noqa: E402
from gclf.runtime.serve.metrics import CONTENT_TYPE, LiveMetrics, MetricsSink  # noqa: E402

TOKEN = "k3J9-metrics-Qw7xZ2pLm0"
MODEL = ModelInfo("faces.onnx", "fp32", ("red", "blue"))


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text.decode()) for s in f.samples}


class _Stats:
    connected, waiting, dropped = True, 3, 1


def _sink(metrics: LiveMetrics, **options) -> WebSink:
    return WebSink(ServeAddress("127.0.0.1", 0), token=TOKEN, model=MODEL, metrics=metrics, **options)


def test_metrics_are_served_with_the_token_and_say_what_the_loop_did() -> None:
    metrics = LiveMetrics(labels=MODEL.classes, camera="door", model=MODEL.name, mqtt_stats=_Stats)
    feed = MetricsSink(metrics)
    web = _sink(metrics)
    try:
        for i in range(4):
            face = FaceResult((0, 0, 8, 8), "red", 0.9, {"red": 0.9, "blue": 0.1})
            result = FrameResult(i, 1000.0 + i, (face,), 10.0, (i % 2 == 0,), dropped=2 * i, inference_s=0.003,
                                 detection_s=0.02 if i % 2 == 0 else None)
            feed.write(result, None)
            web.write(result, None)
        feed.write_event(TrackEvent(1, "blue", 0.8, {"red": 0.2, "blue": 0.8}, 1000.0, 1003.0, 4, (0, 0, 8, 8)))
        refused = get(web.port, "/metrics")
        status, headers, body = get(web.port, "/metrics", token=TOKEN)
    finally:
        web.close()
    assert refused[0] == 403 and b"gclf_" not in refused[2]
    assert status == 200 and headers["content-type"] == CONTENT_TYPE
    samples = _samples(body)
    assert samples[("gclf_frames_processed_total", ())] == 4
    assert samples[("gclf_frames_dropped_total", ())] == 6  # the feed's running total at the last frame
    assert samples[("gclf_inference_duration_seconds_count", ())] == 4
    assert samples[("gclf_detection_duration_seconds_count", ())] == 2  # the frames the detector ran on
    assert samples[("gclf_tracks_total", (("label", "blue"),))] == 1 and samples[("gclf_tracks_total", (("label", "red"),))] == 0
    assert samples[("gclf_camera_up", ())] == 1 and samples[("gclf_viewers", ())] == 0
    assert samples[("gclf_mqtt_queue_depth", ())] == 3 and samples[("gclf_mqtt_events_dropped_total", ())] == 1


def test_metrics_public_is_for_loopback_only_and_still_checks_the_host() -> None:
    metrics = LiveMetrics(labels=MODEL.classes)
    web = _sink(metrics, metrics_public=True)
    try:
        public = get(web.port, "/metrics")
        rebound = get(web.port, "/metrics", headers={"Host": f"attacker.example:{web.port}"})
        page = get(web.port, "/latest")  # the rest still wants the token
    finally:
        web.close()
    assert public[0] == 200 and b"gclf_frames_processed_total" in public[2]
    assert rebound[0] == 403 and page[0] == 403
    with pytest.raises(UsageError, match="--metrics-public"):
        WebSink(ServeAddress("0.0.0.0", 0), token=TOKEN, model=MODEL, metrics=LiveMetrics(), metrics_public=True)


def test_without_metrics_there_is_no_metrics_page() -> None:
    web = WebSink(ServeAddress("127.0.0.1", 0), token=TOKEN, model=MODEL)
    try:
        assert get(web.port, "/metrics", token=TOKEN)[0] == 404
    finally:
        web.close()


def test_healthz_needs_no_token_says_up_while_frames_flow_and_nothing_else() -> None:
    metrics = LiveMetrics()
    web = _sink(metrics, stalled_after_s=0.5)
    try:
        before = get(web.port, "/healthz")  # no frame yet: not up
        web.write(FrameResult(0, 1000.0, (), 10.0), None)
        flowing = get(web.port, "/healthz")
        time.sleep(0.8)  # no frame for longer than stalled_after_s
        stalled = get(web.port, "/healthz")
        scraped = _samples(get(web.port, "/metrics", token=TOKEN)[2])
        web.write(FrameResult(1, 1001.0, (), 10.0), None)
        back = get(web.port, "/healthz")
    finally:
        web.close()
    assert (before[0], flowing[0], stalled[0], back[0]) == (503, 200, 503, 200)
    assert flowing[2] == b"ok\n" and stalled[2] == b"unavailable\n"  # no frame counts, no model, no names
    assert flowing[1]["cache-control"] == "no-store"
    assert scraped[("gclf_camera_up", ())] == 0  # the scrape saw the stall


def test_unsure_is_apart_in_counts_latest_metrics_and_the_page(tiny_onnx) -> None:
    import json

    import numpy as np
    from gclf_testutil import PURPLE_RGB, decision_record

    from gclf.runtime.classifier import Classifier
    from gclf.runtime.live.people import PeopleCounts, PersonTracker
    from gclf.runtime.serve.sink import make_web_sink

    model = tiny_onnx(decision=decision_record(0.7))
    clf = Classifier(model)
    counts = PeopleCounts()
    tracker = PersonTracker(counts=counts, min_confidence=clf.min_confidence)
    metrics = LiveMetrics(labels=clf.labels)
    feed = MetricsSink(metrics)
    web = make_web_sink("127.0.0.1:0", TOKEN, None, model, clf, counts=counts.snapshot, metrics=metrics)
    try:
        prediction = clf.predict(np.full((32, 32, 3), PURPLE_RGB, dtype=np.uint8))  # "blue" at about 0.59
        for i in range(3):
            faces = (FaceResult.of((10, 10, 40, 40), prediction),)
            result = FrameResult(i, 1000.0 + i, faces, 10.0, (True,), tracker.update(1000.0 + i, faces))
            feed.write(result, None)
            web.write(result, None)
        tracker.finish()
        for event in tracker.take_ended():
            feed.write_event(event)
        served = {path: get(web.port, path, token=TOKEN) for path in ("/counts", "/latest", "/metrics", "/")}
    finally:
        web.close()
    assert json.loads(served["/counts"][2])["total"] == {"unsure": 1}
    latest = json.loads(served["/latest"][2])
    (face,) = latest["faces"]
    assert (face["label"], face["best"], face["track_label"], face["track_best"]) == ("unsure", "blue", "unsure", "blue")
    assert latest["model"]["min_confidence"] == 0.7
    tracks = {dict(labels)["label"]: v for (name, labels), v in _samples(served["/metrics"][2]).items() if name == "gclf_tracks_total"}
    assert tracks == {"red": 0, "blue": 0, "unsure": 1}
    page = served["/"][2].decode()
    assert 'lab === "unsure"' in page and "li.unsure" in page and "d.model.min_confidence" in page
