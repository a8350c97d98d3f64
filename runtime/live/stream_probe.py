"""Why a network camera cannot be opened, in one clause: one RTSP DESCRIBE or HTTP GET.

OpenCV's FFmpeg backend only says that a stream did not open; FFmpeg's own messages say why
but are switched off (they would print the camera's URL, and they go to stdout where the JSON
lines are). So after a failed open, `diagnose` asks the camera itself, with the standard
library: is anything listening, does it answer, does it take the user name and password
(basic or digest authentication, as FFmpeg would send them), is there a stream at that path.
Nothing here prints, and no reason quotes the URL's secrets (callers add the redacted URL).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from gclf.runtime.redact import SECRET_PARAMETERS

# What kind of failure a diagnosis found; the network source treats AUTH at start as fatal
# (a configuration mistake, exit 2) and everything else as a camera that may come back.
AUTH = "auth"  # 401/403: wrong or missing user name, password or token
NOT_FOUND = "not_found"  # 404: nothing at that path
REFUSED = "refused"  # nothing listens on the port
UNREACHABLE = "unreachable"  # no route, no answer to the connection, a name that does not resolve
SILENT = "silent"  # accepted the connection, then said nothing (a stalled camera)
PROTOCOL = "protocol"  # answered something else (another status, not RTSP/HTTP, TLS failed)
ANSWERS = "answers"  # the request succeeded: the camera is there, the video itself failed

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
_MAX_HEADER_BYTES = 16384
_STATUS_LINE = re.compile(r"^(RTSP|HTTP)/\d(?:\.\d)? (\d{3})(?: (.*))?$")
_CHALLENGE_PARAMETER = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class Diagnosis:
    kind: str  # one of the constants above
    reason: str  # a clause for a sentence: "it refused the user name or password (401 Unauthorized)"


@dataclass(frozen=True)
class _Reply:
    status: int
    phrase: str
    challenges: tuple[str, ...]  # the WWW-Authenticate header values


class _NoAnswer(Exception):
    """The peer accepted the connection and sent no complete status line in time."""


class _NotAProtocol(Exception):
    """The peer answered, but not in RTSP or HTTP."""


def diagnose(url: str, timeout_s: float) -> Diagnosis:
    """Ask the camera at `url` (rtsp, rtsps, http, https) why it cannot be opened; each network
    wait is bounded by `timeout_s`, the whole at most about three times that."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return Diagnosis(PROTOCOL, "its port is not a number")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else ""
    target = _request_target(scheme, host, port, parts.path, parts.query)
    try:
        reply = _ask(scheme, host, port, target, None, timeout_s)
        if reply.status == 401 and user is not None and reply.challenges:
            method = "DESCRIBE" if scheme.startswith("rtsp") else "GET"
            authorization = authorization_header(reply.challenges, method, target, user, password)
            if authorization is not None:
                reply = _ask(scheme, host, port, target, authorization, timeout_s)
    except socket.gaierror:
        return Diagnosis(UNREACHABLE, f"the host name {host} does not resolve")
    except ConnectionRefusedError:
        return Diagnosis(REFUSED, f"nothing listens on {host}:{port} (connection refused)")
    except _NoAnswer:
        return Diagnosis(SILENT, f"it accepted the connection on {host}:{port} but answered nothing within {timeout_s:g} s")
    except _NotAProtocol:
        expected = "RTSP" if scheme.startswith("rtsp") else "HTTP"
        return Diagnosis(PROTOCOL, f"{host}:{port} does not answer in {expected}")
    except ssl.SSLError as exc:
        return Diagnosis(PROTOCOL, f"the TLS handshake with {host}:{port} failed ({exc.reason or exc})")
    except (TimeoutError, socket.timeout):
        return Diagnosis(UNREACHABLE, f"{host}:{port} does not answer (no connection within {timeout_s:g} s)")
    except OSError as exc:
        return Diagnosis(UNREACHABLE, f"cannot reach {host}:{port} ({exc.strerror or exc})")
    has_token = any(name.lower() in SECRET_PARAMETERS for name, _ in parse_qsl(parts.query))
    return _meaning(reply, user is not None, has_token, parts.path or "/")


