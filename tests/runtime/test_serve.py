"""gclf-infer --serve: the web sink's endpoints, token, MJPEG framing, viewers coming and going.

Most tests drive a `WebSink` with a stand-in live loop (serve_testutil.FakeLoop: solid frames
whose colour is their label), on 127.0.0.1 with a port the OS picks. The last ones run the
real command. The browser itself is in test_serve_browser.py.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import socket
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gclf.runtime.cli.infer import main
from gclf.runtime.errors import install_hint, EXIT_MISSING_DEPENDENCY, EXIT_USAGE, MissingDependencyError, UsageError
from gclf.runtime.serve import (
    LOOPBACK,
    MAKE_TOKEN_HINT,
    TOKEN_ENV,
    ModelInfo,
    ServeToken,
    ServeAddress,
    WebSink,
    page_url,
    check_token,
    parse_serve_address,
    reachable_hosts,
    resolve_token,
    token_matches,
)
from serve_testutil import (
    FakeLoop,
    IdleFlood,
    SpeakingFlood,
    MjpegReader,
    colour_of,
    limit_open_files,
    timed_get,
    port_of,
    raw_request,
    start_served_run,
    wait_until,
    write_colour_video,
)
from serve_testutil import TIMEOUT_S
from serve_testutil import get as _get

TOKEN = "Tq3x-9vLk2PzR8mW_c7JdYe"  # 23 characters, varied, no placeholder word
MODEL = ModelInfo("tiny.onnx", "fp32", ("red", "blue"))
HEADLESS_FIELDS = {"timestamp", "frame", "faces", "fps"}  # a --headless JSON line's fields


def get(port: int, path: str, *, token: str | None = TOKEN, **options):
    """serve_testutil.get with the token (Authorization: Bearer) unless token=None."""
    return _get(port, path, token=token, **options)


def open_stream(port: int, path: str = "/stream", *, token: str | None = TOKEN, **options) -> MjpegReader:
    return MjpegReader.open(port, path, token=token, **options)


@pytest.fixture
def served():
    """`served(token=TOKEN, noise=False, **WebSink options)` -> (sink, running FakeLoop); both stopped after."""
    made: list[tuple[WebSink, FakeLoop]] = []

    def make(token: str = TOKEN, noise: bool = False, **options) -> tuple[WebSink, FakeLoop]:
        sink = WebSink(ServeAddress(LOOPBACK, 0), token=token, model=MODEL, **options)
        loop = FakeLoop(sink, noise=noise)
        made.append((sink, loop))
        loop.start()
        wait_until(lambda: loop.written > 0, "the first frame")
        return sink, loop

    yield make
    for sink, loop in made:
        loop.stop()
        sink.close()


# --- addresses and tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("8080", LOOPBACK, 8080), (":8080", LOOPBACK, 8080), ("0.0.0.0:80", "0.0.0.0", 80), ("[::1]:9000", "::1", 9000), ("pi.local:0", "pi.local", 0)],
)
def test_serve_address_defaults_to_loopback(text: str, host: str, port: int) -> None:
    assert parse_serve_address(text) == ServeAddress(host, port)


@pytest.mark.parametrize("text", ["", "web", "host:", "1:65536", "::1:80", "8080:x"])
def test_bad_serve_address_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--serve"):
        parse_serve_address(text)


def test_a_token_is_generated_when_none_is_given_and_is_printable() -> None:
    made = [resolve_token(environ={}) for _ in range(5)]
    assert len({t.value for t in made}) == 5 and all(t.generated and len(t.value) >= 22 for t in made)
    for t in made:
        check_token(t.value, "generated")  # what we make passes our own check


def test_a_given_token_is_taken_from_the_option_file_or_environment(tmp_path: Path) -> None:
    assert resolve_token(TOKEN, environ={}) == ServeToken(TOKEN, "--token")
    assert resolve_token(environ={TOKEN_ENV: TOKEN}) == ServeToken(TOKEN, "$GCLF_SERVE_TOKEN")
    assert resolve_token(TOKEN, environ={TOKEN_ENV: "other-" + TOKEN}).value == TOKEN  # the option wins
    path = tmp_path / "serve-token"
    for written in (TOKEN, TOKEN + "\n", TOKEN + "\r\n"):  # one trailing newline, as echo and editors leave
        path.write_text(written)
        path.chmod(0o600)
        assert resolve_token(token_file=path, environ={TOKEN_ENV: "x"}) == ServeToken(TOKEN, f"--token-file {path}")
    path.chmod(0o640)  # a systemd credential's group may read it
    assert resolve_token(token_file=path).value == TOKEN
    assert TOKEN not in repr(resolve_token(token_file=path))  # never in a traceback or log


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "serve-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)
    with pytest.raises(UsageError, match="readable by every user of this machine: chmod 600"):
        resolve_token(token_file=path)
    with pytest.raises(UsageError, match="--token-file .*missing: cannot read"):
        resolve_token(token_file=tmp_path / "missing")
    with pytest.raises(UsageError, match="not both"):
        resolve_token(TOKEN, tmp_path / "missing")


@pytest.mark.parametrize(
    ("weak", "why"),
    [
        ("aaaaaaaaaaaa", "at least 22"),
        ("............", "at least 22"),
        ("YOUR-LONG-TOKEN", "at least 22"),  # the old guide's own placeholder
        ("YOUR-LONG-TOKEN-FOR-THE-CAMERA", "placeholder"),
        ("changeme-changeme-changeme", "placeholder"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "variety"),
        ("abcabcabcabcabcabcabcabcabc", "variety"),
        ("has spaces in it, twenty-two+", "at least 22"),
        ("ünïcode-is-not-url-safe-at-all", "at least 22"),
    ],
)
def test_weak_tokens_are_refused_in_one_sentence(weak: str, why: str) -> None:
    with pytest.raises(UsageError) as refused:
        resolve_token(weak, environ={})
    message = str(refused.value)
    assert why in message and MAKE_TOKEN_HINT in message and weak not in message


def test_token_comparison_and_printed_urls() -> None:
    assert token_matches(TOKEN, TOKEN)
    assert not token_matches(TOKEN[:-1], TOKEN) and not token_matches(None, TOKEN) and not token_matches("", TOKEN)
    assert page_url("::1", 8080, None) == "http://[::1]:8080/"
    assert page_url("192.168.1.5", 8080, TOKEN) == f"http://192.168.1.5:8080/?token={TOKEN}"
    given = WebSink(ServeAddress(LOOPBACK, 0), token=ServeToken(TOKEN, "--token-file x"), model=MODEL)
    made = WebSink(ServeAddress(LOOPBACK, 0), token=resolve_token(environ={}), model=MODEL)
    try:
        assert given.urls() == [f"http://127.0.0.1:{given.port}/"]  # the user's token: never printed
        assert made.urls() == [f"http://127.0.0.1:{made.port}/?token={made.token.value}"]  # generated: the one way to learn it
    finally:
        given.close()
        made.close()


def test_urls_printed_for_a_wildcard_address_name_this_machine() -> None:
    assert reachable_hosts(ServeAddress("127.0.0.1", 1)) == ["127.0.0.1"]
    assert reachable_hosts(ServeAddress("pi.local", 1)) == ["pi.local"]
    hosts = reachable_hosts(ServeAddress("0.0.0.0", 1))  # nothing is bound or sent
    assert hosts and "0.0.0.0" not in hosts
    assert hosts[-1].endswith(".local") or len(hosts) == 1


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_every_ipv6_address_listens_on_both_families_and_every_printed_url_works() -> None:
    import ipaddress
    from urllib.parse import urlsplit

    sink = WebSink(ServeAddress("::", 0), token=resolve_token(environ={}), model=MODEL)
    try:
        urls = sink.urls()
        literal = [u for u in urls if _is_ip(urlsplit(u).hostname)]
        assert literal, urls
        families = set()
        for url in literal + [f"http://127.0.0.1:{sink.port}/", f"http://[::1]:{sink.port}/"]:
            parts = urlsplit(url)
            families.add(ipaddress.ip_address(parts.hostname).version)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
            try:
                conn.request("GET", "/latest", headers={"Authorization": f"Bearer {sink.token.value}"})
                assert conn.getresponse().status == 200, url
            finally:
                conn.close()
        assert families == {4, 6}
    finally:
        sink.close()


def _is_ip(host: str | None) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host or "")
        return True
    except ValueError:
        return False


# --- the token on every endpoint -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/latest", "/stream"])
def test_requests_without_the_token_get_403_and_no_frame(served, path: str) -> None:
    sink, _ = served(token=TOKEN)
    for attempt in (
        path,
        f"{path}?token=wrong-token-0123456789",
        f"{path}?token={TOKEN[:-1]}",
        f"{path}?token={TOKEN}x",
        f"{path}?token=wrong-token-0123456789&token={TOKEN}",  # repeated: which would count? neither
        f"{path}?token={TOKEN}&token=wrong-token-0123456789",
        f"{path}?token={TOKEN}&token={TOKEN}",
        f"{path}?TOKEN={TOKEN}",
        f"{path}?token={TOKEN.upper()}",
    ):
        status, _, body = get(sink.port, attempt, token=None)
        assert status == 403, attempt
        assert b"\xff\xd8" not in body and b"red" not in body and b"<img" not in body
    for headers in (
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Cookie": f"gclf_session_{sink.port}=wrong-token-0123456789"},
        {"Cookie": f"gclf_session_{sink.port}={TOKEN}"},  # the token is not the cookie's value
        {"Cookie": f"gclf_token_{sink.port}={TOKEN}"},
        {"X-Token": TOKEN},
    ):
        assert get(sink.port, path, token=None, headers=headers)[0] == 403, headers
    # In a body: never read (GET only, and the body is not where a token is looked for).
    answer = raw_request(sink.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(TOKEN) + 6}\r\nConnection: close\r\n\r\ntoken={TOKEN}".encode())
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert sink.viewers == 0  # a refused stream never counted as a viewer


def test_the_token_opens_every_endpoint_by_query_or_header(served) -> None:
    sink, _ = served(token=TOKEN)
    status, headers, body = get(sink.port, f"/?token={TOKEN}", token=None)
    assert status == 200 and headers["content-type"].startswith("text/html") and b'id="view"' in body
    assert "script-src 'sha256-" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    status, _, body = get(sink.port, "/latest", token=None, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and json.loads(body)["model"]["name"] == "tiny.onnx"
    stream = open_stream(sink.port, f"/stream?token={TOKEN}", token=None)
    try:
        assert stream.next_part().body.startswith(b"\xff\xd8")
    finally:
        stream.close()


def test_the_page_trades_the_url_token_for_a_strict_http_only_cookie(served) -> None:
    sink, _ = served()
    status, headers, body = get(sink.port, f"/?token={TOKEN}", token=None)
    assert status == 200
    cookie = headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    value = rest.split(";", 1)[0]
    assert name == f"gclf_session_{sink.port}"
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert b"history.replaceState" in body  # the page takes the token out of the address bar
    assert "set-cookie" not in get(sink.port, "/")[1]  # only a token in the URL is traded
    jar = {"Cookie": f"{name}={value}"}
    assert get(sink.port, "/latest", token=None, headers=jar)[0] == 200
    assert get(sink.port, "/", token=None, headers=jar)[0] == 200  # a reload, token gone from the URL
    stream = open_stream(sink.port, token=None, headers=jar)
    try:
        assert stream.next_part().body.startswith(b"\xff\xd8")
    finally:
        stream.close()


def test_the_cookie_is_not_the_token_and_dies_with_the_server(served) -> None:
    """Browsers send a host's cookies to every port of it, so the cookie may reach another
    web service on the device: it must not be the token, nor open the page after the run."""
    sink, _ = served()
    value = get(sink.port, f"/?token={TOKEN}", token=None)[1]["set-cookie"].split(";", 1)[0].partition("=")[2]
    assert value != TOKEN and TOKEN not in value and len(value) >= 32
    assert get(sink.port, "/latest", token=value)[0] == 403  # not a token: programs cannot use it as one
    assert get(sink.port, f"/latest?token={value}", token=None)[0] == 403
    other, _ = served()  # the next run, same token: the old cookie opens nothing
    assert get(other.port, "/latest", token=None, headers={"Cookie": f"gclf_session_{other.port}={value}"})[0] == 403
    again = get(other.port, f"/?token={TOKEN}", token=None)[1]["set-cookie"].split(";", 1)[0].partition("=")[2]
    assert again != value


def test_cross_site_requests_for_frames_and_results_are_refused(served) -> None:
    sink, _ = served()
    cross = {"Sec-Fetch-Site": "cross-site"}
    # Another site's <img src=.../stream> or fetch(): refused even with the token or cookie.
    assert get(sink.port, "/stream", headers=cross)[0] == 403
    assert get(sink.port, "/latest", headers=cross)[0] == 403
    assert get(sink.port, "/latest", token=None, headers={**cross, "Cookie": f"gclf_session_{sink.port}={sink._server.session}"})[0] == 403
    assert sink.viewers == 0
    # The page's own requests, and a link to the page from anywhere, are fine.
    assert get(sink.port, "/latest", headers={"Sec-Fetch-Site": "same-origin"})[0] == 200
    assert get(sink.port, f"/?token={TOKEN}", token=None, headers=cross)[0] == 200


def test_loopback_needs_the_token_and_refuses_foreign_host_names(served) -> None:
    sink, _ = served()
    assert get(sink.port, "/latest", token=None)[0] == 403  # any local user or process: no token, no picture
    assert get(sink.port, "/latest")[0] == 200
    assert get(sink.port, "/latest", headers={"Host": f"localhost:{sink.port + 1}"})[0] == 200  # an ssh -L tunnel
    # A page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) reads nothing.
    assert get(sink.port, "/latest", headers={"Host": "attacker.example"})[0] == 403
    assert get(sink.port, "/stream", headers={"Host": "attacker.example:80"})[0] == 403


# --- /latest ------------------------------------------------------------------------------------


def test_latest_has_the_headless_fields_and_the_pages(served) -> None:
    sink, loop = served()
    status, headers, body = get(sink.port, "/latest")
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)
    assert HEADLESS_FIELDS <= set(data)
    assert set(data) - HEADLESS_FIELDS == {"dropped", "processed", "model", "camera"}
    assert data["model"] == {"name": "tiny.onnx", "variant": "fp32", "classes": ["red", "blue"], "min_confidence": 0.0}
    assert data["camera"] == {"name": None}  # no camera name given (gclf-infer always gives one); not a network camera
    (face,) = data["faces"]
    assert set(face) == {"box", "label", "confidence"} and face["box"] == [0, 0, 160, 120]
    assert face["label"] in ("red", "blue") and face["confidence"] == 0.9
    assert 1 <= data["processed"] <= loop.written and data["frame"] == data["processed"] - 1
    wait_until(lambda: json.loads(get(sink.port, "/latest")[2])["frame"] > data["frame"], "/latest to follow the loop")


def test_latest_before_the_first_frame() -> None:
    sink = WebSink(ServeAddress(LOOPBACK, 0), token=TOKEN, model=MODEL)
    try:
        data = json.loads(get(sink.port, "/latest")[2])
        assert data["frame"] is None and data["faces"] == [] and data["processed"] == 0
        assert data["model"]["classes"] == ["red", "blue"]
    finally:
        sink.close()


# --- /stream -----------------------------------------------------------------------------------


def test_mjpeg_framing_and_frames_that_follow_the_loop(served) -> None:
    sink, _ = served()
    stream = open_stream(sink.port)
    try:
        colours = set()
        for _ in range(40):
            part = stream.next_part()
            assert part.headers["content-type"] == "image/jpeg"
            assert len(part.body) == int(part.headers["content-length"])
            assert part.body[:3] == b"\xff\xd8\xff" and part.body[-2:] == b"\xff\xd9"  # a whole JPEG
            colours.add(colour_of(part.body))
            if colours == {"red", "blue"}:
                break
        assert colours == {"red", "blue"}, "the stream did not follow the frames"
    finally:
        stream.close()


def test_frames_are_drawn_only_while_someone_watches_and_no_faster_than_encoded(served) -> None:
    sink, loop = served(max_fps=5.0)  # the stand-in loop runs at about 50 FPS
    assert not sink.needs_image
    assert loop.with_image == 0  # nobody watched: the loop drew no picture
    stream = open_stream(sink.port)
    stream.next_part()
    written, drawn = loop.written, loop.with_image
    assert drawn > 0
    for _ in range(5):
        stream.next_part()
    assert loop.with_image > drawn
    assert loop.with_image - drawn < loop.written - written  # pictures for some frames, not all
    stream.close()
    wait_until(lambda: sink.viewers == 0, "the viewer to be gone")
    drawn, written = loop.with_image, loop.written
    wait_until(lambda: loop.written > written + 10, "more frames")
    assert loop.with_image <= drawn + 1  # at most one already asked for as the viewer left


def test_each_frame_is_encoded_at_most_once_for_all_viewers(served, monkeypatch) -> None:
    import gclf.runtime.serve.server as serve_http

    encoded: list = []  # the images themselves: kept alive, no two can share an id
    real = serve_http.encode_jpeg

    def counting(image):
        encoded.append(image)
        return real(image)

    monkeypatch.setattr(serve_http, "encode_jpeg", counting)
    sink, _ = served()
    streams = [open_stream(sink.port) for _ in range(3)]
    try:
        for _ in range(8):
            for stream in streams:
                stream.next_part()
    finally:
        for stream in streams:
            stream.close()
    assert len(encoded) == len({id(image) for image in encoded}), "a frame was encoded more than once"
    assert len(encoded) < 3 * 8  # shared: three viewers did not cost three encodings a frame


def test_a_vanished_viewer_leaves_the_loop_and_the_others_running(served) -> None:
    sink, loop = served()
    leaving, staying = open_stream(sink.port), open_stream(sink.port)
    try:
        leaving.next_part()
        staying.next_part()
        wait_until(lambda: sink.viewers == 2, "two viewers")
        leaving.abort()
        written = loop.written
        before = len({p.body for p in staying.parts})
        for _ in range(5):
            staying.next_part()
        assert len({p.body for p in staying.parts}) > before  # new pictures, not the old one again
        wait_until(lambda: loop.written > written + 10, "the loop to go on")
        wait_until(lambda: sink.viewers == 1, "the vanished viewer to be let go")
    finally:
        staying.close()


def test_a_viewer_that_stops_reading_never_blocks_the_loop(served) -> None:
    sink, loop = served(max_fps=50.0, noise=True)  # large JPEGs: its socket is full within a second
    stuck = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(f"GET /stream?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())  # then never reads
    try:
        wait_until(lambda: sink.viewers == 1, "the stuck viewer to connect")
        written = loop.written
        wait_until(lambda: loop.written > written + 50, "the loop to go on past a full socket")
        other = open_stream(sink.port)
        try:
            first = other.next_part().body
            assert any(other.next_part().body != first for _ in range(20))
        finally:
            other.close()
    finally:
        stuck.close()


def test_a_viewer_that_takes_nothing_is_let_go(served) -> None:
    sink, loop = served(write_timeout_s=1.0, max_fps=50.0, noise=True)
    stuck = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
    stuck.sendall(f"GET /stream?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())  # then never reads
    try:
        wait_until(lambda: sink.viewers == 1, "the stuck viewer to connect")
        # The server's send buffer is small: it fills within a frame or two, then the frame
        # being written has write_timeout_s. Not minutes of buffered frames first.
        wait_until(lambda: sink.viewers == 0, "the stuck viewer to be let go", timeout=4.0)
        written = loop.written
        wait_until(lambda: loop.written > written + 5, "the loop to go on")
    finally:
        stuck.close()


def test_a_viewer_with_large_buffers_that_stops_reading_is_let_go_within_10_s(served) -> None:
    """An 8 MB receive buffer takes minutes of small frames without its program reading any:
    the write never waits, so only following what the viewer has read lets it go in time."""
    sink, loop = served(max_fps=15.0)  # small solid frames, a few KB each
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    stuck.settimeout(TIMEOUT_S)
    stuck.connect(("127.0.0.1", sink.port))
    stuck.sendall(f"GET /stream?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    try:
        got = b""
        while got.count(b"\xff\xd9") < 5:  # it watches a few frames...
            got += stuck.recv(65536)
        stopped = time.monotonic()  # ...then reads nothing more
        wait_until(lambda: sink.viewers == 0, "the stalled viewer to be let go", timeout=10.0)
        assert time.monotonic() - stopped <= 10.0
        assert loop.written > 0
    finally:
        stuck.close()


def test_a_viewer_that_keeps_up_keeps_its_slot_across_a_pause_of_the_frames(served) -> None:
    """A receiver that has read everything may not say so until more data comes: a pause of
    the stream longer than the deadline must not count against the viewer."""
    sink, loop = served(max_fps=15.0, write_timeout_s=1.0)
    stream = open_stream(sink.port)
    try:
        for _ in range(10):
            stream.next_part()
        loop.paused.set()
        time.sleep(2.5)  # more than twice the deadline without a frame
        loop.paused.clear()
        for _ in range(30):
            stream.next_part()  # 2 s of frames: the deadline passes twice more
        assert sink.viewers == 1
    finally:
        stream.close()


def test_viewers_beyond_the_cap_get_503(served) -> None:
    sink, _ = served(max_viewers=2)
    streams = [open_stream(sink.port) for _ in range(2)]
    try:
        status, headers, _ = get(sink.port, "/stream")
        assert status == 503 and headers["retry-after"] == "5"
        assert get(sink.port, "/latest")[0] == 200  # programs still get results
        streams.pop().close()
        wait_until(lambda: sink.viewers == 1, "a slot to free")
        streams.append(open_stream(sink.port))
        streams[-1].next_part()
    finally:
        for stream in streams:
            stream.close()


# --- what is not served ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/index.html",
        "/stream/",
        "/../../etc/passwd",
        "/runtime/serve.py",
        "/serve_page.html",
        "/page.html",
        "/serve/page.html",
        "/%2e%2e/x",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "/%252e%252e/%252e%252e/etc/passwd",  # encoded twice
        "/..%5c..%5cetc%5cpasswd",  # backslashes
        "/%c0%ae%c0%ae/etc/passwd",  # overlong UTF-8 dots
        "//etc/passwd",
        "/latest/../../etc/passwd",
        "/stream%00.jpg",
        "/./latest/..",
    ],
)
def test_no_other_paths(served, path: str) -> None:
    sink, _ = served(token=TOKEN)
    status, _, body = get(sink.port, path)
    assert status in (400, 404), path
    assert b"\xff\xd8" not in body and b"import" not in body and b"root:" not in body


def test_security_md_lists_every_path_served_and_what_each_needs(served) -> None:
    import re

    from gclf.runtime.serve.metrics import LiveMetrics
    from gclf.runtime.serve.server import ROUTES
    from gclf_testutil import REPO

    text = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    section = text.split("## Every path `--serve` answers", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(/[^`]*)` \| [^|]+ \| ([^|]+) \|$", section, re.M))
    served_paths = [path for path, _ in ROUTES]
    assert sorted(rows) == sorted(served_paths)
    sink, _ = served(metrics=LiveMetrics(labels=MODEL.classes))
    for path, refused in rows.items():  # the table says which need the token: so does the server
        status = get(sink.port, path, token=None)[0]
        assert (status == 403) == refused.startswith("no token"), (path, status, refused)
        if path != "/stream":  # endless with the token; opened elsewhere
            assert get(sink.port, path)[0] in (200, 503), path


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD"])
def test_only_get(served, method: str) -> None:
    sink, _ = served()
    assert get(sink.port, "/latest", method=method)[0] == 405


def test_malformed_requests_get_an_answer_and_the_server_goes_on(served) -> None:
    sink, loop = served()
    for junk in (
        b"GARBAGE\r\n\r\n",
        b"GET /latest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: lots\r\n\r\n",
        b"GET /latest HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /latest HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(14, 200)) + b"\r\n\r\n",  # TLS, then a blank line
    ):
        answer = raw_request(sink.port, junk)
        assert answer.startswith(b"HTTP/1.1 400 "), (junk[:30], answer[:60])
    # Headers past the 16 KiB limit: tornado closes the connection at once (no buffering them).
    assert raw_request(sink.port, b"GET /latest HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n") == b""
    written = loop.written
    assert get(sink.port, "/latest")[0] == 200
    wait_until(lambda: loop.written > written, "the loop to go on")


def test_many_connections_at_once_all_get_an_answer(served) -> None:
    sink, loop = served(max_viewers=4)
    paths = ["/latest"] * 40 + ["/"] * 10 + ["/nothing"] * 10

    with concurrent.futures.ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(lambda p: get(sink.port, p)[0], paths))
    assert statuses == [200] * 50 + [404] * 10
    streams, refused = [], 0
    try:
        for _ in range(12):
            try:
                streams.append(open_stream(sink.port))
            except AssertionError as exc:
                assert "503" in str(exc)
                refused += 1
        assert (len(streams), refused) == (4, 8)
        written = loop.written
        wait_until(lambda: loop.written > written + 5, "the loop to go on")
    finally:
        for stream in streams:
            stream.close()


# --- floods -------------------------------------------------------------------------------------------


def test_an_idle_flood_is_capped_and_neither_a_request_nor_a_viewer_with_the_token_loses(served) -> None:
    sink, loop = served(max_connections=40, max_per_address=20, header_timeout_s=1.0)
    viewer = open_stream(sink.port)
    viewer.next_part()
    flood = IdleFlood(sink.port, 100)
    flood.start()
    try:
        wait_until(lambda: flood.reopened > 100, "the server to close idle connections to make room")
        assert sink.open_connections <= 20  # one address: its cap, whatever it tries
        status, _ = timed_get(sink.port, "/latest", token=TOKEN)
        assert status == 200
        before = len(viewer.parts)
        for _ in range(5):
            viewer.next_part()  # the authenticated viewer kept its connection
        assert len(viewer.parts) == before + 5
        written = loop.written
        wait_until(lambda: loop.written > written + 5, "the loop to go on")
    finally:
        flood.stop()
        viewer.close()


def test_a_flood_of_one_byte_connections_from_many_addresses_leaves_room_for_the_token(served) -> None:
    """Hundreds of connections a second from six loopback addresses, each sending one byte:
    every connection is young and has spoken, and together they exceed the cap in all. The
    token holder's requests are still answered, and nothing is logged one by one."""
    reports: list[str] = []
    sink, loop = served(max_connections=64, max_per_address=16, report=reports.append, report_every_s=1.0)
    flood = SpeakingFlood(sink.port, rate=400)
    flood.start()
    try:
        wait_until(lambda: flood.closed_by_server > 200, "the flood to fill the caps", timeout=20)
        assert sink.open_connections <= 64
        answers = []
        for _ in range(40):
            answers.append(timed_get(sink.port, "/latest", token=TOKEN)[0])
            time.sleep(0.02)
        assert flood.closed_by_server > 300, "the flood was not under way while the requests were made"
        written = loop.written
        wait_until(lambda: loop.written > written + 5, "the loop to go on")
    finally:
        flood.stop()
    assert answers.count(200) >= 38, answers  # at least 95%
    wait_until(lambda: reports, "the summary of refusals")
    assert len(reports) <= 3 and "closed for room" in reports[0], reports


