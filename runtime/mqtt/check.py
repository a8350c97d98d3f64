"""`check_broker()`: for `gclf-infer --check`, whether the broker answers and accepts the login,
in bounded time, said in one sentence (never with the password).

It connects as a client of its own (not the publisher's: no last will, so a check never makes
the camera look offline), waits for the broker's CONNACK, and disconnects.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import time
from dataclasses import dataclass

from gclf.runtime.mqtt.client import make_client, refusal_sentence
from gclf.runtime.mqtt.settings import BrokerSettings

CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class BrokerCheck:
    ok: bool
    text: str  # one sentence; for a problem, what is wrong and where to look


def check_broker(settings: BrokerSettings, timeout_s: float = CHECK_TIMEOUT_S) -> BrokerCheck:
    """Connect, log in, disconnect, all within about `timeout_s`. A missing paho-mqtt is a
    MissingDependencyError (the caller reports it as the check's finding)."""
    client = make_client(settings, f"gclf-check-{secrets.token_hex(4)}")
    client.connect_timeout = timeout_s
    answer: list[object] = []
    client.on_connect = lambda c, userdata, flags, reason, properties: answer.append(reason)
    where = settings.address
    deadline = time.monotonic() + timeout_s
    try:
        client.connect(settings.host, settings.port, keepalive=max(5, int(timeout_s) + 1))
    except ssl.SSLCertVerificationError as exc:
        return BrokerCheck(False, f"the MQTT broker at {where} has a TLS certificate this machine does not trust ({exc.verify_message}): give the CA that signed it")
    except ssl.SSLError as exc:
        return BrokerCheck(False, f"the TLS handshake with the MQTT broker at {where} failed ({exc.reason or exc}): is it a TLS port?")
    except socket.gaierror:
        return BrokerCheck(False, f"the MQTT broker's host name {settings.host} cannot be resolved")
    except (TimeoutError, socket.timeout):
        return BrokerCheck(False, f"the MQTT broker at {where} did not answer within {timeout_s:g} s (a firewall, or the wrong address?)")
    except OSError as exc:
        return BrokerCheck(False, f"cannot reach the MQTT broker at {where} ({exc.strerror or exc})")
    try:
        while not answer and time.monotonic() < deadline:
            rc = client.loop(timeout=0.1)
            if rc != 0 and not answer:
                # The connection closed before a CONNACK: a plain MQTT port spoken to in TLS,
                # or a broker that drops clients it does not like.
                hint = "is it a port for MQTT over TLS?" if settings.tls else "if that port speaks TLS, write mqtts://"
                return BrokerCheck(False, f"the MQTT broker at {where} closed the connection before answering ({hint})")
        if not answer:
            return BrokerCheck(False, f"the MQTT broker at {where} took the connection but did not answer within {timeout_s:g} s")
        reason = answer[0]
        if getattr(reason, "is_failure", False):
            return BrokerCheck(False, refusal_sentence(settings, reason))
        return BrokerCheck(True, f"the MQTT broker at {where} answers and accepts {settings.login()}")
    finally:
        client.disconnect()
        client.loop(timeout=0.1)
