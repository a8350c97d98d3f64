"""Where the broker is and how to log in: `mqtt://[USER@]HOST[:PORT]` or `mqtts://...` (TLS,
with an optional CA file), and a password from a file, `$GCLF_MQTT_PASSWORD`, or systemd's
credentials (`LoadCredential=mqtt-password:/etc/gclf/mqtt-password`, read from
`$CREDENTIALS_DIRECTORY`).

A password never appears in a message, a repr or an error: it lives in a `Secret`, whose
repr is stars, and errors name where it came from ("$GCLF_MQTT_PASSWORD"), never what it is.
A password written into the address itself is refused (it would show in `ps`, in shell
history and in the unit file), without echoing the address back.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import unquote, urlsplit

from gclf.runtime.errors import UsageError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
PASSWORD_ENV = "GCLF_MQTT_PASSWORD"
CREDENTIAL_NAME = "mqtt-password"  # the unit's LoadCredential=mqtt-password:FILE
MAX_PASSWORD_BYTES = 4096
DEFAULT_KEEPALIVE_S = 30  # the broker declares us offline 1.5 keepalives after we fall silent


class Secret:
    """A string that is never shown: repr and str are stars; `reveal()` gives the value to the
    one caller that needs it (the MQTT client's login)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("a Secret is not pickled")


@dataclass(frozen=True)
class BrokerSettings:
    """How to reach and log in to one MQTT broker."""

    host: str
    port: int
    tls: bool = False
    ca_file: Path | None = None  # mqtts: the CA that signed the broker's certificate; None: the system's
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    password_source: str | None = None  # where the password came from, for messages: "$GCLF_MQTT_PASSWORD"
    keepalive_s: int = DEFAULT_KEEPALIVE_S

    @property
    def address(self) -> str:
        """`mqtt://host:port` (never with the user or password): what messages name."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    def login(self) -> str:
        """For messages: "user NAME with the password from SOURCE", "user NAME", or "no login"."""
        if self.username is None:
            return "no login"
        return f"user {self.username}" + (f" with the password from {self.password_source}" if self.password is not None else "")


def broker_settings(
    url: str,
    *,
    ca_file: Path | None = None,
    username: str | None = None,
    password_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    keepalive_s: int = DEFAULT_KEEPALIVE_S,
) -> BrokerSettings:
    """The settings for `url` (`mqtt://[USER@]HOST[:PORT]`, `mqtts://...`).

    The user is the address's, or `username`. The password: `password_file`, else
    `$GCLF_MQTT_PASSWORD`, else `$CREDENTIALS_DIRECTORY/mqtt-password` (systemd's
    LoadCredential=), else none. UsageError for anything unusable, never quoting a password.
    """
    env = os.environ if environ is None else environ
    scheme, host, port, url_user = parse_broker_url(url)
    if url_user is not None and username is not None and url_user != username:
        raise UsageError(f"the MQTT address names user {url_user} and the user option {username}: give one")
    user = url_user if url_user is not None else username
    tls = scheme == "mqtts"
    if ca_file is not None:
        if not tls:
            raise UsageError(f"a CA file is for TLS: write the address as mqtts://{host}:{port}")
        if not Path(ca_file).is_file():
            raise UsageError(f"the CA file {ca_file} does not exist")
    if keepalive_s < 1:
        raise UsageError(f"the MQTT keepalive must be at least 1 second, not {keepalive_s}")
    password, source = resolve_password(password_file, env)
    if password is not None and user is None:
        raise UsageError(f"a password for the MQTT broker (from {source}) needs a user: write it in the address, mqtt://USER@{host}:{port}")
    return BrokerSettings(host, port, tls, Path(ca_file) if ca_file is not None else None, user, password, source, keepalive_s)


def parse_broker_url(url: str) -> tuple[str, str, int, str | None]:
    """(scheme, host, port, user or None) of `mqtt://[USER@]HOST[:PORT]`; an address with a
    password in it is refused without being echoed."""
    shape = "give the broker as mqtt://HOST:PORT or mqtts://HOST:PORT"
    try:
        parts = urlsplit(url.strip())
        password_given = parts.password is not None
        port = parts.port
    except ValueError:
        raise UsageError(f"the MQTT address is not a valid URL (a port from 1 to 65535?): {shape}") from None
    if password_given:
        raise UsageError(
            f"the MQTT address holds a password, where `ps` and logs would show it: give it in a file, "
            f"${PASSWORD_ENV} or the unit's LoadCredential={CREDENTIAL_NAME}:FILE, and the user alone in the address"
        )
    scheme = parts.scheme.lower()
    shown = _without_userinfo(url.strip())
    if scheme not in DEFAULT_PORTS:
        raise UsageError(f"{shown}: {shape}")
    if not parts.hostname:
        raise UsageError(f"{shown} names no host: {shape}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"{shown}: an MQTT address has no path or query: {shape}")
    if port == 0:
        raise UsageError(f"{shown}: the port must be from 1 to 65535")
    user = unquote(parts.username) if parts.username else None
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme], user


def _without_userinfo(url: str) -> str:
    """`url` with anything up to an "@" left out (a user, or a password typed without a scheme)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.rpartition("@")[2]
    return f"{scheme}://{rest.rpartition('@')[2]}"


def resolve_password(password_file: Path | None, environ: Mapping[str, str]) -> tuple[Secret | None, str | None]:
    """(the password, where it came from), or (None, None) when none was given."""
    if password_file is not None:
        return Secret(read_secret_file(Path(password_file), check_mode=True)), f"the file {password_file}"
    if environ.get(PASSWORD_ENV):
        return Secret(environ[PASSWORD_ENV]), f"${PASSWORD_ENV}"
    folder = environ.get("CREDENTIALS_DIRECTORY")
    if folder and (Path(folder) / CREDENTIAL_NAME).is_file():
        # systemd made this file readable by the service alone; its mode is systemd's business.
        return Secret(read_secret_file(Path(folder) / CREDENTIAL_NAME, check_mode=False)), f"the credential {CREDENTIAL_NAME}"
    return None, None


def read_secret_file(path: Path, *, check_mode: bool) -> str:
    """The first line of `path` (a trailing newline stripped). A file every user of the machine
    can read is refused: the password would be theirs too."""
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            data = fh.read(MAX_PASSWORD_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"the password file {path} cannot be read ({exc.strerror or exc})") from None
    if check_mode and mode & stat.S_IROTH:
        raise UsageError(f"the password file {path} is readable by every user of this machine: chmod 600 {path}")
    if len(data) > MAX_PASSWORD_BYTES:
        raise UsageError(f"the password file {path} is over {MAX_PASSWORD_BYTES} bytes: is it the right file?")
    text = data.decode("utf-8", "replace")
    text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if not text or "\n" in text:
        raise UsageError(f"the password file {path} must hold the password alone, on one line")
    return text
