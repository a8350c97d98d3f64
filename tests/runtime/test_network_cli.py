"""gclf-infer with network cameras, end to end, against real servers on loopback (GStreamer's RTSP
server, an HTTP MJPEG camera): a camera from a config file classifies frames, survives its
server's restarts with the outages reported (page, summaries, systemd's status, the exit
summary) and never shows its password in anything the run prints or writes; wrong
credentials and a port where nothing listens end the run in one sentence with their exit
codes; two instances of the template unit run side by side; --check checks the camera the
options name. Each run is a child process, so that everything it prints, FFmpeg's own
output included, is captured and searched."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

from gclf.runtime.cli import preflight
from gclf.runtime.cli.infer import main
from gclf.runtime.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from gclf_testutil import REPO
from network_testutil import RtspServer, free_port, mjpeg_server, require_rtsp_server, rtsp_server, wait_for  # noqa: F401 (fixtures)
from serve_testutil import get

PASSWORD = "Pw-4f1d9c7e"
WRONG = "Wr0ng-9a2b"
TOKEN = "Tq3x-9vLk2PzR8mW_c7JdYe"  # the page's
TEMPLATE = REPO / "deploy" / "gclf-camera@.service"


class GclfRun:
    """`gclf-infer ARGS` in a child process, its stdout and stderr in files of `folder` (read
    whole at any time; searched for secrets at the end, with every other file there)."""

    def __init__(self, args: list[str], folder: Path, *, env: dict[str, str] | None = None, name: str = "run") -> None:
        self.folder = folder
        self.out, self.err = folder / f"{name}.stdout", folder / f"{name}.stderr"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "gclf.runtime.cli", *args], stdout=out, stderr=err,
                                         env={**os.environ, **(env or {})}, cwd=folder)  # fmt: skip

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float) -> None:
        def done() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"gclf-infer ended (exit {self.proc.returncode}) while waiting for {what}:\n{self.stderr()}")
            return condition()

        wait_for(done, what, timeout_s)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"gclf-infer still ran after {timeout_s} s:\n{self.stderr()}") from None

    def stop(self) -> int:
        """SIGTERM, as systemctl stop sends: the run ends as after q, with its summary."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(20)

    def counts(self) -> tuple[int, int]:
        """The child's native threads and open file descriptors."""
        return len(os.listdir(f"/proc/{self.proc.pid}/task")), len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{") and line.endswith("}")]


def latest(port: int, token: str = TOKEN) -> dict[str, Any]:
    status, _, body = get(port, "/latest", token=token)
    assert status == 200, status
    return json.loads(body)


