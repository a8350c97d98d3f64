"""One person, one answer: track ids, per-track labels, --events, counts, --jsonl's cap.

People are textured squares (gclf_testutil's SquareDetector and the squares of test_live_tracking.py) whose
colour is what the tiny model answers: a "red" person has a red-dominated texture, with some
frames tinted the other way so that per-frame labels disagree, as a real model's do.
Speed is never asserted here (benchmarks/track_bench.py measures it).
"""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import gclf.runtime.faces
from gclf.runtime.classifier import Classifier, FaceResult
from gclf.runtime.cli.infer import main
from gclf.runtime.live.frames import FrameResult
from gclf.runtime.live.loop import track_events
from gclf.runtime.live.sinks import RotatingLineFile, SummarySink
from gclf.runtime.live.people import DEFAULT_MAX_MISSED, EDGE_MISSED, PersonTracker, PeopleCounts
from gclf_testutil import ListFeed
from gclf_testutil import FACES_MODEL, SquareDetector
from gclf_testutil import SHARED

H, W = 240, 320
SIDE = 56
WALK_FRAMES = 60  # each person crosses the frame in this many frames


def _face(box, label: str = "red", p: float = 0.8) -> FaceResult:
    other = "blue" if label == "red" else "red"
    return FaceResult(box, label, p, {label: p, other: 1 - p})


# --- the tracker ------------------------------------------------------------------------------


def test_a_face_moving_across_the_frame_is_one_track() -> None:
    tracker = PersonTracker()
    ids = [tracker.update(float(t), [_face((10 + 6 * t, 50, 60, 60))])[0].id for t in range(40)]
    assert set(ids) == {1}


def test_two_people_crossing_keep_their_ids() -> None:
    tracker = PersonTracker()
    seen: dict[str, set[int]] = {"left": set(), "right": set()}
    for t in range(50):
        left, right = (20 + 5 * t, 80, 60, 60), (270 - 5 * t, 90, 60, 60)
        # While they overlap the front one hides the other: the detector sees one face.
        overlapping = abs(left[0] - right[0]) < 50
        boxes = [left] if overlapping else [left, right]
        views = tracker.update(float(t), [_face(b) for b in boxes])
        seen["left"].add(views[0].id)
        if not overlapping:
            seen["right"].add(views[1].id)
    assert len(seen["left"]) == 1 and len(seen["right"]) == 1
    assert seen["left"] != seen["right"]


def test_a_track_outlives_a_few_missed_frames_and_ends_after_more() -> None:
    tracker = PersonTracker()
    box = (100, 100, 50, 50)
    first = [tracker.update(float(t), [_face(box)])[0].id for t in range(5)]
    for t in range(5, 5 + DEFAULT_MAX_MISSED):  # missed, yet kept
        tracker.update(float(t), [])
    assert tracker.take_ended() == []
    again = tracker.update(20.0, [_face(box)])[0].id
    assert again == first[0]
    for t in range(21, 22 + DEFAULT_MAX_MISSED):
        tracker.update(float(t), [])
    events = tracker.take_ended()
    assert [e.track for e in events] == [first[0]] and events[0].frames == 6
    assert (events[0].first_seen, events[0].last_seen) == (0.0, 20.0)


def test_a_face_that_walked_out_of_the_frame_ends_its_track_at_once() -> None:
    tracker = PersonTracker()
    for t in range(10):  # walking right at 20 px a frame, to the frame's edge
        tracker.update(float(t), [_face((100 + 20 * t, 50, 60, 60))], (240, 345))
    tracker.update(10.0, [], (240, 345))
    assert tracker.take_ended() == []  # expected at x 300 to 360: its centre (330) is still inside
    tracker.update(11.0, [], (240, 345))
    assert [e.frames for e in tracker.take_ended()] == [10]