def _meaning(reply: _Reply, has_user: bool, has_token: bool, path: str) -> Diagnosis:
    code = f"{reply.status} {reply.phrase}".strip()
    if reply.status == 401:
        if has_user:
            return Diagnosis(AUTH, f"it refused the user name or password ({code})")
        if has_token:
            return Diagnosis(AUTH, f"it refused the token ({code})")
        return Diagnosis(AUTH, f"it asks for a user name and password ({code}): give them in the URL, as scheme://USER:PASSWORD@host/...")
    if reply.status == 403:
        return Diagnosis(AUTH, f"it refused access ({code}): a wrong user name, password or token?")
    if reply.status == 404:
        return Diagnosis(NOT_FOUND, f"it has no stream at {path} ({code})")
    if 200 <= reply.status < 300:
        return Diagnosis(ANSWERS, f"it answers ({code}) but no video could be read from it")
    return Diagnosis(PROTOCOL, f"it answered {code}")


def _request_target(scheme: str, host: str, port: int, path: str, query: str) -> str:
    """What the request line names: RTSP wants the absolute URL (without user or password),
    HTTP the path and query."""
    resource = (path or "/") + (f"?{query}" if query else "")
    if scheme.startswith("rtsp"):
        shown_host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown_host}:{port}{resource}"
    return resource


def _ask(scheme: str, host: str, port: int, target: str, authorization: str | None, timeout_s: float) -> _Reply:
    """One request on a connection of its own; the reply's status line and headers."""
    rtsp = scheme.startswith("rtsp")
    lines = (
        [f"DESCRIBE {target} RTSP/1.0", "CSeq: 1", "Accept: application/sdp"]
        if rtsp
        else [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    )
    lines.append("User-Agent: gclf")
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        raw.settimeout(timeout_s)
        if scheme in ("rtsps", "https"):
            # Cameras use self-signed certificates, and FFmpeg does not verify them by
            # default either: this asks what FFmpeg's open would have met.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return _exchange(tls, request)
        return _exchange(raw, request)


def _exchange(sock: socket.socket, request: bytes) -> _Reply:
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < _MAX_HEADER_BYTES:
        try:
            chunk = sock.recv(4096)
        except (TimeoutError, socket.timeout):
            chunk = None
        if not chunk:
            if not data:
                raise _NoAnswer()
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    match = _STATUS_LINE.match(lines[0])
    if match is None:
        raise _NotAProtocol()
    challenges = tuple(value.strip() for name, _, value in (line.partition(":") for line in lines[1:]) if name.strip().lower() == "www-authenticate")
    return _Reply(int(match[2]), (match[3] or "").strip(), challenges)


def authorization_header(challenges: tuple[str, ...], method: str, uri: str, user: str, password: str) -> str | None:
    """The Authorization value answering the server's challenges (digest preferred over basic,
    as FFmpeg does); None for a scheme this does not speak."""
    by_scheme = {challenge.split(None, 1)[0].lower(): challenge for challenge in challenges if challenge.strip()}
    if "digest" in by_scheme:
        return _digest(by_scheme["digest"], method, uri, user, password)
    if "basic" in by_scheme:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return None


def _digest(challenge: str, method: str, uri: str, user: str, password: str) -> str | None:
    """RFC 2617 digest with MD5 (what cameras offer), with or without qop=auth."""
    _, _, rest = challenge.partition(" ")
    params = {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _CHALLENGE_PARAMETER.finditer(rest)}
    if params.get("algorithm", "MD5").upper() != "MD5" or "nonce" not in params:
        return None
    realm, nonce = params.get("realm", ""), params["nonce"]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - the protocol's hash, not ours

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
        cnonce, count = secrets.token_hex(8), "00000001"
        fields += [f'response="{md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")}"', "qop=auth", f"nc={count}", f'cnonce="{cnonce}"']
    else:
        fields.append(f'response="{md5(f"{ha1}:{nonce}:{ha2}")}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)