def test_refused_requests_are_counted_not_logged_one_by_one(served, caplog) -> None:
    import logging

    reports: list[str] = []
    sink, _ = served(report=reports.append, report_every_s=0.5)
    body = b"--x\r\nContent-Disposition: form-data\r\n\r\nzz\r\n"  # a multipart body that does not parse
    bad_body = b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    with caplog.at_level(logging.DEBUG):
        for _ in range(25):
            assert get(sink.port, "/latest", token=None)[0] == 403
            assert get(sink.port, "/nothing")[0] == 404
            assert get(sink.port, "/latest", method="POST")[0] == 405
            assert raw_request(sink.port, b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n" + bad_body).startswith(b"HTTP/1.1 400 ")
            assert raw_request(sink.port, b"GET /latest HTTP/1.1\r\nHost: 127.0.0.1\r\n" + bad_body).startswith(b"HTTP/1.1 400 ")
            assert raw_request(sink.port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
            assert get(sink.port, "/favicon.ico")[0] == 404  # a browser's own request: not counted
        # One summary line per window (0.5 s here): a loaded machine may spread the requests
        # over a few windows, never a line per request; the windows add up to every refusal.
        wait_until(lambda: _refused_totals(reports)[0] >= 150, "the summaries")
    assert [r for r in caplog.records if r.name.startswith("tornado")] == []
    assert len(reports) < 20 and all(r.startswith("--serve: in the last ") for r in reports), reports
    assert _refused_totals(reports) == (150, 25, 25, 100), reports


def _refused_totals(reports: list[str]) -> tuple[int, int, int, int]:
    """(refused, forbidden, not found, bad requests) summed over the summary lines."""
    patterns = (r"(\d+) requests? refused", r"(\d+) forbidden", r"(\d+) not found", r"(\d+) bad requests?")
    return tuple(sum(int(m) for line in reports for m in re.findall(p, line)) for p in patterns)  # type: ignore[return-value]


def test_healthz_saying_unavailable_is_not_a_refusal() -> None:
    reports: list[str] = []
    sink = WebSink(ServeAddress(LOOPBACK, 0), token=TOKEN, model=MODEL, report=reports.append, report_every_s=0.3)
    try:
        assert [get(sink.port, "/healthz", token=None)[0] for _ in range(5)] == [503] * 5  # no frame yet
        time.sleep(1.0)
        assert reports == []
    finally:
        sink.close()


def test_a_connection_that_sends_no_headers_is_closed_after_the_header_deadline(served) -> None:
    sink, _ = served(header_timeout_s=0.5)
    with socket.create_connection(("127.0.0.1", sink.port), timeout=TIMEOUT_S) as idle:
        idle.sendall(b"GET /latest HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a slow client: never finishes its headers
        start = time.monotonic()
        assert idle.recv(100) == b""  # closed, without an answer
        assert time.monotonic() - start < 5.0


FLOOD_SCRIPT = """
import sys, time
from gclf.runtime.serve import LOOPBACK, ModelInfo, ServeAddress, WebSink
sink = WebSink(ServeAddress(LOOPBACK, 0), token=sys.argv[1], model=ModelInfo("m.onnx", "fp32", ("a", "b")),
               max_connections=10_000, max_per_address=10_000)  # caps above the limit: only EMFILE stops it
print(sink.port, flush=True)
time.sleep(float(sys.argv[2]))
sink.close()
"""


def test_running_out_of_file_descriptors_pauses_accepting_and_is_reported_once() -> None:
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-c", FLOOD_SCRIPT, TOKEN, "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit_open_files(64)
    )
    try:
        port = int(proc.stdout.readline())
        flood = IdleFlood(port, 150)
        flood.start()
        time.sleep(2.0)
        flood.stop()  # the flood's sockets close; the server's descriptors come back
        wait_until(lambda: timed_get(port, "/latest", token=TOKEN)[0] == 200, "accepting to resume", timeout=TIMEOUT_S)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=TIMEOUT_S)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "out of file descriptors" in lines[0], stderr[-2000:]


@pytest.mark.parametrize("kind", ["idle", "one byte from many addresses"])
def test_a_flood_under_an_open_file_limit_of_256_leaves_the_loop_and_the_token_holder(tiny_onnx, tmp_path: Path, kind: str) -> None:
    """400 idle connections from one address, or 400 a second from six addresses each
    sending one byte, with the open-file limit 256: the command goes on, the token holder is
    answered, and the console stays short."""
    video = write_colour_video(tmp_path / "v.avi", 1000, fps=25, size=(64, 48), every=10)  # 40 s; stopped sooner
    run = start_served_run(
        [str(a) for a in (tiny_onnx(), "--video", video, "--realtime", "--headless", "--serve", "127.0.0.1:0")],
        env={TOKEN_ENV: TOKEN},
        preexec_fn=limit_open_files(256),
    )
    port = port_of(run.url)
    flood = IdleFlood(port, 400) if kind == "idle" else SpeakingFlood(port, rate=400)
    closed = (lambda: flood.reopened) if kind == "idle" else (lambda: flood.closed_by_server)
    try:
        before = json.loads(get(port, "/latest")[2])["processed"]
        flood.start()
        wait_until(lambda: closed() > 400, "the server to close the flood's connections", timeout=30)
        answers = [timed_get(port, "/latest", token=TOKEN)[0] for _ in range(10)]
        assert answers.count(200) >= 9, answers
        during = json.loads(get(port, "/latest")[2])["processed"]
        assert during > before  # the loop went on
    finally:
        flood.stop()
        run.stop()
    console = run.stderr_lines
    assert len(console) < 100 and "Traceback" not in "".join(console), "".join(console[-20:])


def test_close_ends_open_streams_and_frees_the_port() -> None:
    sink = WebSink(ServeAddress(LOOPBACK, 0), token=TOKEN, model=MODEL)
    loop = FakeLoop(sink)
    loop.start()
    stream = open_stream(sink.port)
    stream.next_part()
    loop.stop()
    sink.close()
    with pytest.raises((AssertionError, http.client.HTTPException, OSError)):
        for _ in range(1000):
            stream.next_part()  # ends: the server closed the response
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sink.port), timeout=5).close()  # nobody listens any more


