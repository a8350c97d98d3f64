"""The systemd unit shipped for a Raspberry Pi (deploy/gclf-camera.service) cannot drift from gclf-infer.

Its ExecStart (and the --serve drop-in's, deploy/gclf-camera-serve.conf) is parsed by
gclf-infer's own click command (an option renamed or removed fails here), then run as
written, with the model swapped for a tiny one and picamera2 for a stand-in: it must run
headless, tell systemd it is ready, and write bounded output, not a line per frame. Its
hardening is rated by systemd's own analyzer where that is installed.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from gclf.runtime.cli.infer import main
from gclf.runtime.cli.params import Camera
from gclf.runtime.faces.models import cache_dir
from gclf.runtime.metadata import KEY_TRAINING
from gclf_testutil import REPO

UNIT = REPO / "deploy" / "gclf-camera.service"
SERVE_DROP_IN = REPO / "deploy" / "gclf-camera-serve.conf"
MQTT_DROP_IN = REPO / "deploy" / "gclf-camera-mqtt.conf"
GUIDE = REPO / "docs" / "raspberry-pi.md"
MAX_EXPOSURE = 2.5  # issue 18: `systemd-analyze security` rates 0 (locked down) to 10 (exposed)
LOG = "/var/log/gclf/camera.jsonl"
FACE_MODEL = "/opt/gclf/face-model.onnx"


def _entries(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value, in order (systemd keys repeat: DeviceAllow=, ExecStart=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _service(path: Path = UNIT) -> dict[str, list[str]]:
    return _entries(path)["Service"]


def _one(key: str, path: Path = UNIT) -> str:
    (value,) = _service(path)[key]
    return value


def _exec_start(path: Path = UNIT) -> list[str]:
    return shlex.split(_service(path)["ExecStart"][-1])  # a drop-in first resets it with "ExecStart="


def test_the_unit_restarts_on_failure_and_runs_as_its_own_user() -> None:
    assert _one("Restart") == "on-failure"
    assert "5" not in _one("RestartPreventExitStatus").split()  # a lost camera (exit 5) is restarted
    assert _one("User") == "gclf" and "video" in _one("SupplementaryGroups").split()
    assert _entries(UNIT)["Install"]["WantedBy"] == ["multi-user.target"]
    argv = _exec_start()
    assert argv[0] == "/opt/gclf/venv/bin/gclf-infer"
    assert "--headless" in argv  # no window on a Pi without a screen


def test_the_unit_records_people_and_summaries_in_a_log_gclf_infer_bounds_itself() -> None:
    argv = _exec_start()
    joined = " ".join(argv)
    assert f"--events --summary-every 60 --jsonl {LOG}" in joined
    assert "StandardOutput" not in _service() or not any(v.startswith(("append:", "file:")) for v in _service()["StandardOutput"])
    assert Path(LOG).parent == Path("/var/log") / _one("LogsDirectory")  # systemd creates it, owned by the service
    # The detector is named by path: a faces model never degrades to Haar under the service.
    assert argv[argv.index("--face-model") + 1] == FACE_MODEL


def test_the_unit_is_hardened_and_tells_systemd_it_is_alive() -> None:
    unit, service = _entries(UNIT)["Unit"], _service()
    assert "time-sync.target" in " ".join(unit["After"]).split() and "time-sync.target" in " ".join(unit["Wants"]).split()
    assert (_one("Type"), _one("NotifyAccess"), _one("WatchdogSec")) == ("notify", "main", "30")
    assert _one("ProtectSystem") == "strict" and _one("UMask") == "0027"
    assert _one("DevicePolicy") == "closed"
    assert set(service["DeviceAllow"]) == {"char-video4linux rw", "char-media rw", "char-dma_heap rw"}
    assert re.fullmatch(r"\d+[KMG]", _one("MemoryMax")) and int(_one("LimitNOFILE")) >= 256
    assert service["CapabilityBoundingSet"] == [""] and _one("NoNewPrivileges") == "yes"
    assert "@system-service" in service["SystemCallFilter"]
    assert "ReadWritePaths" not in service  # the three directories below are the only writable ones


def test_gclf_home_is_the_units_cache_directory(monkeypatch) -> None:
    """Downloaded face models go to /var/cache/gclf, which the service may write."""
    assert "GCLF_HOME=%C/gclf" in _service()["Environment"] and _one("CacheDirectory") == "gclf"
    monkeypatch.setenv("GCLF_HOME", "/var/cache/gclf")  # %C is /var/cache for a system service
    assert cache_dir() == Path("/var/cache/gclf/face_models")


def test_no_secret_on_a_command_line() -> None:
    """The --serve drop-in is the unit's ExecStart plus --serve, with the token from a credential."""
    assert "--token" not in _exec_start() and "--serve" not in _exec_start()
    drop_in = _service(SERVE_DROP_IN)
    assert drop_in["ExecStart"][0] == ""  # resets the unit's, or systemd would run both
    assert _exec_start(SERVE_DROP_IN) == [*_exec_start(), "--serve", "0.0.0.0:8080", "--token-file", "%d/serve-token"]
    assert drop_in["LoadCredential"] == ["serve-token:/etc/gclf/serve-token"]
    assert "--token " not in SERVE_DROP_IN.read_text()