def test_a_face_lost_at_the_frame_edge_is_not_continued_by_the_next_one_coming_in() -> None:
    tracker = PersonTracker()
    for t in range(10):  # half out of the frame at its left edge, the box clipped there
        first = tracker.update(float(t), [_face((0, 60, 30, 60))], (240, 320))[0].id
    for t in range(10, 10 + EDGE_MISSED + 1):
        tracker.update(float(t), [], (240, 320))
    later = tracker.update(20.0, [_face((0, 60, 30, 60))], (240, 320))[0].id  # someone else comes in there
    assert later != first


def test_the_track_label_is_the_mean_of_its_frames_probabilities() -> None:
    tracker = PersonTracker()
    # Three frames say blue weakly, two say red strongly: the mean says red.
    answers = [("blue", 0.55), ("blue", 0.55), ("blue", 0.55), ("red", 0.95), ("red", 0.95)]
    views = [tracker.update(float(t), [_face((50, 50, 40, 40 + t), label, p)])[0] for t, (label, p) in enumerate(answers)]
    tracker.finish()
    (event,) = tracker.take_ended()
    assert tracker.take_ended() == []  # handed over once
    assert views[-1].label == event.label == "red"
    assert event.probabilities["red"] == pytest.approx((0.45 * 3 + 0.95 * 2) / 5)
    assert event.largest_box == (50, 50, 40, 44)
    assert set(event.to_json()) == {"event", "track", "label", "confidence", "probabilities", "first_seen", "last_seen", "frames", "largest_box"}


def test_a_flicker_of_a_frame_or_two_makes_no_event_and_is_not_counted() -> None:
    counts = PeopleCounts()
    tracker = PersonTracker(counts=counts)
    tracker.update(0.0, [_face((10, 10, 30, 30))])
    tracker.update(1.0, [_face((10, 10, 30, 30))])
    tracker.finish()
    assert tracker.take_ended() == [] and counts.snapshot()["total"] == {}


def test_counts_per_label_over_the_last_minute_and_hour() -> None:
    counts = PeopleCounts()
    counts.set_label(1, 0.0, "red", 0.0)
    counts.set_label(2, 3000.0, "blue", 3000.0)
    counts.set_label(3, 3590.0, "red", 3590.0)
    counts.set_label(3, 3590.0, "blue", 3600.0)  # an open track's label changed
    snap = counts.snapshot(4000.0)
    assert snap["total"] == {"red": 1, "blue": 2}
    assert snap["last_hour"] == {"blue": 2}
    assert counts.snapshot(3620.0)["last_minute"] == {"blue": 1}
    assert counts.line() == "3 tracks (blue 2, red 1)"


# --- unsure: the track's answer below the confidence threshold ------------------------------


def test_a_track_is_unsure_by_its_mean_not_by_its_frames() -> None:
    tracker = PersonTracker(min_confidence=0.7)
    # Every frame is sure (0.9 and 0.8), but they disagree: the mean (red 0.55) is not.
    answers = [("red", 0.9), ("blue", 0.8), ("red", 0.9), ("blue", 0.8)]
    views = [tracker.update(float(t), [_face((50, 50, 40, 40), label, p)])[0] for t, (label, p) in enumerate(answers)]
    tracker.finish()
    (event,) = tracker.take_ended()

    assert (views[-1].label, views[-1].best) == ("unsure", "red")
    assert (event.label, event.best) == ("unsure", "red")
    assert event.confidence == pytest.approx(0.55)
    record = event.to_json()
    assert (record["label"], record["best"], record["confidence"]) == ("unsure", "red", 0.55)


def test_frames_each_below_the_threshold_can_still_make_a_sure_track() -> None:
    # A frame's own answer is unsure (0.65 < 0.7) now and then; the mean over the track is sure.
    tracker = PersonTracker(min_confidence=0.7)
    answers = [0.95, 0.65, 0.95, 0.65, 0.95]
    for t, p in enumerate(answers):
        tracker.update(float(t), [FaceResult((50, 50, 40, 40), "unsure" if p < 0.7 else "red", p, {"red": p, "blue": 1 - p}, "red")])
    tracker.finish()
    (event,) = tracker.take_ended()
    assert event.label == "red" and "best" not in event.to_json()