# --- the command ---------------------------------------------------------------------------------------


def _infer(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_serve_without_the_extra_names_it(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    video = write_colour_video(tmp_path / "v.avi", 4, fps=10, size=(64, 48))
    monkeypatch.setitem(sys.modules, "tornado", None)  # as if not installed
    result = _infer(tiny_onnx(), "--video", video, "--serve", "0")
    assert result.exit_code == EXIT_MISSING_DEPENDENCY == MissingDependencyError.exit_code
    assert result.stderr.strip().splitlines()[-1] == f"error: --serve needs the web server extra: {install_hint('serve')}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", TOKEN], "--token only applies with --serve"),
        (["--serve", "web"], "--serve web: give PORT"),
        (["--serve", "0", "--token", "short"], "the token from --token must be at least 22"),
        (["--token-file", "x"], "--token-file only applies with --serve"),
    ],
)
def test_serve_usage_errors(tiny_onnx, tmp_path: Path, args: list[str], message: str) -> None:
    video = write_colour_video(tmp_path / "v.avi", 4, fps=10, size=(64, 48))
    result = _infer(tiny_onnx(), "--video", video, *args)
    assert result.exit_code == EXIT_USAGE and message in result.stderr
    assert "Traceback" not in result.output


def test_serve_on_a_busy_port_is_one_sentence(tiny_onnx, tmp_path: Path) -> None:
    video = write_colour_video(tmp_path / "v.avi", 4, fps=10, size=(64, 48))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _infer(tiny_onnx(), "--video", video, "--serve", f"127.0.0.1:{taken.getsockname()[1]}")
    assert result.exit_code == EXIT_USAGE
    assert "cannot listen there" in result.stderr and "Traceback" not in result.output


