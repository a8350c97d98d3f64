"""Where `--serve` listens and who may watch: the address, the token, the cookie.

Private by default: without a host it binds 127.0.0.1. Every address, loopback included,
needs a token (from `--token-file`, `$GCLF_SERVE_TOKEN`, `--token` or the systemd credential
`serve-token`; else generated and printed with the URL, as Jupyter does); a token the user
gave is never printed. Standard library only.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import re
import secrets
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from gclf.runtime.errors import UsageError
from gclf.runtime.files import open_regular_file

LOOPBACK = "127.0.0.1"
TOKEN_CREDENTIAL = "serve-token"  # LoadCredential=serve-token:... puts it in $CREDENTIALS_DIRECTORY
MIN_TOKEN_LENGTH = 22  # secrets.token_urlsafe(16): 128 bits
MIN_TOKEN_DISTINCT = 10  # distinct characters: refuses "aaaa...", "abab...", "1234512345..."
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")  # URL-safe: goes into ?token= unescaped
# Words of the guides' and tools' placeholders ("YOUR-LONG-TOKEN", "changeme", "<token>"):
# a token copied from a page instead of made is public.
PLACEHOLDER_WORDS = ("your", "token", "change", "example", "placeholder", "secret", "password", "xxxx", "replace")
TOKEN_ENV = "GCLF_SERVE_TOKEN"
MAKE_TOKEN_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"


@dataclass(frozen=True)
class ServeAddress:
    host: str  # an IP address or a host name; LOOPBACK when none was given
    port: int  # 0: any free port (the one chosen is WebSink.port)

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)


def parse_serve_address(text: str) -> ServeAddress:
    """`PORT`, `:PORT`, `HOST:PORT` or `[IPv6]:PORT`; no host means 127.0.0.1 (this machine only)."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"--serve {text}: write an IPv6 address in brackets, e.g. [::1]:8080")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--serve {text}: give PORT, :PORT or HOST:PORT with a port from 0 to 65535")
    return ServeAddress(host or LOOPBACK, int(port_text))


def is_loopback_host(host: str) -> bool:
    """Whether only this machine can reach `host`: a loopback IP literal or `localhost`.

    Any other name counts as reachable from outside (it may resolve to anything).
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeToken:
    """The token every request must carry, and where it came from. `generated`: made for this
    run, so it may be printed; a token the user gave is never printed (it outlives the run)."""

    value: str
    source: str  # "generated", "--token", "--token-file PATH", "$GCLF_SERVE_TOKEN"

    @property
    def generated(self) -> bool:
        return self.source == "generated"

    def __repr__(self) -> str:  # never in a traceback or a log by accident
        return f"ServeToken(source={self.source!r})"


def resolve_token(token: str | None = None, token_file: Path | None = None, environ: dict[str, str] | None = None) -> ServeToken:
    """The token for --serve: `--token`, `--token-file` (one of them), else $GCLF_SERVE_TOKEN,
    else the systemd credential `serve-token` ($CREDENTIALS_DIRECTORY/serve-token, from a
    unit's LoadCredential=: each instance of the camera template has its own), else a new
    random one. A given token must pass `check_token` (UsageError, exit 2)."""
    if token is not None and token_file is not None:
        raise UsageError("give --token or --token-file, not both")
    env = os.environ if environ is None else environ
    if token_file is not None:
        given = ServeToken(read_token_file(token_file), f"--token-file {token_file}")
    elif token is not None:
        given = ServeToken(token, "--token")
    elif env.get(TOKEN_ENV):
        given = ServeToken(env[TOKEN_ENV], f"${TOKEN_ENV}")
    elif env.get("CREDENTIALS_DIRECTORY") and (Path(env["CREDENTIALS_DIRECTORY"]) / TOKEN_CREDENTIAL).is_file():
        path = Path(env["CREDENTIALS_DIRECTORY"]) / TOKEN_CREDENTIAL
        given = ServeToken(read_token_file(path), f"the systemd credential {TOKEN_CREDENTIAL}")
    else:
        return ServeToken(secrets.token_urlsafe(24), "generated")
    check_token(given.value, given.source)
    return given


def check_token(token: str, source: str) -> None:
    """Refuse a token that is short, not URL-safe, a placeholder or low-variety, in one
    sentence (never quoting the token) with a one-line way to make a good one."""
    lowered = token.lower()
    if len(token) < MIN_TOKEN_LENGTH or not TOKEN_CHARS.fullmatch(token):
        problem = f"must be at least {MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 . _ ~ -"
    elif any(word in lowered for word in PLACEHOLDER_WORDS):
        problem = "looks like a placeholder, not a secret"
    elif len(set(token)) < MIN_TOKEN_DISTINCT:
        problem = f"has too little variety (fewer than {MIN_TOKEN_DISTINCT} different characters)"
    else:
        return
    raise UsageError(f"the token from {source} {problem}: make one with {MAKE_TOKEN_HINT}")


def read_token_file(path: Path) -> str:
    """The token in `path`, one trailing newline stripped. A file other users can read is
    refused: the token would be theirs too (0600 or 0640, as systemd's credentials are)."""
    try:
        with open_regular_file(path, error=UsageError) as fh:  # a FIFO is refused, never waited on
            mode = os.fstat(fh.fileno()).st_mode
            data = fh.read(4097)
    except UsageError as exc:
        raise UsageError(f"--token-file {exc}") from None
    except OSError as exc:
        raise UsageError(f"--token-file {path}: cannot read it ({exc.strerror or exc})") from None
    if mode & stat.S_IROTH:
        raise UsageError(f"--token-file {path} is readable by every user of this machine: chmod 600 {path}")
    text = data.decode("utf-8", "replace")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return text


def token_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison (the time taken tells nothing about how much of a guess was right)."""
    if expected is None:
        return True
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


# Where a UDP socket is "connected" to learn this machine's address on each family's network
# (nothing is sent): a private IPv4 address, and an IPv6 documentation address.
_PROBE_TARGETS = {socket.AF_INET: ("10.255.255.255", 1), socket.AF_INET6: ("2001:db8::1", 1)}


def reachable_hosts(address: ServeAddress) -> list[str]:
    """Host names or addresses to put in the printed URL: the bound host, or for a wildcard
    bind this machine's address on the local network and its name: `0.0.0.0` listens on
    IPv4, so its IPv4 address; `::` listens on both families (server.bind_listeners), so
    both addresses where the machine has them. With no network, the family's loopback."""
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return [address.host]
    if not ip.is_unspecified:
        return [address.host]
    families = [socket.AF_INET] if ip.version == 4 else [socket.AF_INET, socket.AF_INET6]
    hosts = [found for family in families if (found := _local_address(family)) is not None]
    with contextlib.suppress(OSError):
        hosts.append(socket.gethostname() + ".local")  # mDNS name, as a Pi announces itself
    return hosts or ["127.0.0.1" if ip.version == 4 else "::1"]


def _local_address(family: socket.AddressFamily) -> str | None:
    """The address this machine would send from to reach the network on `family`, if any.
    Connecting a UDP socket sends nothing; it only asks the kernel for the route."""
    with contextlib.suppress(OSError):
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(_PROBE_TARGETS[family])
            found = probe.getsockname()[0]
            if not ipaddress.ip_address(found.split("%")[0]).is_link_local:  # fe80::: needs a zone in a URL
                return found
    return None


def page_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def cookie_name(port: int) -> str:
    """The page's cookie (after the first visit with the token; it holds the server's
    session value, never the token). Named per port: a browser sends a host's cookies to
    every port of it, so two runs on one host would otherwise overwrite each other's."""
    return f"gclf_session_{port}"