class SystemdStandIn:
    """Where systemd listens for sd_notify: a datagram socket (short path: AF_UNIX's limit),
    its messages collected by a thread."""

    def __init__(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="gclf-notify-")
        self.path = os.path.join(self._folder, "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.1)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        os.unlink(self.path)
        os.rmdir(self._folder)


def assert_no_secret(folder: Path, *secrets: str, also: str = "") -> None:
    """No secret in any file under `folder` (the run's output, its log, its config aside) nor in `also`."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix not in (".toml", ".url")):
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} in {path.name}"
    for secret in secrets:
        assert secret not in also


def test_a_camera_from_a_config_file_survives_two_restarts_and_its_password_never_shows(rtsp_server, tiny_onnx, tmp_path: Path) -> None:
    server = rtsp_server(auth=f"viewer:{PASSWORD}")
    port, log = free_port(), tmp_path / "hall.jsonl"
    config = tmp_path / "hall.toml"
    config.write_text(
        f'model = "{tiny_onnx()}"\ncamera = "{server.url()}"\nname = "hall"\nheadless = true\njson = true\n'
        f'summary-every = 0.5\njsonl = "{log}"\nserve = "127.0.0.1:{port}"\n'
    )
    config.chmod(0o600)
    systemd = SystemdStandIn()
    run = GclfRun(["--config", str(config)], tmp_path, env={"GCLF_SERVE_TOKEN": TOKEN, "NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "2000000"})
    try:
        run.wait_for(lambda: any(line.get("faces") for line in json_lines(log)), "classified frames", 40)
        run.wait_for(lambda: latest(port)["camera"]["up"], "the page to see the camera up", 10)
        baseline = None
        for outage in (1, 2):
            server.kill()
            run.wait_for(lambda: not latest(port)["camera"]["up"], "the page to see the camera down", 15)
            page = latest(port)
            assert page["camera"]["name"] == "hall" and page["camera"]["outages"] == outage
            assert page["camera"]["line"].startswith("camera down since ") and PASSWORD not in json.dumps(page)
            # The watchdog is fed while the camera is down, with a status that says so.
            fed = len(systemd.messages)
            run.wait_for(lambda: any("WATCHDOG=1" in m and "STATUS=hall: camera down since " in m for m in systemd.messages[fed:]),
                         "a watchdog ping while the camera is down", 10)  # fmt: skip
            server.start()  # the same port
            run.wait_for(lambda: latest(port)["camera"]["up"], "the camera to be reconnected", 40)
            back = time.time()
            run.wait_for(lambda: any(line.get("timestamp", 0) > back and line.get("faces") for line in json_lines(log)), "frames after the reconnection", 15)
            if baseline is None:
                baseline = run.counts()
            else:  # no thread or descriptor left behind by a reconnection
                wait_for(lambda: run.counts() == baseline, f"threads and descriptors back to {baseline} (now {run.counts()})", 10)
        assert run.stop() == EXIT_OK
    finally:
        run.stop()
        systemd.close()
    lines = json_lines(log)
    summaries = [line for line in lines if line.get("event") == "summary"]
    assert all(s["camera"] == "hall" for s in summaries)
    assert any(not s["camera_up"] and s["down_since"] for s in summaries)  # summaries go on while it is down
    assert summaries[-1]["outages"] == 2 and summaries[-1]["outage_s"] > 0
    assert {face["label"] for line in lines for face in line.get("faces", [])} <= {"red", "blue"}
    err = run.stderr()
    assert "live: camera rtsp://viewer:***@127.0.0.1:" in err and "live: camera up, 2 outages (" in err
    assert any(m.startswith("READY=1") for m in systemd.messages)
    assert_no_secret(tmp_path, PASSWORD, also="".join(systemd.messages))


def test_wrong_credentials_end_the_run_in_one_sentence_with_exit_2(rtsp_server, tiny_onnx, tmp_path: Path) -> None:
    server = rtsp_server(auth=f"viewer:{PASSWORD}")
    run = GclfRun([str(tiny_onnx()), "--camera", server.url(f"viewer:{WRONG}"), "--headless"], tmp_path)
    assert run.wait(40) == EXIT_USAGE
    errors = [line for line in run.stderr().splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot open camera rtsp://viewer:***@127.0.0.1:{server.port}/cam: it refused the user name or password (401 Unauthorized)"]
    assert "frames processed" not in run.stderr()  # no summary of a run that never began
    assert_no_secret(tmp_path, WRONG, PASSWORD)


def test_a_port_where_nothing_listens_is_retried_reconnect_max_times(tiny_onnx, tmp_path: Path) -> None:
    url = f"rtsp://viewer:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    started = time.monotonic()
    run = GclfRun([str(tiny_onnx()), "--camera", url, "--reconnect-max", "2", "--headless"], tmp_path)
    assert run.wait(60) == EXIT_PARTIAL
    # The first attempt, then two reopenings 1 and 2 s apart: bounded, whatever the machine.
    assert time.monotonic() - started < 30
    (error,) = [line for line in run.stderr().splitlines() if line.startswith("error:")]
    assert "could not be reopened (3 attempts failed in a row, the reconnection limit)" in error and "nothing listens on 127.0.0.1" in error
    assert_no_secret(tmp_path, PASSWORD)


def test_a_run_stopped_while_its_camera_is_down_ends_at_once_with_its_summary(tiny_onnx, tmp_path: Path) -> None:
    url = f"rtsp://viewer:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    run = GclfRun([str(tiny_onnx()), "--camera", url, "--headless"], tmp_path)
    run.wait_for(lambda: "live: camera rtsp://" in run.stderr(), "the run to start", 30)
    time.sleep(1.5)  # the first attempt failed; waiting 1 s, then 2 s, before the next ones
    asked = time.monotonic()
    assert run.stop() == EXIT_OK  # SIGTERM: the unit stopped, not a failure
    assert time.monotonic() - asked < 4.0  # the reconnection wait does not hold the exit back (the feed alone would wait 5 s)
    err = run.stderr()
    assert "live: 0 frames processed" in err and "stopped: SIGTERM received" in err
    assert "live: camera down since " in err and "nothing listens on 127.0.0.1" in err
    assert_no_secret(tmp_path, PASSWORD)


def test_an_mjpeg_camera_with_a_token_from_the_environment(mjpeg_server, tiny_onnx, tmp_path: Path) -> None:
    # The URL from $GCLF_CAMERA_URL: no --camera, no source on the command line at all.
    token = "cam-token-5d2b8f0c3a9e"
    server = mjpeg_server(token=token)
    run = GclfRun([str(tiny_onnx()), "--max-frames", "5", "--headless"], tmp_path, env={"GCLF_CAMERA_URL": server.url()})
    assert run.wait(40) == EXIT_OK, run.stderr()
    frames = json_lines(run.out)
    assert len(frames) == 5 and all(line["faces"][0]["label"] in ("red", "blue") for line in frames)
    assert f"live: camera http://127.0.0.1:{server.port}/stream?token=*** (reconnected when it drops)" in run.stderr()
    assert_no_secret(tmp_path, token)


def template_argv(instance: str, cameras: Path, logs: Path) -> list[str]:
    """The template unit's ExecStart for `instance`, its /etc and /var/log paths moved into the test's folders."""
    (line,) = [raw.split("=", 1)[1] for raw in TEMPLATE.read_text().splitlines() if raw.startswith("ExecStart=")]
    line = line.replace("%i", instance).replace("/etc/gclf/cameras", str(cameras)).replace("/var/log/gclf", str(logs))
    return shlex.split(line)[1:]


def test_two_template_instances_run_side_by_side_each_with_its_own_name_port_and_token(tiny_onnx, tmp_path: Path) -> None:
    require_rtsp_server()
    camera = RtspServer(auth=f"viewer:{PASSWORD}", port=free_port())  # not started yet: the cameras boot after the Pi
    cameras, logs = tmp_path / "etc", tmp_path / "log"
    cameras.mkdir()

    def summaries(instance: str) -> list[dict[str, Any]]:
        return [line for line in json_lines(logs / instance / "camera.jsonl") if line.get("event") == "summary"]

    runs: dict[str, tuple[GclfRun, int, str]] = {}
    try:
        for instance in ("hall", "yard"):
            port, token = free_port(), f"{instance}-Tq3x9vLk2PzR8mW_c7Jd"
            (cameras / f"{instance}.toml").write_text(f'model = "{tiny_onnx()}"\nheadless = true\nsummary-every = 0.5\nserve = "127.0.0.1:{port}"\n')
            (logs / instance).mkdir(parents=True)  # LogsDirectory=gclf/%i
            # What LoadCredential= puts in $CREDENTIALS_DIRECTORY, readable by the service alone.
            credentials = tmp_path / "credentials" / instance
            credentials.mkdir(parents=True)
            for name, value in (("camera-url", camera.url()), ("serve-token", token)):
                (credentials / name).write_text(value + "\n")
                (credentials / name).chmod(0o400)
            env = {"CREDENTIALS_DIRECTORY": str(credentials), "GCLF_CAMERA_NAME": instance, "GCLF_SERVE_TOKEN": ""}
            runs[instance] = (GclfRun(template_argv(instance, cameras, logs), tmp_path, env=env, name=instance), port, token)
        for instance, (run, port, token) in runs.items():
            run.wait_for(lambda: _page(port, token) is not None, f"{instance}'s page", 40)
            page = _page(port, token)
            assert page["camera"]["name"] == instance and not page["camera"]["up"]  # waiting for the camera, not ended
        camera.start()
        for instance, (run, port, token) in runs.items():
            # Reconnected within the backoff (1, 2, 4, 8 ... s apart), however late the camera came.
            run.wait_for(lambda: (_page(port, token) or {}).get("processed", 0) >= 5, f"{instance} to classify frames", 60)
            assert get(port, "/latest", token=runs["yard" if instance == "hall" else "hall"][2])[0] == 403  # its own token only
            run.wait_for(lambda: any(s["camera_up"] for s in summaries(instance)), f"{instance}'s summary to see the camera up", 10)
        for instance, (run, port, token) in runs.items():
            assert run.stop() == EXIT_OK
            assert all(s["camera"] == instance for s in summaries(instance))
            assert summaries(instance)[-1]["outages"] == 1  # unreachable at start: one outage, then up
    finally:
        for run, _, _ in runs.values():
            run.stop()
        camera.stop()
    # Nothing either instance wrote or printed (the credentials they were given aside).
    secrets = [PASSWORD, *(token for _, _, token in runs.values())]
    assert_no_secret(logs, *secrets, also="".join(run.stdout() + run.stderr() for run, _, _ in runs.values()))


def _page(port: int, token: str) -> dict[str, Any] | None:
    try:
        return latest(port, token)
    except OSError:
        return None  # not listening yet


def test_check_checks_the_network_camera_the_config_names(rtsp_server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(preflight, "CHECKS", [preflight.check_camera])
    server = rtsp_server(auth=f"viewer:{PASSWORD}")

    def check(camera_url: str | None, *args: str) -> Any:
        config = tmp_path / "cam.toml"
        config.write_text("headless = true\n" + (f'camera = "{camera_url}"\n' if camera_url else ""))
        config.chmod(0o600)
        return CliRunner().invoke(main, ["--check", "--config", str(config), *args])

    good = check(server.url())
    assert good.exit_code == EXIT_OK, good.output
    assert good.stdout == f"ok       camera: network camera rtsp://viewer:***@127.0.0.1:{server.port}/cam: 320x240 at 15 fps (one frame read)\n"
    wrong = check(server.url(f"viewer:{WRONG}"))
    assert wrong.exit_code == EXIT_CHECK_FAILED and wrong.stdout.startswith("PROBLEM  camera: cannot open camera rtsp://viewer:***@")
    assert "it refused the user name or password" in wrong.stdout and WRONG not in wrong.output
    started = time.monotonic()
    unreachable = check(f"rtsp://viewer:{PASSWORD}@127.0.0.1:{free_port()}/cam", "--rtsp-transport", "udp")
    assert unreachable.exit_code == EXIT_CHECK_FAILED and "nothing listens on 127.0.0.1" in unreachable.stdout
    assert time.monotonic() - started < preflight.CHECK_OPEN_TIMEOUT_S + 3 * preflight.CHECK_PROBE_TIMEOUT_S
    none = check(None, "--video", str(REPO / "README.md"))  # a laptop that reads a video: no camera, no problem
    assert none.exit_code == EXIT_OK and none.stdout.startswith("info     camera: not checked: the run reads --video")
    assert PASSWORD not in good.output + wrong.output + unreachable.output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--camera", "0", "--rtsp-transport", "udp"], {}, "--rtsp-transport only apply to a network camera"),
        (["--camera", "0", "--reconnect-max", "3"], {}, "--reconnect-max only apply to a network camera"),
        (["--camera", "rtsp://cam.local/live", "--camera-size", "640x480"], {}, "--camera-size asks a local camera for a frame size"),
        (["--camera", "0", "--camera-url-file", "{url_file}"], {}, "give --camera or --camera-url-file, not both"),
        (["--camera", f"rtsp://viewer:{PASSWORD}@cam.local/live", "--camera-url-file", "{url_file}"], {}, "on the command line or in a file, not both"),
        ([], {"GCLF_CAMERA_URL": f"ftp://viewer:{PASSWORD}@cam.local/x"}, "$GCLF_CAMERA_URL is not an rtsp://"),
        (["--camera-url-file", "{open_file}"], {}, "readable by every user of this machine"),
        (["--camera", "0"], {"GCLF_CAMERA_NAME": "front door"}, "the camera name 'front door' cannot be used"),
    ],
)
def test_network_camera_options_are_checked_before_anything_opens(tiny_onnx, tmp_path: Path, monkeypatch, args, env, message) -> None:
    url_file, open_file = tmp_path / "cam.url", tmp_path / "open.url"
    url_file.write_text(f"rtsp://viewer:{PASSWORD}@cam.local/live\n")
    url_file.chmod(0o600)
    open_file.write_text(f"rtsp://viewer:{PASSWORD}@cam.local/live\n")
    open_file.chmod(0o644)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = [a.format(url_file=url_file, open_file=open_file) for a in args]
    result = CliRunner().invoke(main, [str(tiny_onnx()), *args, "--headless"])
    assert result.exit_code == EXIT_USAGE and message in result.output and PASSWORD not in result.output


def test_a_video_wins_over_a_camera_url_in_the_environment(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    from serve_testutil import write_colour_video

    monkeypatch.setenv("GCLF_CAMERA_URL", f"rtsp://viewer:{PASSWORD}@127.0.0.1:{free_port()}/cam")
    video = write_colour_video(tmp_path / "clip.avi", 6, fps=30)
    result = CliRunner().invoke(main, [str(tiny_onnx()), "--video", str(video), "--headless"])
    assert result.exit_code == EXIT_OK, result.output
    assert len([line for line in result.stdout.splitlines() if line.startswith("{")]) == 6