def test_serve_with_only_images_is_refused(tiny_onnx, tmp_path: Path, write_image) -> None:
    import numpy as np

    image = write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    result = _infer(tiny_onnx(), image, "--serve", "0")
    assert result.exit_code == EXIT_USAGE and "--serve" in result.stderr


def test_the_command_serves_while_a_video_plays(tiny_onnx, tmp_path: Path) -> None:
    video = write_colour_video(tmp_path / "v.avi", 400, fps=25, size=(64, 48), every=10)  # 16 s; stopped sooner
    out = (tmp_path / "lines.jsonl").open("wb")
    run = start_served_run([tiny_onnx(), "--video", video, "--realtime", "--headless", "--serve", "127.0.0.1:0"], stdout=out, env={TOKEN_ENV: TOKEN})
    try:
        assert run.url.startswith("http://127.0.0.1:") and run.url.endswith("/")  # the token is the user's: not printed
        assert "the token from $GCLF_SERVE_TOKEN" in "".join(run.stderr_lines)
        port = port_of(run.url)
        assert get(port, "/latest", token=None)[0] == 403
        stream = open_stream(port, f"/stream?token={TOKEN}", token=None)
        try:
            labels = {colour_of(stream.next_part().body) for _ in range(30)}
        finally:
            stream.close()
        assert labels == {"red", "blue"}
        data = json.loads(get(port, f"/latest?token={TOKEN}", token=None)[2])
        assert data["faces"][0]["label"] in ("red", "blue") and data["model"]["classes"] == ["red", "blue"]
    finally:
        code = run.stop()
        out.close()
    assert code in (0, 130), "".join(run.stderr_lines)
    lines = [json.loads(line) for line in (tmp_path / "lines.jsonl").read_text().splitlines()]
    assert lines and set(lines[0]) == HEADLESS_FIELDS  # the JSON lines go on as before
    assert "Traceback" not in "".join(run.stderr_lines)
    assert TOKEN not in "".join(run.stderr_lines)


