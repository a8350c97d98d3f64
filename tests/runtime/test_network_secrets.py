"""A camera URL's password and token never show: in gclf's own sentences and reprs (redact), in
what OpenCV and FFmpeg print themselves (switched off, even when the environment asks them to
talk), and the URL can come from a file, $GCLF_CAMERA_URL or a systemd credential instead of
the command line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gclf.runtime.errors import UsageError
from gclf.runtime.redact import redact, resolve_camera_url, url_secrets
from gclf_testutil import REPO
from network_testutil import RtspServer, free_port, require_rtsp_server


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rtsp://admin:hunter2@192.168.1.20:554/Streaming/Channels/101", "rtsp://admin:***@192.168.1.20:554/Streaming/Channels/101"),
        ("rtsps://u:p%40ss@cam.local/live", "rtsps://u:***@cam.local/live"),
        ("rtsp://u:p@ss@cam.local/live", "rtsp://u:***@cam.local/live"),  # a raw @ in the password
        ("http://gclf.local:8080/stream?token=abcDEF123_-x&size=2", "http://gclf.local:8080/stream?token=***&size=2"),
        ("http://cam/video.cgi?user=admin&pwd=letmein", "http://cam/video.cgi?user=admin&pwd=***"),
        ("cannot open camera rtsp://a:b@h/x: refused; also http://h/s?x=1&TOKEN=t9", "cannot open camera rtsp://a:***@h/x: refused; also http://h/s?x=1&TOKEN=***"),
        ("rtsp://user@cam/stream and rtsp://cam/stream", "rtsp://user@cam/stream and rtsp://cam/stream"),  # nothing secret
        ("video clip.avi: 3 frames, key=value", "video clip.avi: 3 frames, key=value"),  # not a URL's query
    ],
)
def test_redact_hides_url_passwords_and_secret_query_values(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_also_hides_known_secrets_wherever_they_stand() -> None:
    url = "rtsp://admin:p%40ss%21@cam/live?token=T0k"
    secrets = url_secrets(url)
    assert set(secrets) == {"p%40ss%21", "p@ss!", "T0k"}
    # A library that prints the decoded password, or the token on its own, is covered too.
    assert redact("auth failed for admin with p@ss! (token T0k)", secrets) == "auth failed for admin with *** (token ***)"


def test_the_url_comes_from_the_command_line_a_file_the_environment_or_a_credential(tmp_path: Path) -> None:
    url = "rtsp://viewer:s3cret@10.0.0.5/cam"
    assert resolve_camera_url(url, environ={}) == (url, "--camera")
    assert resolve_camera_url(environ={}) is None
    assert resolve_camera_url(environ={"GCLF_CAMERA_URL": url}) == (url, "$GCLF_CAMERA_URL")

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "camera-url").write_text(url + "\n")
    assert resolve_camera_url(environ={"CREDENTIALS_DIRECTORY": str(credentials)}) == (url, "credential camera-url")

    url_file = tmp_path / "cam.url"
    url_file.write_text("\n" + url + "\n")
    url_file.chmod(0o600)
    assert resolve_camera_url(url_file=url_file, environ={"GCLF_CAMERA_URL": "rtsp://other/x"}) == (url, f"--camera-url-file {url_file}")


def test_a_bad_url_source_is_one_sentence_that_never_quotes_the_secret(tmp_path: Path) -> None:
    url_file = tmp_path / "cam.url"
    url_file.write_text("rtsp://viewer:s3cret@10.0.0.5/cam\n")
    url_file.chmod(0o644)
    with pytest.raises(UsageError, match=r"readable by every user of this machine: chmod 600"):
        resolve_camera_url(url_file=url_file, environ={})
    url_file.write_text("viewer s3cret\n")
    url_file.chmod(0o600)
    with pytest.raises(UsageError) as raised:
        resolve_camera_url(url_file=url_file, environ={})
    assert "does not hold an rtsp://" in str(raised.value) and "s3cret" not in str(raised.value)
    with pytest.raises(UsageError) as raised:
        resolve_camera_url(environ={"GCLF_CAMERA_URL": "ftp://viewer:s3cret@host/x"})
    assert "$GCLF_CAMERA_URL is not an rtsp://" in str(raised.value) and "s3cret" not in str(raised.value)
    with pytest.raises(UsageError, match="not both"):
        resolve_camera_url("rtsp://h/x", url_file=url_file)


# Run in a child process whose environment asks OpenCV and FFmpeg for every debug line they
# have (OpenCV then prints the capture's filename, password included): the source must switch
# them off. It tries a wrong password, a port where nothing listens and a good login.
CHILD = textwrap.dedent(
    """
    import sys
    from gclf.runtime.live.network import NetworkSource, StreamOptions
    from gclf.runtime.errors import GclfError

    options = StreamOptions(frame_timeout_s=2.0, open_timeout_s=4.0, backoff_first_s=0.05, backoff_max_s=0.1,
                            probe_timeout_s=1.0, reconnect_max=1)
    for url in sys.argv[1:]:
        source = NetworkSource(url, options=options, on_change=lambda state: print("state:", state.line(), flush=True))
        try:
            frame = source.read()
            print(source.name, "frame", frame.shape, repr(source), flush=True)
        except GclfError as exc:
            print("error:", exc, flush=True)
        finally:
            source.close()
    """
)


def test_no_password_is_printed_even_when_opencv_and_ffmpeg_are_asked_to_talk() -> None:
    require_rtsp_server()
    password, wrong = "Pw-c0ffee42", "Wrong-beef17"
    server = RtspServer(auth=f"viewer:{password}").start()
    try:
        urls = [
            server.url(f"viewer:{wrong}"),
            f"rtsp://viewer:{password}@127.0.0.1:{free_port()}/cam",
            server.url(),
        ]
        hostile = {"OPENCV_LOG_LEVEL": "DEBUG", "OPENCV_VIDEOIO_DEBUG": "1", "OPENCV_FFMPEG_DEBUG": "1", "OPENCV_FFMPEG_LOGLEVEL": "56"}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, *urls], capture_output=True, text=True, timeout=120,
            env={"PATH": "/usr/bin:/bin", **hostile}, cwd=REPO,
        )  # fmt: skip
    finally:
        server.stop()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert password not in output and wrong not in output
    assert "it refused the user name or password (401 Unauthorized)" in output
    assert "nothing listens on 127.0.0.1" in output and "2 attempts failed in a row" in output
    assert "frame (240, 320, 3)" in output
    assert output.count(":***@127.0.0.1") >= 4
