"""`MqttPublisher`: the live loop hands it events and counts and never waits on the network.

    live loop ──event()/publish_counts()──> memory (a lock, microseconds)
                                              │ the publisher's thread
                                              ▼
                        disk queue (one file per event) ──QoS 1──> broker
                                              ▲                       │
                                              └── removed on PUBACK ──┘

`event()` gives the event its id (payloads.EventIds) and returns at once. The publisher's
thread writes it to the disk queue, then, while the broker is connected, sends the oldest
entries, at most `WINDOW` unacknowledged at a time, in order; an entry is removed only when
the broker acknowledged it (PUBACK). paho's own network thread keeps the connection: it
reconnects with a growing delay (up to `reconnect_max_s`) and, after a reconnect, sends again
what was unacknowledged, before anything newer. Events queued while the broker was away are
then delivered in order; a restarted gclf delivers what the last run left on disk. Delivery
is at least once: a message whose PUBACK was lost with the connection is sent again, with
the same id.

On each connection: `online` on the status topic (retained; `offline` is the last will),
the Home Assistant discovery configs when asked, the queue's state, and the newest counts.
Problems (broker unreachable, login refused, queue full) are reported once each, as a
sentence, through `report`; the password is never in one.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from gclf.runtime.errors import OutputWriteError
from gclf.runtime.mqtt.client import import_paho, make_client, refusal_sentence
from gclf.runtime.mqtt.discovery import DEFAULT_PREFIX, discovery_messages
from gclf.runtime.mqtt.disk_queue import DEFAULT_QUEUE_MAX, DiskQueue, default_queue_folder
from gclf.runtime.mqtt.payloads import EventIds, counts_payload, encode, event_payload, queue_payload
from gclf.runtime.mqtt.settings import BrokerSettings
from gclf.runtime.mqtt.topics import OFFLINE, ONLINE, Topics

if TYPE_CHECKING:
    from gclf.runtime.live.people import TrackEvent

WINDOW = 20  # events sent and not yet acknowledged (paho's own in-flight limit)
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0  # the longest wait between two tries to reach the broker
QUEUE_REPORT_EVERY_S = 1.0  # the queue topic is published at most this often
CLOSE_TIMEOUT_S = 5.0  # close() delivers what it can in this long; the rest stays on disk


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def gclf_version() -> str | None:
    try:
        return metadata.version("gclf")
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class PublisherStats:
    connected: bool
    delivered: int  # events the broker acknowledged, this run
    waiting: int  # events not yet acknowledged (on disk, or being written)
    dropped: int  # events dropped at the queue's cap (since its folder was made)
    max_entries: int  # the cap
    problem: str | None  # the current connection problem; None while connected

    def line(self) -> str:
        """For the exit summary: `12 events delivered, 0 waiting, 0 dropped (cap 2000)`."""
        return (
            f"{self.delivered} event{'' if self.delivered == 1 else 's'} delivered, {self.waiting} waiting, "
            f"{self.dropped} dropped (cap {self.max_entries})" + ("" if self.connected else "; not connected")
        )


class MqttPublisher:
    """Publishes one camera's events, counts and availability to one broker (module docstring).

    Connects in the background from the moment it is made: a broker that is down is not an
    error, the events wait on disk. `close()` once at the end.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        camera: str,
        queue_folder: Path | None = None,
        queue_max: int = DEFAULT_QUEUE_MAX,
        labels: Sequence[str] = (),
        discovery: bool = False,
        discovery_prefix: str = DEFAULT_PREFIX,
        model: str | None = None,
        report: Callable[[str], None] | None = None,
        reconnect_max_s: float = RECONNECT_MAX_S,
        boot: str | None = None,
    ) -> None:
        """`labels`: the labels the run answers with (the model's classes, and "unsure" where a
        confidence threshold applies: `Classifier.labels`); every one appears in the counts and
        gets discovery sensors. `model`: the model's name, for Home Assistant's device. `report`: where
        problems go (default: a warning line on stderr). `boot`: this run's boot id (default:
        random; the events' ids are `camera:boot:seq`)."""
        import_paho()  # before anything is made: a missing extra is the first thing said
        self.settings = settings
        self.topics = Topics(camera)
        self.labels = tuple(labels)
        self._report = report or _stderr_warning
        self.ids = EventIds(camera, boot)
        self._discovery = discovery_messages(self.topics, self.labels, prefix=discovery_prefix, model=model, sw_version=gclf_version()) if discovery else []
        self._client = make_client(settings, f"gclf-{camera[:40]}-{self.ids.boot}", will=(self.topics.status, OFFLINE))
        self.queue = DiskQueue(queue_folder or default_queue_folder(camera), queue_max, report=self._report)  # last: it locks its folder

        self._cond = threading.Condition()
        # Shared with the caller and paho's thread, under _cond:
        self._incoming: collections.deque[bytes] = collections.deque()  # events handed over, not yet on disk
        self._acks: collections.deque[int] = collections.deque()  # mids the broker acknowledged
        self._connected = False
        self._generation = 0  # connections made so far
        self._problem: str | None = None
        self._reported_kind: str | None = None  # "unreachable" or "refused": said once until connected
        self._full_reported = False  # the queue's cap was reached (said once until connected)
        self._disk_reported = False  # the disk refused an event (said once until a write works)
        self._counts: tuple[Mapping[str, Any], float, bool] | None = None  # the newest (snapshot, fps, camera_up)
        self._counts_due = False
        self._stopping = False
        self._deadline = 0.0
        self._closed = False
        # The publisher thread's own:
        self._inflight: dict[int, str] = {}  # mid -> queue entry, sent and not acknowledged
        self._unwritten: collections.deque[bytes] = collections.deque()  # could not be written to disk yet
        self._memory_dropped = 0  # dropped while the disk could not take them
        self._delivered = 0
        self._queue_sent: tuple[int, int] | None = None  # (waiting, dropped) last published
        self._queue_sent_at = 0.0

        self._client.reconnect_delay_set(min_delay=min(RECONNECT_MIN_S, reconnect_max_s), max_delay=reconnect_max_s)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name=f"gclf-mqtt-{camera}", daemon=True)
        self._thread.start()

    # --- what the live loop calls (never blocks) ----------------------------------------------

    def event(self, event: TrackEvent | Mapping[str, Any]) -> str:
        """Queue one finished track (a TrackEvent, or its to_json() dict); returns its id."""
        if self._closed:
            raise RuntimeError("the MQTT publisher is closed")
        record = event.to_json() if hasattr(event, "to_json") else dict(event)  # type: ignore[union-attr]
        event_id, seq = self.ids.next()
        payload = encode(event_payload(record, event_id=event_id, camera=self.topics.camera, boot=self.ids.boot, seq=seq, queued_at=time.time()))
        with self._cond:
            self._incoming.append(payload)
            self._cond.notify()
        return event_id

    def publish_counts(self, snapshot: Mapping[str, Any], *, fps: float, camera_up: bool = True) -> None:
        """Publish the counts (PeopleCounts.snapshot()), the loop's FPS and whether the camera
        delivers, retained; while the broker is away only the newest is kept."""
        with self._cond:
            self._counts = (dict(snapshot), fps, camera_up)
            self._counts_due = True
            self._cond.notify()

    def stats(self) -> PublisherStats:
        with self._cond:
            connected, problem, handed = self._connected, self._problem, len(self._incoming)
        return PublisherStats(
            connected=connected,
            delivered=self._delivered,
            waiting=self.queue.depth + handed + len(self._unwritten),
            dropped=self.queue.dropped + self._memory_dropped,
            max_entries=self.queue.max_entries,
            problem=problem,
        )

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Deliver what can be delivered within `timeout_s` (the rest stays on disk for the
        next run), say `offline`, disconnect. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify()
        self._thread.join(timeout_s + 2.0)
        with self._cond:
            connected = self._connected
        if connected:
            info = self._client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=min(1.0, timeout_s))
            except (RuntimeError, ValueError):
                pass  # the connection went meanwhile: the last will says offline instead
        self._client.disconnect()
        self._client.loop_stop()
        self.queue.close()

    # --- paho's network thread ----------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._cond:
            if reason.is_failure:
                self._connected = False
                self._connection_problem("refused", refusal_sentence(self.settings, reason) + ": events wait on disk until it accepts")
            else:
                self._connected = True
                self._generation += 1
                back = self._reported_kind is not None
                self._problem = self._reported_kind = None
                self._full_reported = False
                if back:
                    waiting = self.queue.depth + len(self._incoming)
                    self._report(f"connected to the MQTT broker at {self.settings.address}" + (f": delivering {waiting} waiting events" if waiting else ""))
            self._cond.notify()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        with self._cond:
            self._connection_problem("unreachable", f"cannot reach the MQTT broker at {self.settings.address}: events wait on disk in {self.queue.folder} until it answers")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            if was_connected and not self._stopping:
                self._connection_problem("unreachable", f"lost the MQTT broker at {self.settings.address}: events wait on disk until it is back")
            self._cond.notify()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._cond:
            self._acks.append(mid)
            self._cond.notify()

    def _connection_problem(self, kind: str, text: str) -> None:
        """Under _cond: why there is no connection; said once per kind until one is made (a
        broker away for an hour is one line, not one per try)."""
        self._problem = text
        if kind != self._reported_kind:
            self._reported_kind = kind
            self._report(text)

    # --- the publisher's thread ---------------------------------------------------------------

    def _run(self) -> None:
        announced = 0  # the connection generation already announced (status, discovery, ...)
        while True:
            with self._cond:
                news = self._connected and (self._counts_due or self._generation != announced)
                if not (self._incoming or self._acks or news):
                    # Woken by any of those; the timeout paces the queue state's publishing,
                    # and the last acknowledgements while closing.
                    self._cond.wait(timeout=0.05 if self._stopping else 1.0)
                incoming = list(self._incoming)
                self._incoming.clear()
                acks = list(self._acks)
                self._acks.clear()
                connected, generation, stopping = self._connected, self._generation, self._stopping
                counts = self._counts if (self._counts_due or generation != announced) else None
                if connected:
                    self._counts_due = False
            self._store(incoming)
            self._acknowledge(acks)
            if connected:
                try:
                    if generation != announced:
                        announced = generation
                        self._announce()
                    if counts is not None:
                        self._publish_counts(*counts)
                    self._publish_queue_state()
                    self._send()
                except (OSError, ValueError, RuntimeError):
                    pass  # a publish racing a disconnect: paho keeps QoS 1 messages, the next round goes on
            if stopping and (not connected or (not self._inflight and self.queue.depth == 0) or time.monotonic() >= self._deadline):
                return

    def _store(self, incoming: list[bytes]) -> None:
        """Onto the disk queue, in order; what the disk refuses waits in memory (capped too)."""
        self._unwritten.extend(incoming)
        while self._unwritten:
            try:
                dropped = self.queue.put(self._unwritten[0])
            except OutputWriteError as exc:
                if not self._disk_reported:
                    self._disk_reported = True
                    self._report(f"{exc}: events wait in memory")
                while len(self._unwritten) > self.queue.max_entries:
                    self._unwritten.popleft()
                    self._memory_dropped += 1
                return
            self._disk_reported = False
            self._unwritten.popleft()
            if dropped and not self._full_reported:
                self._full_reported = True
                self._report(
                    f"the MQTT queue in {self.queue.folder} is full ({self.queue.max_entries} events): the oldest are dropped "
                    f"until the broker takes them (counted on {self.topics.queue} and in the summary)"
                )

    def _acknowledge(self, acks: list[int]) -> None:
        for mid in acks:
            name = self._inflight.pop(mid, None)
            if name is not None:  # else: a status, counts or discovery message
                # Counted before it leaves the queue: stats() read in between never shows an
                # event that is neither waiting nor delivered.
                self._delivered += 1
                self.queue.remove(name)

    def _announce(self) -> None:
        """A new connection: online, discovery, the queue's state (counts follow in _run)."""
        self._client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        for topic, payload in self._discovery:
            self._client.publish(topic, encode(payload), qos=1, retain=True)
        self._queue_sent = None

    def _publish_counts(self, snapshot: Mapping[str, Any], fps: float, camera_up: bool) -> None:
        payload = counts_payload(snapshot, labels=self.labels, fps=fps, camera_up=camera_up,
                                 events_dropped=self.queue.dropped + self._memory_dropped, events_waiting=self.queue.depth)
        self._client.publish(self.topics.counts, encode(payload), qos=1, retain=True)
        self._queue_sent = None  # the queue's state goes with the counts

    def _publish_queue_state(self) -> None:
        """The queue topic: on each connection and with the counts, and when events were
        dropped or the queue ran empty; at most once a second otherwise."""
        state = (self.queue.depth, self.queue.dropped + self._memory_dropped)
        last = self._queue_sent
        changed = last is None or state[1] != last[1] or (state[0] == 0 and last[0] != 0)
        now = time.monotonic()
        if not changed or (last is not None and now - self._queue_sent_at < QUEUE_REPORT_EVERY_S and state[0] != 0):
            return
        self._client.publish(self.topics.queue, encode(queue_payload(waiting=state[0], dropped=state[1], max_entries=self.queue.max_entries)), qos=1, retain=True)
        self._queue_sent, self._queue_sent_at = state, now

    def _send(self) -> None:
        """The oldest entries not yet sent, until WINDOW are unacknowledged."""
        if len(self._inflight) >= WINDOW:
            return
        sent = set(self._inflight.values())
        for name in self.queue.names():
            if len(self._inflight) >= WINDOW:
                return
            if name in sent:
                continue
            data = self.queue.read(name)
            if data is None:
                continue
            info = self._client.publish(self.topics.event, data, qos=1)
            # Even when the connection just went (rc NO_CONN), paho keeps a QoS 1 message and
            # sends it after reconnecting: it is in flight either way.
            self._inflight[info.mid] = name