def test_without_a_threshold_a_weak_track_keeps_its_label() -> None:
    tracker = PersonTracker()
    for t in range(4):
        tracker.update(float(t), [_face((50, 50, 40, 40), "red", 0.51)])
    tracker.finish()
    assert tracker.take_ended()[0].label == "red"


def test_unsure_tracks_are_counted_apart_never_inside_a_labels_count() -> None:
    counts = PeopleCounts()
    tracker = PersonTracker(counts=counts, min_confidence=0.7)
    for t in range(3):  # person 1: sure red; person 2, far away: red at 0.6, unsure
        tracker.update(float(t), [_face((10, 10, 30, 30), "red", 0.9), _face((200, 150, 30, 30), "red", 0.6)])
    snap = counts.snapshot()
    assert snap["total"] == {"red": 1, "unsure": 1}
    assert snap["last_minute"] == {"red": 1, "unsure": 1}
    counts.set_label(9, 2.0, "blue", 2.0)
    assert counts.line() == "3 tracks (blue 1, red 1; unsure 1)"  # unsure last, apart


def test_a_frames_json_and_picture_mark_an_unsure_face_and_track() -> None:
    from gclf.runtime.live.annotate import BOX_COLOUR, UNSURE_COLOUR, annotate
    from gclf.runtime.live.people import FaceTrack

    faces = (FaceResult((20, 20, 80, 80), "unsure", 0.61, {"red": 0.39, "blue": 0.61}, "blue"),
             FaceResult((180, 100, 80, 80), "red", 0.9, {"red": 0.9, "blue": 0.1}))
    tracks = (FaceTrack(1, "unsure", 0.6, 5, "blue"), FaceTrack(2, "red", 0.9, 5))
    result = FrameResult(0, 0.0, faces, 10.0, (True, True), tracks)

    unsure, sure = result.to_json()["faces"]
    assert (unsure["label"], unsure["best"], unsure["track_label"], unsure["track_best"]) == ("unsure", "blue", "unsure", "blue")
    assert list(unsure)[:3] == ["box", "label", "best"]
    assert "best" not in sure and "track_best" not in sure and sure["track_label"] == "red"

    image = annotate(np.zeros((H, W, 3), dtype=np.uint8), result)

    def box_colour(x: int, y: int) -> tuple[int, ...]:
        return tuple(int(v) for v in image[y + 40, x])  # on the box's left edge, below its label

    assert box_colour(20, 20) == UNSURE_COLOUR
    assert box_colour(180, 100) == BOX_COLOUR


def test_events_counts_and_frames_answer_unsure_by_the_models_threshold(tiny_onnx, tmp_path: Path, square_detector) -> None:
    from gclf_testutil import decision_record

    # Each frame of this clip is sure (0.78 and up), but a red person's tinted frames say blue,
    # so the red tracks' mean is about 0.64 and the blue one's 0.73: at 0.7, the reds are unsure.
    clip = _people_clip(tmp_path / "three.avi", ["red", "blue", "red"])
    model = tiny_onnx("faces.onnx", props_update=FACES_MODEL, decision=decision_record(0.7))

    events = CliRunner().invoke(main, [str(model), "--video", str(clip), "--headless", "--events"])
    frames = CliRunner().invoke(main, [str(model), "--video", str(clip), "--headless"])
    off = CliRunner().invoke(main, [str(model), "--video", str(clip), "--headless", "--events", "--min-confidence", "0"])

    assert events.exit_code == 0 and frames.exit_code == 0 and off.exit_code == 0, events.output + frames.output
    records = [json.loads(line) for line in events.stdout.splitlines()]
    assert [(e["label"], e.get("best")) for e in records] == [("unsure", "red"), ("blue", None), ("unsure", "red")]
    assert all(e["confidence"] < 0.7 for e in records if e["label"] == "unsure")
    assert "live: answers below confidence 0.7 are unsure: the model's recorded decision" in events.stderr
    assert "live: 3 tracks (blue 1; unsure 2)" in events.stderr
    faces = [f for line in frames.stdout.splitlines() for f in json.loads(line)["faces"]]
    assert {f["label"] for f in faces} == {"red", "blue"}  # no frame on its own is unsure...
    last = {f["track"]: f for f in faces}  # each track's answer on its last frame: the event's
    assert [(f["track_label"], f.get("track_best")) for f in last.values()] == [("unsure", "red"), ("blue", None), ("unsure", "red")]
    assert [e["label"] for e in map(json.loads, off.stdout.splitlines())] == ["red", "blue", "red"]


