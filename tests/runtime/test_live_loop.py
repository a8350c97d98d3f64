"""`run_live` as a library function: it stops when told, and always releases feed and sinks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gclf.runtime.classifier import Classifier
from gclf.runtime.live.frames import FrameResult
from gclf.runtime.live.loop import FpsMeter, run_live
from gclf.runtime.live.sinks import VideoFileSink
from gclf.runtime.live.sources import Frame
from gclf_testutil import ListFeed


class RecordingSink:
    needs_image = True

    def __init__(self, *, quit_at: int | None = None, interrupt_at: int | None = None) -> None:
        self.results: list[FrameResult] = []
        self.quit_at, self.interrupt_at = quit_at, interrupt_at
        self.closed = False

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> bool:
        assert annotated is not None
        self.results.append(result)
        if result.index == self.interrupt_at:
            raise KeyboardInterrupt
        return result.index != self.quit_at

    def close(self) -> None:
        self.closed = True


def _red(n: int) -> list[np.ndarray]:
    return [np.full((16, 16, 3), (0, 0, 220), dtype=np.uint8) for _ in range(n)]


def test_the_loop_runs_to_the_end_of_the_feed(tiny_onnx) -> None:
    feed, sink = ListFeed(_red(5)), RecordingSink()

    summary = run_live(feed, Classifier(tiny_onnx()), detector=None, sinks=[sink])

    assert summary.processed == 5 and summary.dropped == 0
    assert summary.stopped_by == "end of list" and not summary.interrupted
    assert [r.faces[0].label for r in sink.results] == ["red"] * 5
    assert feed.closed and sink.closed


def test_a_quit_key_stops_the_loop_after_every_sink_got_the_frame(tiny_onnx) -> None:
    feed, quitter, other = ListFeed(_red(5)), RecordingSink(quit_at=1), RecordingSink()

    summary = run_live(feed, Classifier(tiny_onnx()), detector=None, sinks=[quitter, other])

    assert summary.processed == 2 and summary.stopped_by == "quit by the user"
    assert len(other.results) == 2
    assert feed.closed and quitter.closed and other.closed


def test_ctrl_c_ends_with_a_summary_and_releases_everything(tiny_onnx) -> None:
    feed, sink = ListFeed(_red(5)), RecordingSink(interrupt_at=2)

    summary = run_live(feed, Classifier(tiny_onnx()), detector=None, sinks=[sink])

    assert summary.interrupted and summary.stopped_by == "interrupted"
    assert summary.processed == 3
    assert feed.closed and sink.closed


def test_an_error_in_a_sink_still_releases_the_feed(tiny_onnx) -> None:
    class Broken(RecordingSink):
        def write(self, result, annotated) -> bool:
            raise RuntimeError("disk full")

    feed, sink = ListFeed(_red(3)), Broken()
    with pytest.raises(RuntimeError):
        run_live(feed, Classifier(tiny_onnx()), detector=None, sinks=[sink])
    assert feed.closed and sink.closed


def test_the_video_sink_measures_the_frame_rate_when_frames_are_dropped(tmp_path) -> None:
    out = tmp_path / "live.avi"
    sink = VideoFileSink(out, fps=None)
    for i in range(20):  # captured 0.2 s apart: 5 FPS
        sink.write(FrameResult(i, 1000.0 + 0.2 * i, (), 5.0), np.zeros((32, 48, 3), dtype=np.uint8))
    sink.close()

    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0, abs=0.1)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    capture.release()


def test_the_fps_meter_averages_over_its_window() -> None:
    meter = FpsMeter(window=3)
    assert meter.tick(0.0) == 0.0
    assert meter.tick(0.1) == pytest.approx(10.0)
    meter.tick(0.2)
    assert meter.tick(0.7) == pytest.approx(2 / 0.6)  # only the last three ticks count


# --- preparation overlaps inference --------------------------------------------------------


def _fake_prepared(frame: Frame):
    from gclf.runtime.live.loop import PreparedFrame

    return PreparedFrame(frame, (), np.empty((0, 3, 4, 4), dtype=np.float32))


def test_the_next_frame_is_prepared_while_the_model_works_on_this_one() -> None:
    import threading

    from gclf.runtime.live.loop import FramePreparer

    prepared_indices: list[int] = []
    second_started = threading.Event()

    def prepare(frame: Frame):
        prepared_indices.append(frame.index)
        if frame.index == 1:
            second_started.set()
        return _fake_prepared(frame)

    feed = ListFeed(_red(4))
    preparer = FramePreparer(feed, prepare)
    first = preparer.next()
    assert first is not None and first.frame.index == 0
    # The consumer now "runs the model" on frame 0: frame 1 is prepared meanwhile...
    assert second_started.wait(5.0)
    # ...but not frame 2: one frame ahead at most, so a camera frame is never more than one
    # inference old when the model gets it.
    threading.Event().wait(0.2)
    assert prepared_indices == [0, 1]
    assert [preparer.next().frame.index for _ in range(3)] == [1, 2, 3]
    assert preparer.next() is None and preparer.next() is None  # the end is sticky
    preparer.stop()
    preparer.join(1.0)


def test_an_error_while_preparing_reaches_the_loop_and_everything_is_released(tiny_onnx) -> None:
    class BrokenDetector:
        name = "broken"

        def detect(self, bgr: np.ndarray) -> list:
            raise RuntimeError("detector failed")

    feed, sink = ListFeed(_red(3)), RecordingSink()
    with pytest.raises(RuntimeError, match="detector failed"):
        run_live(feed, Classifier(tiny_onnx()), detector=BrokenDetector(), sinks=[sink])
    assert feed.closed and sink.closed


def test_stopping_early_does_not_wait_for_a_feed_that_has_no_frame_yet(tiny_onnx) -> None:
    # A camera feed blocks in next_frame until a frame comes; closing the feed releases it.
    import threading
    import time

    class SilentCamera(ListFeed):
        def __init__(self) -> None:
            super().__init__(_red(1))
            self._closed = threading.Event()

        def next_frame(self) -> Frame | None:
            if self.frames:
                return self.frames.pop(0)
            self._closed.wait(30.0)  # no further frame until closed
            return None

        def close(self) -> None:
            self.closed = True
            self._closed.set()

    feed, sink = SilentCamera(), RecordingSink(quit_at=0)
    started = time.monotonic()
    summary = run_live(feed, Classifier(tiny_onnx()), detector=None, sinks=[sink])
    assert summary.processed == 1 and summary.stopped_by == "quit by the user"
    assert feed.closed and time.monotonic() - started < 5.0


def test_a_classifier_without_spinning_gives_the_same_answers(tiny_onnx) -> None:
    # spin=False only changes how onnxruntime's threads wait between runs, never the result.
    spinning, quiet = Classifier(tiny_onnx()), Classifier(tiny_onnx(), spin=False)
    assert quiet.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    batch = np.random.default_rng(0).random((3, *spinning.spec.input_shape_chw), dtype=np.float32)
    assert np.array_equal(spinning.logits(batch), quiet.logits(batch))
