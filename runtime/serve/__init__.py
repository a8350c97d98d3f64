"""The browser view: `gclf-infer ... --serve [HOST:]PORT` serves the live loop's newest frame.

- `access`: where it listens and who may watch (address, token, cookie).
- `content`: what it serves (the newest frame's snapshot, /latest's body, JPEG pictures).
- `sink`: `WebSink`, the live loop's sink that hands frames to the server.
- `server`: the HTTP server (tornado); the only module of gclf that imports tornado.
- `metrics`: `LiveMetrics` (Prometheus, served at /metrics) and `MetricsSink`, the loop's sink
  that feeds it; the only module that imports prometheus_client. /healthz needs no token.

May import the flat core and the live loop's plain data (gclf.runtime.live.frames), never the
command line. Importing this package loads no web library: `--serve` without the `serve`
extra says so in one sentence when a `WebSink` is made.
"""

from gclf.runtime.serve.access import (
    LOOPBACK,
    MAKE_TOKEN_HINT,
    TOKEN_ENV,
    ServeAddress,
    ServeToken,
    check_token,
    cookie_name,
    is_loopback_host,
    page_url,
    parse_serve_address,
    reachable_hosts,
    read_token_file,
    resolve_token,
    token_matches,
)
from gclf.runtime.serve.content import MAX_VIEWERS, STREAM_MAX_FPS, ModelInfo, Snapshot, encode_jpeg, latest_json
from gclf.runtime.serve.sink import WebSink, make_web_sink

__all__ = [
    "LOOPBACK", "MAKE_TOKEN_HINT", "TOKEN_ENV", "ServeAddress", "ServeToken", "check_token", "cookie_name",
    "is_loopback_host", "page_url", "parse_serve_address", "reachable_hosts", "read_token_file", "resolve_token",
    "token_matches", "MAX_VIEWERS", "STREAM_MAX_FPS", "ModelInfo", "Snapshot", "encode_jpeg", "latest_json",
    "WebSink", "make_web_sink",
]
