"""Credentials in camera URLs, kept out of everything gclf prints or writes.

A network camera's URL often carries a secret: `rtsp://user:password@host/...`, or a
`token=` in its query (another gclf's `/stream` needs one). `redact(text)` replaces the
password of every URL in a text with `***`, and the value of every secret-looking query
parameter (`token=`, `password=`, ...); `redact(text, secrets)` also replaces any exact
secret the caller knows, wherever it stands. Messages, errors and reprs that may contain a
URL go through it. FFmpeg's own log lines are not printed at all for network streams (see
gclf.runtime.live.network), so nothing outside gclf's own sentences can carry a secret.

`resolve_camera_url` takes the URL from the command line, a file, `$GCLF_CAMERA_URL` or a
systemd credential (`LoadCredential=camera-url:...`), so that it need not stand in a command
line other users of the machine can read.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from gclf.runtime.errors import UsageError

MASK = "***"
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
URL_ENV = "GCLF_CAMERA_URL"
# systemd's LoadCredential=camera-url:/etc/gclf/cameras/NAME.url puts the file here.
CREDENTIAL_NAME = "camera-url"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
# Query parameters whose value is a secret, in the spellings cameras use (Foscam's pwd=,
# Reolink's password=, a gclf /stream's token=, signed URLs' sig=).
SECRET_PARAMETERS = (
    "token", "access_token", "auth", "authorization", "key", "apikey", "api_key",
    "password", "passwd", "pass", "pwd", "secret", "sig", "signature",
)  # fmt: skip
_MAX_URL_FILE_BYTES = 4096

# scheme://user:password@ -> scheme://user:***@. The password runs to the last "@" before the
# path, query or fragment, as URL parsers read it (a raw "@" in a password stays hidden).
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*):(?P<password>[^\s/?#]*)@")
_PARAMETER = re.compile(r"(?P<head>[?&;](?:" + "|".join(SECRET_PARAMETERS) + r")=)(?P<value>[^&#\s\"'<>]*)", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with URL passwords, secret query values and each of `secrets` replaced by ***."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):  # longest first: a secret may contain another
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _PARAMETER.sub(lambda m: f"{m['head']}{MASK}" if m["value"] else m[0], text)


def url_secrets(url: str) -> tuple[str, ...]:
    """The secrets in `url` as they may appear anywhere: its password and secret query values,
    each as written and percent-decoded (a library may print either)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed URL (bad port, unbalanced [): fall back to the patterns
        return tuple(m["password"] for m in _USERINFO.finditer(url) if m["password"])
    found = [password] if password else []
    found += [value for name, value in parse_qsl(parts.query, keep_blank_values=False) if name.lower() in SECRET_PARAMETERS]
    both = {variant for secret in found for variant in (secret, unquote(secret)) if variant}
    return tuple(sorted(both))


def is_network_url(text: str) -> bool:
    """True for an rtsp://, rtsps://, http:// or https:// URL (what a network camera source reads)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in NETWORK_SCHEMES


def read_url_file(path: Path, what: str) -> str:
    """The URL in `path` (its first non-empty line). A file other users can read is refused
    (its secret would be theirs too); the message never quotes the file's content."""
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            data = fh.read(_MAX_URL_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    if mode & stat.S_IROTH:
        raise UsageError(f"{what} {path} is readable by every user of this machine: chmod 600 {path}")
    if len(data) > _MAX_URL_FILE_BYTES:
        raise UsageError(f"{what} {path} is larger than {_MAX_URL_FILE_BYTES} bytes: it should hold one camera URL")
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    url = next((line for line in lines if line), "")
    if not is_network_url(url):
        raise UsageError(f"{what} {path} does not hold an rtsp://, rtsps://, http:// or https:// URL on its first line")
    return url


def resolve_camera_url(
    given: str | None = None, url_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """The network camera's URL and where it came from ("--camera", "--camera-url-file PATH",
    "$GCLF_CAMERA_URL", "credential camera-url"), or None when none is given anywhere.

    The command line wins, then a file, then $GCLF_CAMERA_URL, then the systemd credential
    `camera-url` ($CREDENTIALS_DIRECTORY/camera-url, from the unit's LoadCredential=). A URL
    that is not rtsp/rtsps/http/https is refused in one sentence that never quotes it.
    """
    if given is not None and url_file is not None:
        raise UsageError("give the camera's URL on the command line or in a file, not both")
    env = os.environ if environ is None else environ
    if given is not None:
        url, source = given.strip(), "--camera"
    elif url_file is not None:
        return read_url_file(url_file, "--camera-url-file"), f"--camera-url-file {url_file}"
    elif env.get(URL_ENV):
        url, source = env[URL_ENV].strip(), f"${URL_ENV}"
    elif env.get(CREDENTIALS_ENV) and (Path(env[CREDENTIALS_ENV]) / CREDENTIAL_NAME).is_file():
        # systemd made this file readable by the service alone; its mode is not the user's.
        path = Path(env[CREDENTIALS_ENV]) / CREDENTIAL_NAME
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"the systemd credential {CREDENTIAL_NAME}: cannot read it ({exc.strerror or exc})") from None
        url, source = next((line.strip() for line in text.splitlines() if line.strip()), ""), f"credential {CREDENTIAL_NAME}"
    else:
        return None
    if not is_network_url(url):
        raise UsageError(f"the camera URL from {source} is not an rtsp://, rtsps://, http:// or https:// URL (it is not shown: it may hold a secret)")
    return url, source
