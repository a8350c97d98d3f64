"""The broker's address and login: mqtt:// and mqtts:// URLs, the password from a file, the
environment or systemd's credentials, and a password that never shows in a message or repr."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gclf.runtime.errors import UsageError
from gclf.runtime.mqtt.settings import CREDENTIAL_NAME, PASSWORD_ENV, Secret, broker_settings
from gclf.runtime.mqtt.topics import Topics, check_camera_name, default_camera_name

PASSWORD = "pw-Zq81xLk0vR"  # distinctive: grepped for in every message below


def _secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user"),
    [
        ("mqtt://broker.lan", "broker.lan", 1883, False, None),
        ("mqtt://broker.lan:1884", "broker.lan", 1884, False, None),
        ("mqtts://broker.lan", "broker.lan", 8883, True, None),
        ("MQTT://gclf@10.0.0.2:1883/", "10.0.0.2", 1883, False, "gclf"),
        ("mqtt://[::1]:1883", "::1", 1883, False, None),
    ],
)
def test_addresses_are_read_with_default_ports(url: str, host: str, port: int, tls: bool, user: str | None) -> None:
    settings = broker_settings(url, environ={})
    assert (settings.host, settings.port, settings.tls, settings.username) == (host, port, tls, user)
    assert settings.address.startswith("mqtts://" if tls else "mqtt://") and str(port) in settings.address


@pytest.mark.parametrize("url", ["broker.lan:1883", "http://broker.lan", "mqtt://", "mqtt://host:99999", "mqtt://host:0", "mqtt://host/topic"])
def test_a_bad_address_is_one_sentence(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        broker_settings(url, environ={})
    assert "mqtt://HOST:PORT" in str(caught.value) or "port" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("url", [f"mqtt://gclf:{PASSWORD}@broker.lan:1883", f"gclf:{PASSWORD}@broker.lan"])
def test_a_password_in_the_address_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        broker_settings(url, environ={})
    assert PASSWORD not in str(caught.value)


def test_the_password_comes_from_a_file_the_environment_or_systemds_credentials(tmp_path: Path) -> None:
    url = "mqtt://gclf@broker.lan"
    from_file = broker_settings(url, password_file=_secret_file(tmp_path / "pw", PASSWORD + "\n"), environ={PASSWORD_ENV: "other"})
    assert from_file.password.reveal() == PASSWORD and "pw" in from_file.password_source  # the file wins over the variable

    from_env = broker_settings(url, environ={PASSWORD_ENV: PASSWORD})
    assert from_env.password.reveal() == PASSWORD and from_env.password_source == f"${PASSWORD_ENV}"

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    _secret_file(credentials / CREDENTIAL_NAME, PASSWORD, mode=0o400)
    from_systemd = broker_settings(url, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert from_systemd.password.reveal() == PASSWORD and CREDENTIAL_NAME in from_systemd.password_source

    assert broker_settings(url, environ={}).password is None


def test_the_password_is_in_no_repr_and_no_message(tmp_path: Path) -> None:
    settings = broker_settings("mqtt://gclf@broker.lan", environ={PASSWORD_ENV: PASSWORD})
    shown = [repr(settings), str(settings), repr(settings.password), str(settings.password), settings.address, settings.login()]
    assert not [text for text in shown if PASSWORD in text]
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(Secret(PASSWORD))


def test_login_mistakes_are_refused_in_one_sentence(tmp_path: Path) -> None:
    world_readable = _secret_file(tmp_path / "open", PASSWORD, mode=0o644)
    with pytest.raises(UsageError, match="readable by every user") as caught:
        broker_settings("mqtt://gclf@broker.lan", password_file=world_readable, environ={})
    assert PASSWORD not in str(caught.value)
    with pytest.raises(UsageError, match="needs a user") as caught:
        broker_settings("mqtt://broker.lan", environ={PASSWORD_ENV: PASSWORD})
    assert PASSWORD not in str(caught.value)
    two_lines = _secret_file(tmp_path / "two", f"{PASSWORD}\nsecond line\n")
    with pytest.raises(UsageError, match="one line") as caught:
        broker_settings("mqtt://gclf@broker.lan", password_file=two_lines, environ={})
    assert PASSWORD not in str(caught.value)
    with pytest.raises(UsageError, match="TLS"):
        broker_settings("mqtt://broker.lan", ca_file=world_readable, environ={})
    with pytest.raises(UsageError, match="does not exist"):
        broker_settings("mqtts://broker.lan", ca_file=tmp_path / "missing.pem", environ={})


def test_camera_names_are_one_topic_level(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Topics("door-1.lan").all() == ("gclf/door-1.lan/event", "gclf/door-1.lan/counts", "gclf/door-1.lan/status", "gclf/door-1.lan/queue")
    for bad in ("", "a/b", "cam+", "cam#", "two words", "-lead", "x" * 64):
        with pytest.raises(UsageError):
            check_camera_name(bad)
    assert check_camera_name(default_camera_name()) == default_camera_name()
    monkeypatch.setattr("socket.gethostname", lambda: "Living room Pi.local")
    assert default_camera_name() == "Living-room-Pi"  # the host name's first label, made one topic level
    monkeypatch.setattr("socket.gethostname", lambda: "")
    assert default_camera_name() == "gclf"


def test_only_the_mqtt_package_imports_paho() -> None:
    from gclf_testutil import REPO

    importing = sorted(
        str(path.relative_to(REPO)) for path in (REPO / "runtime").rglob("*.py")
        if re.search(r"^\s*(import|from)\s+paho\b", path.read_text(encoding="utf-8"), flags=re.M)
    )
    assert importing and all(name.startswith("runtime/mqtt/") for name in importing), importing