# --- the "done when": three people, one after another ---------------------------------


def _texture(label: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = rng.integers(110, 200, (14, 14, 3), dtype=np.uint8)
    tex[..., 2 if label == "red" else 0] = 250  # BGR: the person's colour dominates
    return cv2.resize(tex, (SIDE, SIDE), interpolation=cv2.INTER_NEAREST)


def _people_clip(path: Path, labels: list[str]) -> Path:
    """Each person walks from left to right over WALK_FRAMES frames, one after another; every
    fifth frame of a person is tinted the other colour (a per-frame answer that disagrees)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (W, H))
    for k, label in enumerate(labels):
        texture = _texture(label, k)
        for t in range(WALK_FRAMES):
            frame = np.full((H, W, 3), 20, dtype=np.uint8)
            x, y = 4 + round(t * (W - SIDE - 8) / (WALK_FRAMES - 1)), 60 + 20 * k
            face = texture.copy()
            if t % 5 == 2:
                face[..., 0 if label == "red" else 2] = 255
                face[..., 2 if label == "red" else 0] = 120
            frame[y : y + SIDE, x : x + SIDE] = face
            writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def square_detector(monkeypatch) -> None:
    monkeypatch.setattr(gclf.runtime.faces.detectors, "make_detector", lambda face_model: SquareDetector())


def _infer(tiny_onnx, *args: object):
    model = tiny_onnx("faces.onnx", props_update=FACES_MODEL)
    return CliRunner().invoke(main, [str(model), *map(str, args)])


def test_three_people_one_after_another_are_three_events_with_their_majority_labels(tiny_onnx, tmp_path: Path, square_detector) -> None:
    clip = _people_clip(tmp_path / "three.avi", ["red", "blue", "red"])

    with_events = _infer(tiny_onnx, "--video", clip, "--headless", "--events")
    per_frame = _infer(tiny_onnx, "--video", clip, "--headless")

    assert with_events.exit_code == 0 and per_frame.exit_code == 0, with_events.output + per_frame.output
    events = [json.loads(line) for line in with_events.stdout.splitlines()]
    assert len(events) == 3 and all(e["event"] == "track" and e["frames"] >= 40 for e in events)
    frames = [json.loads(line) for line in per_frame.stdout.splitlines()]
    assert len(frames) == 3 * WALK_FRAMES
    for k, event in enumerate(events):
        person = frames[k * WALK_FRAMES : (k + 1) * WALK_FRAMES]
        faces = [f for record in person for f in record["faces"]]
        assert {f["track"] for f in faces} == {event["track"]}  # the same ids, with and without --events
        labels = collections.Counter(f["label"] for f in faces)
        assert len(labels) == 2  # the frames disagree...
        assert event["label"] == labels.most_common(1)[0][0]  # ...and the track says the majority
        assert faces[-1]["track_label"] == event["label"]
    assert "live: 3 tracks (blue 1, red 2)" in with_events.stderr


def test_events_with_json_also_print_the_frame_lines(tiny_onnx, tmp_path: Path, square_detector) -> None:
    clip = _people_clip(tmp_path / "one.avi", ["blue"])

    result = _infer(tiny_onnx, "--video", clip, "--headless", "--events", "--json")

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r.get("event") for r in records] == [None] * WALK_FRAMES + ["track"]


def test_the_python_api_yields_one_event_per_person(tiny_onnx, tmp_path: Path) -> None:
    import gclf.runtime

    clip = _people_clip(tmp_path / "two.avi", ["red", "blue"])
    clf = Classifier(tiny_onnx("faces.onnx", props_update=FACES_MODEL))

    events = list(gclf.runtime.track_events(clip, clf, detector=SquareDetector()))

    assert gclf.runtime.track_events is track_events
    assert [(e.label, e.frames >= 40) for e in events] == [("red", True), ("blue", True)]
    assert isinstance(events[0], gclf.runtime.TrackEvent)


class CameraLikeFeed(ListFeed):
    """Hands out its frames, then waits for more (as a camera does) until closed."""

    def __init__(self, images: list[np.ndarray]) -> None:
        super().__init__(images)
        self._closed = threading.Event()

    def next_frame(self):
        if self.frames:
            return self.frames.pop(0)
        self._closed.wait(10)
        return None

    def close(self) -> None:
        super().close()
        self._closed.set()


def test_leaving_the_python_api_early_stops_the_loop(tiny_onnx) -> None:
    # One person for 20 frames, gone for longer than a track is kept, then nothing more.
    frames = [_square_frame(10 + 5 * t, 40) for t in range(20)] + [np.full((H, W, 3), 20, np.uint8)] * (DEFAULT_MAX_MISSED + 2)
    feed = CameraLikeFeed(frames)
    clf = Classifier(tiny_onnx("faces.onnx", props_update=FACES_MODEL))
    events = track_events(feed, clf, detector=SquareDetector())

    first = next(events)
    started = time.monotonic()
    events.close()

    assert first.frames == 20
    assert feed.closed and time.monotonic() - started < 5  # the loop stopped, not waiting for frames


def _square_frame(x: int, y: int) -> np.ndarray:
    frame = np.full((H, W, 3), 20, dtype=np.uint8)
    frame[y : y + SIDE, x : x + SIDE] = _texture("red", 0)
    return frame


# --- summaries, /counts -----------------------------------------------------------------------


def test_summary_lines_come_every_n_seconds_of_capture_time(tmp_path: Path) -> None:
    out = tmp_path / "lines.jsonl"
    stream = RotatingLineFile(out, 10_000)
    counts = PeopleCounts()
    counts.set_label(1, 1000.0, "red", 1000.0)
    sink = SummarySink(stream, counts, 1.0)
    for i in range(35):  # 3.5 s at 10 frames/s
        sink.write(FrameResult(i, 1000.0 + i / 10, (), 10.0), None)
    stream.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["event"], r["timestamp"], r["frames"]) for r in lines] == [("summary", 1001.0, 11), ("summary", 1002.0, 10), ("summary", 1003.0, 10)]
    assert lines[0]["tracks"] == {"last_minute": {"red": 1}, "last_hour": {"red": 1}, "total": {"red": 1}}


def test_counts_are_served_behind_the_token() -> None:
    from gclf.runtime.serve import ModelInfo, ServeAddress, WebSink
    from serve_testutil import get

    counts = PeopleCounts()
    sink = WebSink(ServeAddress("127.0.0.1", 0), token="a-long-enough-token", model=ModelInfo("m.onnx", "fp32", ("red", "blue")), counts=counts.snapshot)
    try:
        counts.set_label(7, 100.0, "blue", 100.0)
        assert get(sink.port, "/counts")[0] == 403
        status, headers, body = get(sink.port, "/counts?token=a-long-enough-token")
    finally:
        sink.close()
    assert status == 200
    assert json.loads(body)["total"] == {"blue": 1}


# --- bounded output ---------------------------------------------------------------------------


def test_the_jsonl_file_is_rotated_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "camera.jsonl"
    path.write_text('{"old": true}\n')  # a restarted service appends
    stream = RotatingLineFile(path, 1000)
    lines = [json.dumps({"n": i, "pad": "x" * 40}) + "\n" for i in range(200)]
    for line in lines:
        stream.write(line)
        stream.flush()
        assert path.stat().st_size <= 1000
    stream.close()
    old = path.with_name("camera.jsonl.1")
    assert old.stat().st_size <= 1000 and sorted(p.name for p in tmp_path.iterdir()) == ["camera.jsonl", "camera.jsonl.1"]
    kept = old.read_text() + path.read_text()
    assert kept.endswith(lines[-1]) and lines[-1] in path.read_text()
    assert all(json.loads(line) for line in kept.splitlines())  # no line cut between the files


def test_jsonl_options(tiny_onnx, tmp_path: Path, square_detector) -> None:
    clip = _people_clip(tmp_path / "one.avi", ["red"])
    out = tmp_path / "logs" / "out.jsonl"

    missing_folder = _infer(tiny_onnx, "--video", clip, "--headless", "--jsonl", out)
    cap_alone = _infer(tiny_onnx, "--video", clip, "--headless", "--jsonl-max-bytes", "5000")
    out.parent.mkdir()
    written = _infer(tiny_onnx, "--video", clip, "--headless", "--jsonl", out, "--jsonl-max-bytes", "5000")

    assert missing_folder.exit_code == 11 and "out.jsonl: cannot append" in missing_folder.stderr
    assert cap_alone.exit_code == 2 and "--jsonl" in cap_alone.stderr
    assert written.exit_code == 0 and written.stdout == ""
    assert out.stat().st_size <= 5000 and out.with_name("out.jsonl.1").stat().st_size <= 5000
    assert json.loads(out.read_text().splitlines()[-1])["frame"] == WALK_FRAMES - 1


def test_the_device_options_write_under_7_7_bytes_a_frame(tiny_onnx, tmp_path: Path, fake_picamera2, square_detector) -> None:
    """The journal budget: the unit's options, a stand-in camera, 300 frames of one face in view: the
    JSON lines and the journal's lines (stderr) together stay under 7.7 bytes per frame."""
    out = tmp_path / "camera.jsonl"

    result = _infer(
        # The unit asks for 640x480; a smaller frame only makes the test faster (the bytes are the same).
        tiny_onnx, "--camera", "picam", "--camera-size", "320x240", "--headless",
        "--events", "--summary-every", "60", "--jsonl", out, "--max-frames", "300",
    )

    assert result.exit_code == 0, result.output
    written = out.stat().st_size + len(result.stderr.encode()) + len(result.stdout.encode())
    assert written <= 7.7 * 300, (written, out.read_text(), result.stderr)
    (event,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert event["event"] == "track" and event["frames"] == 300 and event["label"] == "red"
    assert event["largest_box"] == [0, 0, 320, 240]


# --- the same on real faces, with the bundled Haar detector ------------------------------------

DATASET = SHARED / "datasets" / "gender-faces"
WALKERS = ("man/face_0.jpg", "woman/face_1.jpg", "man/face_0.jpg")  # frontal faces Haar finds (test_live_faces)


@pytest.mark.realdata
@pytest.mark.skipif(not DATASET.is_dir(), reason=f"real photos not found at {DATASET}")
def test_three_real_faces_walking_by_are_three_events(tiny_onnx, tmp_path: Path) -> None:
    clip = tmp_path / "walkers.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    for k, name in enumerate(WALKERS):
        face = cv2.imread(str(DATASET / name))
        face = cv2.resize(face, (round(face.shape[1] * 200 / face.shape[0]), 200), interpolation=cv2.INTER_AREA)
        for t in range(WALK_FRAMES):
            frame = np.full((480, 640, 3), 90, dtype=np.uint8)
            x = round(t * (640 - face.shape[1]) / (WALK_FRAMES - 1))
            frame[120 + 40 * (k - 1) + 40 : 320 + 40 * (k - 1) + 40, x : x + face.shape[1]] = face
            writer.write(frame)
    writer.release()
    model = tiny_onnx("faces.onnx", props_update=FACES_MODEL)

    with_events = CliRunner().invoke(main, [str(model), "--video", str(clip), "--headless", "--events", "--face-model", "haar"])
    per_frame = CliRunner().invoke(main, [str(model), "--video", str(clip), "--headless", "--face-model", "haar"])

    assert with_events.exit_code == 0 and per_frame.exit_code == 0, with_events.output + per_frame.output
    events = [json.loads(line) for line in with_events.stdout.splitlines()]
    assert len(events) == 3 and all(e["frames"] >= 40 for e in events), events
    frames = [json.loads(line) for line in per_frame.stdout.splitlines()]
    for k, event in enumerate(events):
        faces = [f for record in frames[k * WALK_FRAMES : (k + 1) * WALK_FRAMES] for f in record["faces"]]
        assert {f["track"] for f in faces} == {event["track"]}
        assert event["label"] == collections.Counter(f["label"] for f in faces).most_common(1)[0][0]


# --- a network camera that goes down ------------------------------------------------------------


def test_a_camera_that_goes_down_ends_the_tracks_in_view_in_the_loops_thread(tiny_onnx) -> None:
    """While a network camera reconnects, the feed gives no frame but does not end: the loop
    ends the tracks of the people who were in view then (their events handed over at once, in
    its own thread), and a person seen after it came back is a new track."""
    from gclf.runtime.live.loop import run_live
    from gclf.runtime.live.sources import Frame

    down, back = threading.Event(), threading.Event()

    def walking(label: str, seed: int, n: int) -> list[np.ndarray]:
        frames = []
        for t in range(n):
            frame = np.full((H, W, 3), 20, dtype=np.uint8)
            frame[60 : 60 + SIDE, 10 + 4 * t : 10 + 4 * t + SIDE] = _texture(label, seed)
            frames.append(frame)
        return frames

    class DroppingCamera(ListFeed):
        """Ten frames of one person, then down (no frame, no end) until `back`, then another person."""

        def __init__(self) -> None:
            super().__init__(walking("red", 1, 10) + walking("blue", 2, 10))
            self.delivered = 0

        def next_frame(self) -> Frame | None:
            if self.delivered == 10 and not back.is_set():
                down.set()
                back.wait(20)
            self.delivered += 1
            return super().next_frame()

    class Events:
        needs_image = False

        def __init__(self) -> None:
            self.events: list[tuple[object, threading.Thread, bool]] = []

        def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
            return True

        def write_event(self, event) -> None:
            self.events.append((event, threading.current_thread(), back.is_set()))

        def close(self) -> None:
            pass

    sink = Events()
    loop_thread = threading.Thread(
        target=lambda: run_live(DroppingCamera(), Classifier(tiny_onnx("faces.onnx", props_update=FACES_MODEL)), detector=SquareDetector(),
                                sinks=[sink], detect_every=1, source_down=lambda: down.is_set() and not back.is_set()),
        name="the loop",
    )  # fmt: skip
    loop_thread.start()
    try:
        assert down.wait(20), "the camera never went down"
        deadline = time.monotonic() + 5
        while not sink.events and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(sink.events) == 1, "the person in view when the camera went down has no event while it is down"
    finally:
        back.set()
        loop_thread.join(20)
    (first, thread, after), (second, _, later) = sink.events
    assert thread is loop_thread and not after and later  # ended while down, in the loop's thread
    assert first.label == "red" and first.frames == 10 and second.label == "blue" and second.track != first.track
