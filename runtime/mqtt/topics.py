"""A camera's name and the topics it publishes on, all under `gclf/<camera>/`:

    event    one message per finished track (QoS 1, queued on disk until acknowledged)
    counts   tracks per label, FPS, camera up, events dropped (retained: the latest state)
    status   "online" / "offline" (retained; "offline" is also the last will, so the broker
             publishes it when the device dies or falls silent for 1.5 keepalives)
    queue    the disk queue: events waiting, dropped at the cap, the cap (retained)

"online"/"offline" are Home Assistant's default availability payloads, so its entities need
no payload_available settings.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from gclf.runtime.errors import UsageError

TOPIC_ROOT = "gclf"
ONLINE, OFFLINE = "online", "offline"
# One topic level, and safe in a file name and a Home Assistant id: no "/", "+", "#", spaces.
CAMERA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_camera_name(name: str) -> str:
    """`name` if it can be a camera's name (one topic level), else a UsageError."""
    if not CAMERA_NAME.fullmatch(name):
        raise UsageError(
            f"the camera name {name!r} cannot be used: give 1 to 63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it becomes a level of the MQTT topics)"
        )
    return name


def default_camera_name() -> str:
    """This machine's host name (its first label), made a valid camera name; "gclf" if none."""
    host = socket.gethostname().split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", host).lstrip("._-")[:63]
    return name or "gclf"


@dataclass(frozen=True)
class Topics:
    camera: str

    def __post_init__(self) -> None:
        check_camera_name(self.camera)

    @property
    def base(self) -> str:
        return f"{TOPIC_ROOT}/{self.camera}"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def counts(self) -> str:
        return f"{self.base}/counts"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def queue(self) -> str:
        return f"{self.base}/queue"

    def all(self) -> tuple[str, ...]:
        return (self.event, self.counts, self.status, self.queue)
