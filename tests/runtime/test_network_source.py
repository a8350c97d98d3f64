"""Network cameras against real servers on loopback: GStreamer's RTSP server (tools/rtsp_server.py)
and an HTTP MJPEG server in a child process. Frames arrive; a killed, hung or silent server is
an outage that is counted and reconnected, never the end of the run; retries are bounded when
asked; reconnecting leaves no threads or descriptors behind. Timeouts are shortened through
StreamOptions so that each test takes seconds."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

import pytest

from gclf.runtime.errors import EXIT_BAD_DATA, EXIT_PARTIAL, EXIT_USAGE, BadDataError, SourceLostError, SourceUnavailableError
from gclf.runtime.live.network import CameraAuthError, NetworkSource, StreamOptions, check_stream, open_network_feed
from network_testutil import SilentServer, free_port, mjpeg_server, require_rtsp_server, rtsp_server, thread_and_fd_counts, wait_for  # noqa: F401 (fixtures)

FAST = StreamOptions(frame_timeout_s=1.5, open_timeout_s=4.0, backoff_first_s=0.2, backoff_max_s=1.0, probe_timeout_s=1.0)
PASSWORD = "Pw-7c1e9a"


class Recorder:
    """Collects the states a source reports through on_change (called in its reading thread)."""

    def __init__(self) -> None:
        self.states = []
        self._lock = threading.Lock()

    def __call__(self, state) -> None:
        with self._lock:
            self.states.append(state)


def read_frames(source: NetworkSource, count: int) -> list:
    return [source.read() for _ in range(count)]


def test_frames_arrive_from_an_rtsp_camera_that_asks_for_a_password(rtsp_server) -> None:
    server = rtsp_server(auth=f"viewer:{PASSWORD}")
    source = NetworkSource(server.url(), options=FAST)
    try:
        frames = read_frames(source, 5)
    finally:
        source.close()
    assert all(frame is not None and frame.shape == (240, 320, 3) for frame in frames)
    assert source.fps == pytest.approx(15, abs=0.5)
    state = source.state
    assert state.up and state.frames == 5 and state.outages == 0
    assert PASSWORD not in source.name and PASSWORD not in repr(source)
    assert "viewer:***@127.0.0.1" in source.name


def test_digest_login_and_rtsp_over_udp_deliver_frames(rtsp_server) -> None:
    server = rtsp_server(auth=f"viewer:{PASSWORD}", auth_method="digest", codec="mjpeg")
    for transport in ("udp", "tcp"):
        source = NetworkSource(server.url(), options=StreamOptions(transport=transport, frame_timeout_s=3.0, open_timeout_s=5.0))
        try:
            frame = source.read()
        finally:
            source.close()
        assert frame is not None and frame.shape == (240, 320, 3), transport


def test_a_camera_killed_twice_is_reconnected_each_time_and_both_outages_counted(rtsp_server) -> None:
    server = rtsp_server(auth=f"viewer:{PASSWORD}")
    recorder = Recorder()
    source = NetworkSource(server.url(), options=FAST, on_change=recorder)
    feed = open_network_feed(source)
    try:
        assert feed.next_frame() is not None
        for outage in (1, 2):
            server.kill()
            wait_for(lambda: not source.state.up, "the source to notice the drop", 10)
            time.sleep(0.5)  # down for a moment: reopening fails at least once
            server.start()  # same port
            restarted = time.monotonic()
            wait_for(lambda: source.state.up, "the source to reconnect", 15)
            # Within the longest backoff plus one open (the server's pipeline starts on demand).
            assert time.monotonic() - restarted < FAST.backoff_max_s + FAST.open_timeout_s
            frame = feed.next_frame()
            assert frame is not None and feed.failure is None
            state = source.state
            assert state.outages == outage and state.up and state.down_since is None
        assert state.outage_s > 2 * 0.5
        assert feed.end_reason is None  # the feed never ended
    finally:
        source.close()
        feed.close()
    downs = [s for s in recorder.states if not s.up and s.failed_attempts == 0]
    assert len(downs) == 2 and all("stopped delivering frames" in s.last_error for s in downs)
    refused = [s for s in recorder.states if s.failed_attempts > 0]
    assert refused and all("connection refused" in s.last_error and PASSWORD not in s.last_error for s in refused)


def test_a_hung_camera_is_a_stall_that_is_counted_and_recovered(rtsp_server) -> None:
    server = rtsp_server()
    # A paused server's port still accepts connections (the kernel does): each reopening
    # waits its whole open timeout, kept short here.
    source = NetworkSource(server.url(), options=replace(FAST, open_timeout_s=2.0, probe_timeout_s=0.5))
    feed = open_network_feed(source)
    try:
        assert feed.next_frame() is not None
        server.pause()  # the connection stays open and nothing comes: FFmpeg's read timeout
        stalled_at = time.monotonic()
        wait_for(lambda: source.state.stalls >= 1, "the stall to be noticed", 10)
        assert time.monotonic() - stalled_at >= FAST.frame_timeout_s * 0.9
        assert "delivered no frame for 1.5 s: it stalled" in source.state.last_error
        server.resume()
        wait_for(lambda: source.state.up, "the source to reconnect after the stall", 20)
        assert source.state.outages == 1
    finally:
        server.resume()
        source.close()
        feed.close()


def test_a_server_that_accepts_and_says_nothing_is_a_stall(rtsp_server) -> None:
    require_rtsp_server()  # not needed, but the same family: skipped together
    silent = SilentServer()
    options = StreamOptions(frame_timeout_s=0.5, open_timeout_s=0.8, backoff_first_s=0.05, backoff_max_s=0.1, probe_timeout_s=0.4, reconnect_max=1)
    source = NetworkSource(f"rtsp://127.0.0.1:{silent.port}/cam", options=options)
    started = time.monotonic()
    try:
        with pytest.raises(SourceLostError) as raised:
            source.read()
    finally:
        source.close()
        silent.close()
    assert raised.value.exit_code == EXIT_PARTIAL
    assert "answered nothing within 0.4 s" in str(raised.value) and "2 attempts failed in a row" in str(raised.value)
    state = source.state
    assert state.stalls == 2 and state.failed_attempts == 2 and state.outages == 1 and state.gave_up
    assert silent.accepted >= 2
    # Two opens and two diagnoses, each within its timeout.
    assert time.monotonic() - started < 2 * (options.open_timeout_s + 2 * options.probe_timeout_s) + 2


def test_a_port_where_nothing_listens_is_retried_a_bounded_number_of_times() -> None:
    recorder = Recorder()
    options = StreamOptions(backoff_first_s=0.05, backoff_max_s=0.2, probe_timeout_s=0.5, open_timeout_s=1.0, reconnect_max=3)
    source = NetworkSource(f"rtsp://127.0.0.1:{free_port()}/cam", options=options, on_change=recorder)
    with pytest.raises(SourceLostError) as raised:
        source.read()
    source.close()
    assert raised.value.exit_code == EXIT_PARTIAL
    message = str(raised.value)
    assert "4 attempts failed in a row" in message and "nothing listens on 127.0.0.1" in message
    # The start, then three reopenings: each reported, with the reason.
    assert [s.failed_attempts for s in recorder.states] == [1, 2, 3, 4, 4]
    assert recorder.states[-1].gave_up and recorder.states[0].outages == 1
    assert recorder.states[0].down_since is not None


def test_the_backoff_doubles_up_to_its_cap() -> None:
    options = StreamOptions()
    assert [options.backoff_s(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert options.backoff_s(10_000) == 30


def test_wrong_credentials_at_start_end_with_one_sentence_and_exit_2(rtsp_server) -> None:
    server = rtsp_server(auth=f"viewer:{PASSWORD}")
    wrong = "Wr0ng-pass"
    source = NetworkSource(server.url(f"viewer:{wrong}"), options=FAST)
    with pytest.raises(CameraAuthError) as raised:
        source.read()
    source.close()
    message = str(raised.value)
    assert raised.value.exit_code == EXIT_USAGE
    assert message == f"cannot open camera rtsp://viewer:***@127.0.0.1:{server.port}/cam: it refused the user name or password (401 Unauthorized)"
    assert wrong not in message and PASSWORD not in message
    with pytest.raises(CameraAuthError, match="asks for a user name and password"):
        NetworkSource(server.url(""), options=FAST).read()


def test_a_wrong_path_is_named_and_retried_like_a_camera_still_booting(rtsp_server) -> None:
    server = rtsp_server()
    options = StreamOptions(backoff_first_s=0.05, backoff_max_s=0.05, open_timeout_s=3.0, reconnect_max=0)
    with pytest.raises(SourceLostError, match=r"it has no stream at /nothing \(404 Not Found\)"):
        NetworkSource(f"rtsp://127.0.0.1:{server.port}/nothing", options=options).read()


def test_close_from_another_thread_ends_a_long_reconnection_wait() -> None:
    options = StreamOptions(backoff_first_s=30.0, backoff_max_s=30.0, probe_timeout_s=0.5, open_timeout_s=1.0)
    source = NetworkSource(f"rtsp://127.0.0.1:{free_port()}/cam", options=options)
    result: list = []
    reader = threading.Thread(target=lambda: result.append(source.read()))
    reader.start()
    wait_for(lambda: source.state.failed_attempts == 1, "the first failed attempt", 10)
    assert source.responsive()  # waiting is progress: the watchdog stays fed
    closed_at = time.monotonic()
    source.close()
    reader.join(5)
    assert not reader.is_alive() and result == [None]
    assert time.monotonic() - closed_at < 2.0


def test_an_http_mjpeg_camera_with_a_token(mjpeg_server) -> None:
    token = "tok-5d2b8f0c3a9e"
    server = mjpeg_server(token=token)
    source = NetworkSource(server.url(), options=FAST)
    try:
        frames = read_frames(source, 3)
    finally:
        source.close()
    assert all(frame.shape == (240, 320, 3) for frame in frames)
    assert source.name == f"camera http://127.0.0.1:{server.port}/stream?token=***"
    with pytest.raises(CameraAuthError) as raised:
        NetworkSource(server.url("not-the-token"), options=FAST).read()
    assert "it refused the token (401 Unauthorized)" in str(raised.value) and "not-the-token" not in str(raised.value)


def test_an_mjpeg_camera_killed_and_restarted_is_reconnected(mjpeg_server) -> None:
    server = mjpeg_server()
    source = NetworkSource(server.url(), options=FAST)
    feed = open_network_feed(source)
    try:
        assert feed.next_frame() is not None
        server.kill()
        wait_for(lambda: not source.state.up, "the drop", 10)
        server.start()
        wait_for(lambda: source.state.up, "the reconnection", 15)
        assert source.state.outages == 1 and feed.failure is None
    finally:
        source.close()
        feed.close()


def test_frames_over_the_pixel_cap_are_refused_like_image_files(mjpeg_server, monkeypatch) -> None:
    server = mjpeg_server()
    monkeypatch.setenv("GCLF_MAX_IMAGE_PIXELS", str(320 * 240 - 1))
    source = NetworkSource(server.url(), options=FAST)
    with pytest.raises(BadDataError) as raised:
        source.read()
    source.close()
    assert raised.value.exit_code == EXIT_BAD_DATA
    assert "frames too large (320x240 pixels; gclf reads images of up to 76799 pixels" in str(raised.value)


def test_reconnecting_many_times_leaves_no_threads_or_descriptors_behind(mjpeg_server) -> None:
    # A camera that drops its client every 3 frames: each drop is a reconnection.
    server = mjpeg_server(frames_per_connection=3, fps=50)
    options = StreamOptions(frame_timeout_s=2.0, open_timeout_s=4.0, backoff_first_s=0.01, backoff_max_s=0.01)
    source = NetworkSource(server.url(), options=options)
    try:
        source.read()
        baseline = thread_and_fd_counts()
        while source.state.outages < 25:
            assert source.read() is not None
        wait_for(lambda: source.state.up, "the stream to be up again", 10)
        source.read()
        after = thread_and_fd_counts()
    finally:
        source.close()
    assert source.state.outages >= 25
    # No growth (a leak would add one per reconnection); fewer is another test's thread ending.
    assert after[0] <= baseline[0] and after[1] <= baseline[1], f"threads and descriptors: {baseline} before 25 reconnections, {after} after"


def test_check_stream_reads_one_frame_or_says_why_not(rtsp_server) -> None:
    server = rtsp_server(auth=f"viewer:{PASSWORD}")
    checked = check_stream(server.url(), FAST)
    assert (checked.width, checked.height) == (320, 240)
    assert checked.line("camera") == "camera: 320x240 at 15 fps"
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError) as raised:
        check_stream(f"rtsp://viewer:{PASSWORD}@127.0.0.1:{free_port()}/cam", FAST)
    assert time.monotonic() - started < FAST.open_timeout_s + 3 * FAST.probe_timeout_s
    assert "connection refused" in str(raised.value) and PASSWORD not in str(raised.value)
    assert raised.value.exit_code == EXIT_USAGE


def test_options_are_checked() -> None:
    with pytest.raises(Exception, match="tcp or udp"):
        StreamOptions(transport="http")
    with pytest.raises(Exception, match="positive number of seconds"):
        StreamOptions(frame_timeout_s=math.inf)
    with pytest.raises(Exception, match="rtsp://"):
        NetworkSource("/dev/video0")


def test_another_gclfs_served_stream_is_a_camera(tmp_path, tiny_onnx) -> None:
    # gclf-infer --serve's /stream (MJPEG, ?token=): one device watching what another one sees.
    from serve_testutil import port_of, start_served_run, write_colour_video

    token = "Tq3x-9vLk2PzR8mW_c7JdYe"
    video = write_colour_video(tmp_path / "clip.avi", 600, fps=30)
    run = start_served_run([str(tiny_onnx()), "--video", str(video), "--realtime", "--headless", "--serve", "127.0.0.1:0"], env={"GCLF_SERVE_TOKEN": token})
    try:
        url = f"http://127.0.0.1:{port_of(run.url)}/stream"
        source = NetworkSource(f"{url}?token={token}", options=FAST)
        try:
            frames = read_frames(source, 3)
        finally:
            source.close()
        assert all(frame.shape == (240, 320, 3) for frame in frames)
        assert token not in source.name and source.name.endswith("/stream?token=***")
        with pytest.raises(CameraAuthError, match=r"it refused access \(403 Forbidden\)"):
            NetworkSource(f"{url}?token=not-{token}", options=FAST).read()
    finally:
        run.stop()


def test_an_https_mjpeg_camera_with_a_self_signed_certificate(mjpeg_server, tmp_path) -> None:
    from network_testutil import self_signed_certificate

    server = mjpeg_server(token="tok-1f4e", tls=self_signed_certificate(tmp_path))
    source = NetworkSource(server.url(), options=FAST)
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame.shape == (240, 320, 3) and source.name.startswith("camera https://127.0.0.1:")
    with pytest.raises(CameraAuthError, match=r"it refused the token \(401"):
        NetworkSource(server.url("wrong"), options=FAST).read()


def test_the_state_reads_as_one_line_for_a_status_and_as_json() -> None:
    from gclf.runtime.live.network import StreamState

    down = StreamState(up=False, down_since=1_000_000.0, outages=2, stalls=1, outage_s=12.0, failed_attempts=3, last_error="cannot open camera rtsp://u:***@h/x: nothing listens on h:554 (connection refused)")
    line = down.line(now=1_000_030.0)
    assert line.startswith("camera down since ") and ", 2 outages (42 s in all): cannot open camera rtsp://u:***@h/x: nothing listens" in line
    assert down.to_json()["outages"] == 2 and down.to_json()["up"] is False
    assert StreamState(up=True, outages=1, outage_s=5.4).line() == "camera up, 1 outage (5 s in all)"
    assert StreamState().line() == "camera connecting"