def _analyzer_exposure(unit: Path) -> float:
    analyzer = shutil.which("systemd-analyze")
    if analyzer is None:
        # README command 2 (tools/test_deps.py) installs it on Linux: missing there is a failure.
        message = "systemd-analyze is not installed (Debian: apt-get install systemd; README command 2 installs it)"
        if sys.platform.startswith("linux"):
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run([analyzer, "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    if found is None and "offline" in done.stderr.lower():
        pytest.skip(f"this systemd-analyze has no --offline (systemd 250 or later has): {done.stderr.strip()}")
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def test_systemd_analyze_rates_the_unit_ok(tmp_path: Path) -> None:
    assert _analyzer_exposure(UNIT) <= MAX_EXPOSURE


@pytest.mark.parametrize("drop_in", [SERVE_DROP_IN, MQTT_DROP_IN], ids=["serve", "mqtt"])
def test_systemd_analyze_rates_the_unit_with_a_drop_in_ok(tmp_path: Path, drop_in: Path) -> None:
    # The analyzer reads drop-ins from NAME.service.d/ beside the unit file it is given.
    shutil.copy(UNIT, tmp_path / UNIT.name)
    (tmp_path / f"{UNIT.name}.d").mkdir()
    shutil.copy(drop_in, tmp_path / f"{UNIT.name}.d" / "drop-in.conf")
    assert _analyzer_exposure(tmp_path / UNIT.name) <= MAX_EXPOSURE


def test_the_mqtt_drop_in_takes_the_password_from_a_credential_and_reaches_the_broker_alone() -> None:
    from gclf.runtime.mqtt.disk_queue import default_queue_folder
    from gclf.runtime.mqtt.settings import CREDENTIAL_NAME, parse_broker_url

    drop_in = _service(MQTT_DROP_IN)
    argv = _exec_start(MQTT_DROP_IN)
    assert drop_in["ExecStart"][0] == ""  # resets the unit's, or systemd would run both
    assert argv[: len(_exec_start())] == _exec_start()
    added = argv[len(_exec_start()) :]
    assert added[0] == "--mqtt" and "--mqtt-discovery" in added and "--mqtt-password-file" not in added
    scheme, host, port, user = parse_broker_url(added[1])
    # The password: the credential gclf-infer reads from $CREDENTIALS_DIRECTORY, never the command line.
    assert drop_in["LoadCredential"] == [f"{CREDENTIAL_NAME}:/etc/gclf/mqtt-password"] and user is not None
    assert drop_in["IPAddressAllow"] == [host]  # the broker, and nothing else
    # The queue lives in the unit's StateDirectory, which systemd makes writable.
    assert drop_in["StateDirectory"] == [_one("StateDirectory")] == ["gclf"]
    assert default_queue_folder("door", {"STATE_DIRECTORY": "/var/lib/gclf"}) == Path("/var/lib/gclf/mqtt-queue/door")


def test_the_mqtt_drop_in_finds_its_password_where_systemd_puts_it(tmp_path: Path) -> None:
    from gclf.runtime.mqtt.settings import broker_settings

    argv = _exec_start(MQTT_DROP_IN)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / _service(MQTT_DROP_IN)["LoadCredential"][0].split(":")[0]).write_text("from-systemd-Q2x\n")
    settings = broker_settings(argv[argv.index("--mqtt") + 1], environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.password is not None and settings.password.reveal() == "from-systemd-Q2x"
    assert "from-systemd" not in repr(settings)


def _faces_model(tiny_onnx) -> Path:
    return tiny_onnx("faces.onnx", props_update={KEY_TRAINING: json.dumps({"input_kind": "faces"})})


def _as_tested(args: list[str], model: Path, log: Path) -> list[str]:
    """The unit's gclf-infer options with the Pi's paths replaced: the model, the detector
    (the bundled Haar: no file needed) and the log."""
    args = [str(model), *args[1:]]
    return [{FACE_MODEL: "haar", LOG: str(log)}.get(a, a) for a in args]


@pytest.mark.parametrize("unit", [UNIT, SERVE_DROP_IN, MQTT_DROP_IN], ids=["unit", "serve-drop-in", "mqtt-drop-in"])
def test_exec_start_parses_with_gclf_infer_options(tiny_onnx, tmp_path: Path, unit: Path) -> None:
    args = _as_tested(_exec_start(unit)[1:], _faces_model(tiny_onnx), tmp_path / "camera.jsonl")
    with main.make_context("gclf-infer", args) as ctx:  # unknown or mistyped options raise here
        params = ctx.params
    assert params["camera"] == Camera("picam", 0)
    assert params["camera_size"] == (640, 480)
    assert params["headless"] is True and params["paths"] == ()
    assert params["events"] is True and params["summary_every"] == 60 and params["jsonl"] == tmp_path / "camera.jsonl"
    if unit == SERVE_DROP_IN:
        assert params["token_file"] == Path("%d/serve-token")
    if unit == MQTT_DROP_IN:
        assert params["mqtt"].startswith("mqtt://gclf@") and params["mqtt_discovery"] is True


def test_exec_start_runs_with_a_stand_in_camera_says_ready_and_writes_no_line_per_frame(tiny_onnx, fake_picamera2, tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "camera.jsonl"
    args = _as_tested(_exec_start()[1:], _faces_model(tiny_onnx), log)
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # where systemd listens for sd_notify
    systemd.bind(str(tmp_path / "notify"))
    systemd.settimeout(0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    frames = 30

    try:
        result = CliRunner().invoke(main, [*args, "--max-frames", str(frames)])
        messages = []
        while True:
            try:
                messages.append(systemd.recv(4096).decode())
            except BlockingIOError:
                break
    finally:
        systemd.close()

    assert result.exit_code == 0, result.output
    assert any("READY=1" in m.split("\n") for m in messages), messages  # Type=notify would time out without it
    assert fake_picamera2.instances[0].closed
    written = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    printed = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(written) + len(printed) < frames  # a person or a summary per line, not a frame


def test_the_guide_installs_the_unit_and_creates_what_it_needs() -> None:
    guide = GUIDE.read_text()
    assert "deploy/gclf-camera.service" in guide and "gclf-camera-serve.conf" in guide
    for needed in (_one("User"), _one("WorkingDirectory"), "/opt/gclf/venv", "/opt/gclf/model.onnx", FACE_MODEL,
                   "--system-site-packages", "/etc/gclf/serve-token"):
        assert needed in guide, f"the Raspberry Pi guide does not set up {needed}"