@pytest.mark.parametrize("given", ["none", "file"])
def test_the_printed_address_works_and_a_given_token_is_never_printed(tiny_onnx, tmp_path: Path, given: str) -> None:
    video = write_colour_video(tmp_path / "v.avi", 400, fps=25, size=(64, 48), every=10)
    args = [tiny_onnx(), "--video", video, "--realtime", "--headless", "--serve", "127.0.0.1:0"]
    if given == "file":
        (tmp_path / "serve-token").write_text(TOKEN + "\n")
        (tmp_path / "serve-token").chmod(0o600)
        args += ["--token-file", tmp_path / "serve-token"]
    run = start_served_run([str(a) for a in args], env={TOKEN_ENV: ""})
    try:
        port = port_of(run.url)
        assert get(port, "/latest", token=None)[0] == 403  # loopback too: no token, no picture
        if given == "none":  # generated: printed once with the address, which then opens the page
            status, headers, _ = get(port, run.url[run.url.index("/", 7):], token=None)
            assert status == 200 and "set-cookie" in headers
        else:
            assert run.url.endswith("/") and get(port, "/latest", token=TOKEN)[0] == 200
    finally:
        run.stop()
    console = "".join(run.stderr_lines)
    assert "Traceback" not in console and (given == "none" or TOKEN not in console)


