"""The capture thread: the newest frame wins and drops are counted; in-order reading keeps all.

Fake sources stand in for a camera, so the timing is under the test's control: a gated
source delivers exactly the frames the test lets through, which makes "the consumer gets
the newest frame" an exact check rather than a race.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from gclf.runtime.errors import EXIT_PARTIAL, SourceLostError
from gclf.runtime.live.sources import LatestFrameGrabber, OrderedFrameReader, PacedSource


def _image(i: int) -> np.ndarray:
    return np.full((4, 4, 3), i % 256, dtype=np.uint8)


class CountingSource:
    """`n` frames as fast as asked, optionally `delay_s` each; the pixel value is the frame number."""

    name = "fake camera"
    fps = 100.0

    def __init__(self, n: int, *, delay_s: float = 0.0, lose_after: int | None = None) -> None:
        self.n, self.delay_s, self.lose_after = n, delay_s, lose_after
        self.produced = 0
        self.closed = False
        self.closed_by: threading.Thread | None = None

    def read(self) -> np.ndarray | None:
        if self.lose_after is not None and self.produced >= self.lose_after:
            raise SourceLostError(f"{self.name} stopped delivering frames (unplugged?)")
        if self.produced >= self.n:
            return None
        if self.delay_s:
            time.sleep(self.delay_s)
        self.produced += 1
        return _image(self.produced - 1)

    def close(self) -> None:
        self.closed = True
        self.closed_by = threading.current_thread()


class GatedSource(CountingSource):
    """Each read waits until the test releases one frame; `entered` counts reads begun."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.gate = threading.Semaphore(0)
        self.entered = 0
        self.stop_waiting = False  # set by the test to end a read that waits at the gate

    def read(self) -> np.ndarray | None:
        self.entered += 1
        while not self.gate.acquire(timeout=0.05):
            if self.stop_waiting:
                return None
        return super().read()


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the capture thread"
        time.sleep(0.001)


def test_the_consumer_gets_the_newest_frame_and_older_ones_are_dropped_and_counted() -> None:
    source = GatedSource(n=100)
    grabber = LatestFrameGrabber(source).start()
    try:
        source.gate.release(5)  # five frames arrive while the consumer is busy
        _wait_until(lambda: source.entered == 6)  # the thread is waiting for a sixth: five delivered

        first = grabber.next_frame()
        assert first is not None and first.index == 4 and int(first.bgr[0, 0, 0]) == 4
        assert grabber.dropped == 4

        source.gate.release(3)
        _wait_until(lambda: source.entered == 9)
        second = grabber.next_frame()
        assert second is not None and second.index == 7
        assert grabber.dropped == 4 + 2
    finally:
        source.stop_waiting = True
        grabber.close()
    assert source.closed


def test_a_slow_consumer_of_a_fast_source_sees_increasing_frames_and_every_frame_is_accounted_for() -> None:
    source = CountingSource(n=300)
    grabber = LatestFrameGrabber(source).start()
    seen = []
    while (frame := grabber.next_frame()) is not None:
        seen.append(frame.index)
        time.sleep(0.005)  # the "model"
    grabber.close()

    assert seen == sorted(set(seen))  # never an older frame after a newer one
    assert grabber.dropped > 0
    assert len(seen) + grabber.dropped == 300
    assert seen[-1] == 299  # the last frame of a source that ends is still handed out
    assert grabber.end_reason == "end of fake camera"
    assert grabber.failure is None


def test_the_source_is_released_by_the_capture_thread_itself() -> None:
    # A read and a release never overlap: only the thread that reads also releases.
    source = CountingSource(n=3)
    grabber = LatestFrameGrabber(source).start()
    while grabber.next_frame() is not None:
        pass
    grabber.close()
    assert source.closed and source.closed_by is not threading.current_thread()


def test_a_lost_source_ends_the_feed_with_its_error() -> None:
    source = CountingSource(n=100, lose_after=3)
    grabber = LatestFrameGrabber(source).start()
    while grabber.next_frame() is not None:
        pass
    grabber.close()

    assert isinstance(grabber.failure, SourceLostError)
    assert grabber.failure.exit_code == EXIT_PARTIAL
    assert "stopped delivering frames" in (grabber.end_reason or "")
    assert source.closed


def test_close_while_the_consumer_waits_does_not_hang() -> None:
    source = GatedSource(n=10)
    grabber = LatestFrameGrabber(source).start()
    got: list = []
    consumer = threading.Thread(target=lambda: got.append(grabber.next_frame()))
    consumer.start()
    time.sleep(0.05)
    source.stop_waiting = True
    grabber.close()
    consumer.join(2)
    assert not consumer.is_alive() and got == [None]


def test_the_ordered_reader_keeps_every_frame_in_order() -> None:
    source = CountingSource(n=50)
    reader = OrderedFrameReader(source, ahead=2).start()
    seen = []
    while (frame := reader.next_frame()) is not None:
        seen.append((frame.index, int(frame.bgr[0, 0, 0])))
        time.sleep(0.001)
    reader.close()

    assert seen == [(i, i) for i in range(50)]
    assert reader.dropped == 0
    assert reader.next_frame() is None  # stays ended
    assert source.closed


def test_closing_the_ordered_reader_early_releases_a_producer_blocked_on_a_full_queue() -> None:
    source = CountingSource(n=10_000)
    reader = OrderedFrameReader(source, ahead=2).start()
    assert reader.next_frame() is not None
    _wait_until(lambda: source.produced >= 3)  # the queue is full, the producer waits

    started = time.monotonic()
    reader.close()

    assert time.monotonic() - started < 2
    assert source.closed
    assert source.produced < 10_000


def test_a_paced_source_delivers_at_its_frame_rate() -> None:
    source = CountingSource(n=6)
    source.fps = 50.0  # 20 ms per frame
    paced = PacedSource(source)
    started = time.monotonic()
    while paced.read() is not None:
        pass
    # six frames: the sixth is due 5 x 20 ms after the first (never early; late only on a busy machine)
    assert 0.095 <= time.monotonic() - started < 1.0


def test_a_paced_source_needs_a_frame_rate() -> None:
    from gclf.runtime.errors import UsageError

    source = CountingSource(n=1)
    source.fps = None
    with pytest.raises(UsageError, match="frame rate"):
        PacedSource(source)
