"""The paho-mqtt client, made once from `BrokerSettings`: the one module that imports paho.

MQTT 3.1.1 (what every broker speaks), a clean session (gclf subscribes to nothing; what
must survive a restart is on disk), and optionally a last will. The password goes from its
`Secret` straight into the client's login and nowhere else.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from gclf.runtime.errors import MissingDependencyError, UsageError, install_hint
from gclf.runtime.mqtt.settings import BrokerSettings

if TYPE_CHECKING:
    import paho.mqtt.client as paho

INSTALL_HINT = install_hint("mqtt")
CONNECT_TIMEOUT_S = 5.0  # a TCP connect (and TLS handshake) to the broker gives up after this


def import_paho() -> Any:
    """paho.mqtt.client; a MissingDependencyError naming the extra when it is not installed."""
    try:
        import paho.mqtt.client as mqtt_client
    except ImportError:
        raise MissingDependencyError(f"reporting over MQTT needs the mqtt extra: {INSTALL_HINT}") from None
    return mqtt_client


def make_client(settings: BrokerSettings, client_id: str, *, will: tuple[str, str] | None = None) -> paho.Client:
    """A paho client for `settings` (login, TLS, keepalive is given at connect), not yet
    connected; `will`: (topic, payload) the broker publishes, retained, when we vanish."""
    mqtt = import_paho()
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    client.connect_timeout = CONNECT_TIMEOUT_S
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password.reveal() if settings.password is not None else None)
    if settings.tls:
        try:
            client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file is not None else None)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(f"the CA file {settings.ca_file} cannot be used ({getattr(exc, 'reason', None) or exc}): give the PEM certificate of the CA that signed the broker's") from None
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    return client


def refusal_sentence(settings: BrokerSettings, reason: Any) -> str:
    """One sentence for a CONNACK that refused us (`reason`: paho's ReasonCode)."""
    name = getattr(reason, "getName", lambda: str(reason))()
    if name in ("Bad user name or password", "Not authorized"):
        if settings.username is None:
            return f"the MQTT broker at {settings.address} wants a login ({name.lower()}): write the user in the address, mqtt://USER@{settings.host}:{settings.port}, and give the password"
        return f"the MQTT broker at {settings.address} refused {settings.login()} ({name.lower()})"
    return f"the MQTT broker at {settings.address} refused the connection ({name})"