@pytest.mark.parametrize("weak", ["aaaaaaaaaaaa", "............", "YOUR-LONG-TOKEN"])
def test_the_command_refuses_weak_tokens_with_exit_2(tiny_onnx, tmp_path: Path, weak: str) -> None:
    video = write_colour_video(tmp_path / "v.avi", 4, fps=10, size=(64, 48))
    result = CliRunner().invoke(main, [str(tiny_onnx()), "--video", str(video), "--serve", "0"], env={TOKEN_ENV: weak})
    assert result.exit_code == EXIT_USAGE and MAKE_TOKEN_HINT in result.stderr
    assert weak not in result.stderr and "Traceback" not in result.output


def test_run_live_asks_each_frame_whether_a_picture_is_wanted(tiny_onnx, tmp_path: Path) -> None:
    """The hook --serve relies on: `needs_image` is read per frame, not once per run."""
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.live.loop import run_live
    from gclf.runtime.live.sources import CaptureSource, open_feed

    class EveryOtherFrame:
        def __init__(self) -> None:
            self.got: list[bool] = []

        @property
        def needs_image(self) -> bool:
            return len(self.got) % 2 == 0

        def write(self, result, annotated) -> bool:
            self.got.append(annotated is not None)
            return True

        def close(self) -> None:
            pass

    video = write_colour_video(tmp_path / "v.avi", 6, fps=10, size=(64, 48))
    sink = EveryOtherFrame()
    feed = open_feed(CaptureSource.video(video), keep_every_frame=True)
    summary = run_live(feed, Classifier(tiny_onnx()), detector=None, sinks=[sink])
    assert summary.processed == 6
    assert sink.got == [True, False] * 3


def test_the_server_side_imports_no_torch() -> None:
    """--serve runs on the Pi: its modules stay in the torch-free runtime (fresh interpreter)."""
    import subprocess

    code = "import sys, gclf.runtime.serve, gclf.runtime.serve.server; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'onnx')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
