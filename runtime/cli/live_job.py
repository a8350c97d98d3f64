"""`gclf-infer --camera/--video`: the live loop built from the command line's options, run, and
summarised. Imported by the command only when a live source is given (it loads OpenCV,
onnxruntime and the loop).

`LiveOptions` holds the options, checked once when made; `build_live` is the one place that
makes the loop's parts (classifier, detector, MQTT publisher, outputs, metrics and browser
view, source, feed), each given what it needs when it is made; `run_live_command` runs them,
closes the publisher once the loop is done (the last events are handed to it before the
sinks close) and prints the summary.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO, TypeVar

import click

from gclf.runtime.classifier import Classifier
from gclf.runtime.cli.params import Camera, default_camera_name
from gclf.runtime.cli.support import warn
from gclf.runtime.engine import DEFAULT_ENGINE, DEFAULT_PRECISION, describe
from gclf.runtime.errors import EXIT_INTERRUPTED, EXIT_OK, UsageError
from gclf.runtime.faces import detectors
from gclf.runtime.faces.choice import resolve_face_detection
from gclf.runtime.faces.crops import DEFAULT_FACE_MARGIN
from gclf.runtime.faces.detectors import FaceDetector
from gclf.runtime.live.cameras import open_camera
from gclf.runtime.live.carry import DEFAULT_DETECT_EVERY
from gclf.runtime.live.loop import run_live, stop_on_signals
from gclf.runtime.live.network import NetworkSource, StreamOptions, StreamState, open_network_feed
from gclf.runtime.live.people import PeopleCounts, PersonTracker
from gclf.runtime.live.sd_notify import SystemdNotifySink
from gclf.runtime.live.sinks import (
    DEFAULT_JSONL_MAX_BYTES,
    EventLinesSink,
    JsonLinesSink,
    RotatingLineFile,
    Sink,
    SummarySink,
    VideoFileSink,
    WindowSink,
    check_video_path,
)
from gclf.runtime.metadata import use_face_detection
from gclf.runtime.live.sources import FrameFeed, FrameSource, PacedSource, open_feed, open_video
from gclf.runtime.mqtt.topics import check_camera_name
from gclf.runtime.serve.sink import WebSink, make_web_sink

if TYPE_CHECKING:
    from gclf.runtime.mqtt.publisher import MqttPublisher

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class LiveOptions:
    """The live job's options, as the command line gives them; checked when made (UsageError)."""

    camera: Camera | None = None
    video: Path | None = None
    realtime: bool = False
    faces: bool | None = None  # None: follow the model's metadata
    face_model: Path | str | None = None  # a file, or "haar"/"yunet"; None: the model's, else today's default
    face_margin: float | None = None  # None: the model's training margin, else DEFAULT_FACE_MARGIN
    detect_every: int | None = None  # None: DEFAULT_DETECT_EVERY (and not warned about when unused)
    headless: bool = False
    as_json: bool = False
    save: Path | None = None
    max_frames: int | None = None
    serve: str | None = None  # --serve [HOST:]PORT
    token: str | None = None
    token_file: Path | None = None
    camera_size: tuple[int, int] | None = None  # (width, height); None: the camera's default
    events: bool = False  # --events: a JSON line per track, not per frame
    summary_every: float | None = None  # --summary-every SECONDS
    jsonl: Path | None = None  # --jsonl FILE: the JSON lines go there (rotated), not to stdout
    jsonl_max_bytes: int | None = None  # None: DEFAULT_JSONL_MAX_BYTES
    name: str | None = None  # --name; None: $GCLF_CAMERA_NAME, else this machine's host name
    mqtt: str | None = None  # --mqtt URL: the broker
    mqtt_ca: Path | None = None
    mqtt_password_file: Path | None = None
    mqtt_discovery: bool = False
    mqtt_queue_max: int | None = None  # None: the queue's DEFAULT_QUEUE_MAX
    metrics_public: bool = False  # /metrics without the token (loopback only)
    rtsp_transport: str | None = None  # a network camera's RTSP transport; None: tcp
    reconnect_max: int | None = None  # a network camera: failed reopenings in a row before giving up; None: never

    def __post_init__(self) -> None:
        if (self.camera is None) == (self.video is None):
            raise UsageError("give one live source: --camera or --video")
        if not self.network:
            given = [o for o, v in (("--rtsp-transport", self.rtsp_transport), ("--reconnect-max", self.reconnect_max)) if v is not None]
            if given:
                raise UsageError(f"{' and '.join(given)} only apply to a network camera (--camera rtsp://... or http://...)")
        elif self.camera_size is not None:
            raise UsageError("--camera-size asks a local camera for a frame size; a network camera sends the size it is set to (its own settings page)")
        if self.realtime and self.video is None:
            raise UsageError("--realtime paces a --video file; a camera is always real time")
        if self.camera_size is not None and self.camera is None:
            raise UsageError("--camera-size sets the size of a --camera's frames; a --video has its own")
        if self.serve is None and (self.token is not None or self.token_file is not None):
            raise UsageError(f"{'--token' if self.token is not None else '--token-file'} only applies with --serve")
        if self.jsonl_max_bytes is not None and self.jsonl is None:
            raise UsageError("--jsonl-max-bytes caps the file of --jsonl FILE")
        if self.mqtt is None:
            given = [opt for opt, value in (("--mqtt-ca", self.mqtt_ca is not None), ("--mqtt-password-file", self.mqtt_password_file is not None),
                                            ("--mqtt-discovery", self.mqtt_discovery), ("--mqtt-queue-max", self.mqtt_queue_max is not None)) if value]
            if given:
                raise UsageError(f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} with --mqtt URL")
        if self.metrics_public and self.serve is None:
            raise UsageError("--metrics-public opens /metrics of --serve: give --serve 127.0.0.1:PORT")
        check_camera_name(self.camera_name)  # $GCLF_CAMERA_NAME too

    @property
    def camera_name(self) -> str:
        """The camera's name: on the page, in the summary and event lines, in systemd's status,
        in the MQTT topics and the metrics."""
        return self.name if self.name is not None else default_camera_name()

    @property
    def network(self) -> bool:
        """The source is a network camera (reconnected on a drop, never the end of the run)."""
        return self.camera is not None and self.camera.is_network

    @property
    def keep_every_frame(self) -> bool:
        """A video file played as fast as the model goes: every frame, in order."""
        return self.video is not None and not self.realtime

    @property
    def windowed(self) -> bool:
        return not self.headless and self.serve is None  # with --serve the page is the window


@dataclass
class LiveParts:
    """What `build_live` made, each part given what it needs when it was made."""

    classifier: Classifier
    detector: FaceDetector | None
    margin: float
    detect_every: int
    source: FrameSource
    feed: FrameFeed
    sinks: list[Sink]
    counts: PeopleCounts | None
    web: WebSink | None
    lines: TextIO  # where every JSON line goes: stdout, or --jsonl's capped file
    publisher: MqttPublisher | None = None  # --mqtt: closed after the loop, never by a sink
    network: NetworkSource | None = None  # the source, when it is a network camera (its state: up, outages)

    def close_lines(self) -> None:
        if self.lines is not sys.stdout:
            self.lines.close()

    def close_publisher(self) -> None:
        """Deliver what the broker takes within a few seconds (the rest stays on disk for the
        next run), say offline, disconnect. Idempotent."""
        if self.publisher is not None:
            self.publisher.close()


def run_live_command(model: Path, opts: LiveOptions, *, threads: int, engine: str = DEFAULT_ENGINE, precision: str = DEFAULT_PRECISION,
                     min_confidence: float | None = None) -> int:
    """`gclf-infer --camera/--video`: build the loop, run it, summarise. Returns the exit code;
    a lost camera raises its error once the summary is printed. `min_confidence`: the
    Classifier's (None: the model's recorded threshold, if any)."""
    parts = build_live(model, opts, threads=threads, engine=engine, precision=precision, min_confidence=min_confidence)
    network = parts.network
    # SIGTERM (systemctl stop), SIGINT and SIGHUP end the run as q does: summary, exit 0.
    try:
        _describe(parts, model, opts)
        with stop_on_signals() as stop:
            summary = run_live(parts.feed, parts.classifier, detector=parts.detector, sinks=parts.sinks, margin=parts.margin,
                               max_frames=opts.max_frames, detect_every=parts.detect_every, stop=stop,
                               people=PersonTracker(counts=parts.counts, min_confidence=parts.classifier.min_confidence) if parts.detector is not None else None,
                               source_down=(lambda: network.state.down_since is not None) if network is not None else None)
    finally:
        parts.close_lines()
        parts.close_publisher()  # after run_live: the tracks still open were handed over as it ended
    if summary.failure is not None and not summary.processed:
        raise summary.failure  # the camera never delivered (wrong password, too large): its sentence alone
    click.echo(f"live: {summary.line()}", err=True)
    if network is not None:
        click.echo(f"live: {network.state.line()}", err=True)
    if parts.counts is not None:
        click.echo(f"live: {parts.counts.line()}", err=True)
    if parts.publisher is not None:
        click.echo(f"live: mqtt: {parts.publisher.stats().line()}", err=True)
    if opts.save is not None and summary.processed:
        click.echo(f"live: annotated video written to {opts.save}", err=True)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.failure is not None:
        raise summary.failure
    return EXIT_OK


def build_live(model: Path, opts: LiveOptions, *, threads: int, engine: str = DEFAULT_ENGINE, precision: str = DEFAULT_PRECISION,
               min_confidence: float | None = None) -> LiveParts:
    """Every part of a live run, made once, in the order that fails fastest: the model and its
    detector, the outputs and the browser view, then (last, so nothing above can leave it
    open) the camera or video, its feed, and what needs the source's frame rate.

    A network camera is the exception: it is made first, since making it connects to nothing
    (its feed's thread, started last, does), so that the outputs which report its state
    (the page, the summary, systemd's status) are given it when they are made. It is opened
    with FFmpeg's own timeouts and never with a deadline here: a camera that cannot be
    reached at start is an outage like any other, waited for."""
    clf, detector, margin = _model_and_detector(model, opts, threads, engine, precision, min_confidence)
    counts = PeopleCounts() if detector is not None else None
    lines = _json_lines_stream(opts)
    sinks: list[Sink] = []
    network = _network_source(opts) if opts.network else None
    source: FrameSource | None = network
    camera = (lambda: network.state) if network is not None else None
    publisher = None
    try:
        publisher = _mqtt_publisher(model, opts, clf)
        web = _outputs(sinks, model, opts, clf, lines, counts, publisher, camera)
        if source is None:
            source = _open_source(opts)
        if opts.save is not None:
            # Every frame kept: the file's own rate. Frames dropped: measured while running (fps None).
            sinks.append(VideoFileSink(opts.save, fps=source.fps if opts.keep_every_frame else None))
        # Under systemd: READY=1, WATCHDOG=1 as frames flow (and, for a network camera, while it is down).
        notifier = SystemdNotifySink.from_environment(name=opts.camera_name, camera=camera, responsive=network.responsive if network is not None else None)
        if notifier is not None:
            sinks.append(notifier)
        feed = open_network_feed(network) if network is not None else open_feed(source, keep_every_frame=opts.keep_every_frame)
    except BaseException:
        for item in [*sinks, *([source] if source is not None else []), *([publisher] if publisher is not None else [])]:
            with contextlib.suppress(Exception):
                item.close()
        if lines is not sys.stdout:
            lines.close()
        raise
    detect_every = DEFAULT_DETECT_EVERY if opts.detect_every is None else opts.detect_every
    return LiveParts(clf, detector, margin, detect_every, source, feed, sinks, counts, web, lines, publisher, network)


def _model_and_detector(model: Path, opts: LiveOptions, threads: int, engine: str, precision: str,
                        min_confidence: float | None) -> tuple[Classifier, FaceDetector | None, float]:
    """The classifier, the face detector (None: whole frames) and the margin to crop with."""
    # No spinning: onnxruntime's idle threads would otherwise busy-wait on the cores that the
    # capture and preparation threads need (docs/measurements.md, the live loop's figures).
    clf = Classifier(model, threads=threads or None, spin=False, engine=engine, precision=precision, min_confidence=min_confidence)
    if not use_face_detection(clf.metadata, opts.faces):
        if opts.events:
            raise UsageError(f"--events writes a line per person, and {model.name} classifies whole frames, so it sees no people: "
                             "use a model trained with --input-kind faces, or pass --faces")
        unused = [name for name, given in (("--face-model", opts.face_model is not None), ("--detect-every", opts.detect_every is not None)) if given]
        if unused:
            warn(f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used: {model.name} is run on whole frames (pass --faces to detect faces)")
        return clf, None, DEFAULT_FACE_MARGIN
    face_model, margin = resolve_face_detection(opts.face_model, opts.face_margin, clf.metadata.face_crop, model_dir=model.parent, warn=warn)
    return clf, detectors.make_detector(face_model), margin


def _json_lines_stream(opts: LiveOptions) -> TextIO:
    """All JSON lines (frames, tracks, summaries) go to one stream: stdout, or --jsonl's capped file."""
    if opts.jsonl is None:
        return sys.stdout
    return RotatingLineFile(opts.jsonl, opts.jsonl_max_bytes or DEFAULT_JSONL_MAX_BYTES)  # type: ignore[return-value]


def _mqtt_publisher(model: Path, opts: LiveOptions, clf: Classifier) -> MqttPublisher | None:
    """--mqtt: the publisher, connecting in its own thread from now on (a broker that is down
    is no error: events wait on disk in $STATE_DIRECTORY); None without --mqtt."""
    if opts.mqtt is None:
        return None
    # Here, not at the top: paho and the MQTT package load only when --mqtt is given.
    from gclf.runtime.mqtt.disk_queue import DEFAULT_QUEUE_MAX
    from gclf.runtime.mqtt.publisher import MqttPublisher
    from gclf.runtime.mqtt.settings import broker_settings

    settings = broker_settings(opts.mqtt, ca_file=opts.mqtt_ca, password_file=opts.mqtt_password_file)
    return MqttPublisher(settings, camera=opts.camera_name, queue_max=opts.mqtt_queue_max or DEFAULT_QUEUE_MAX,
                         labels=clf.labels, discovery=opts.mqtt_discovery, model=model.name, report=warn)


def _outputs(sinks: list[Sink], model: Path, opts: LiveOptions, clf: Classifier, lines: TextIO, counts: PeopleCounts | None,
             publisher: MqttPublisher | None, camera: Callable[[], StreamState] | None) -> WebSink | None:
    """Appends the outputs the options ask for to `sinks` (made before the source, so a wrong
    option fails before a camera opens); returns the browser view, if asked for. `camera`:
    a network camera's state, for the outputs that report it."""
    # A line per frame: asked for (--json), or headless without --events.
    if opts.as_json or (opts.headless and not opts.events):
        sinks.append(JsonLinesSink(lines))
    if opts.events:
        sinks.append(EventLinesSink(lines, name=opts.camera_name))
    if opts.summary_every is not None:
        sinks.append(SummarySink(lines, counts, opts.summary_every, name=opts.camera_name, camera=camera))
    if publisher is not None:
        from gclf.runtime.mqtt.sink import DEFAULT_COUNTS_EVERY_S, MqttSink  # here: with the publisher

        # After the local outputs: an event is on record here before it goes to the network.
        sinks.append(MqttSink(publisher, counts, opts.summary_every or DEFAULT_COUNTS_EVERY_S))
    if opts.save is not None:
        _naming_option(lambda: check_video_path(opts.save), before="--save ")
    web = None
    if opts.serve is not None:
        from gclf.runtime.serve.metrics import LiveMetrics, MetricsSink  # here: prometheus_client loads only with --serve

        metrics = LiveMetrics(labels=clf.labels, camera=opts.camera_name, model=model.name, version=_gclf_version(),
                              mqtt_stats=publisher.stats if publisher is not None else None)
        sinks.append(MetricsSink(metrics))
        web = make_web_sink(opts.serve, opts.token, opts.token_file, model, clf, counts=counts.snapshot if counts is not None else dict,
                            metrics=metrics, metrics_public=opts.metrics_public, name=opts.camera_name, camera=camera)
        sinks.append(web)
    if opts.windowed:
        sinks.append(_naming_option(lambda: WindowSink(f"gclf - {model.name}"), after=WINDOW_ADVICE))
    return web


def _gclf_version() -> str | None:
    try:
        return metadata.version("gclf")
    except metadata.PackageNotFoundError:
        return None


def _network_source(opts: LiveOptions) -> NetworkSource:
    """The network camera, not yet connected (its feed's thread connects, and reconnects)."""
    assert opts.camera is not None
    options = StreamOptions(transport=opts.rtsp_transport or "tcp", reconnect_max=opts.reconnect_max)
    return NetworkSource(str(opts.camera.device), options=options)


def _open_source(opts: LiveOptions) -> FrameSource:
    if opts.camera is not None:
        return open_camera(opts.camera.kind, opts.camera.device, opts.camera_size)
    source = open_video(opts.video)
    if opts.realtime:
        try:
            return _naming_option(lambda: PacedSource(source), before="--realtime: ")
        except BaseException:
            source.close()
            raise
    return source


def _describe(parts: LiveParts, model: Path, opts: LiveOptions) -> None:
    """What runs, and where to watch it, on stderr."""
    if parts.detector is not None:
        n = parts.detect_every
        what = f"faces ({parts.detector.name} detector)"
        what += "; faces detected on every frame" if n == 1 else f"; faces detected on every {n}{_ordinal(n)} frame, boxes tracked between"
    else:
        what = "whole frames"
    where = parts.source.name + (" (reconnected when it drops)" if parts.network is not None else "")
    click.echo(f"live: {where}, classifying {what} with {model.name} on {describe(parts.classifier.engine)}" + ("; q or Esc quits" if opts.windowed else ""), err=True)
    if parts.classifier.threshold.origin != "none":
        click.echo(f"live: {parts.classifier.threshold.describe('--min-confidence')}", err=True)
    if parts.web is not None:
        for line in web_sink_lines(parts.web):
            click.echo(f"live: {line}", err=True)
    if parts.publisher is not None:
        publisher = parts.publisher
        click.echo(f"live: reporting to the MQTT broker at {publisher.settings.address} as {publisher.settings.login()}, "
                   f"on {publisher.topics.base}/ (events wait in {publisher.queue.folder} while it is away)", err=True)


def web_sink_lines(web: WebSink) -> list[str]:
    """Where to watch, once the live source is open. A token the user gave is never printed
    (it outlives the run, and stderr is the journal)."""
    given = "" if web.token.generated else f" (add ?token= with the token from {web.token.source})"
    lines = [f"watch at {url}{given}" for url in web.urls()]
    if web.address.loopback:
        lines.append("only this machine can connect, with the token (from another one: ssh -L, or --serve 0.0.0.0:PORT)")
    else:
        lines.append("anyone on the network with this link (token included) can watch; Ctrl-C stops")
    return lines


def _ordinal(n: int) -> str:
    """The English ordinal suffix of n: 2nd, 3rd, 11th, 21st."""
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


WINDOW_ADVICE = "; pass --headless for JSON lines instead (--save FILE also writes the annotated video)"


def _naming_option(make: Callable[[], T], *, before: str = "", after: str = "") -> T:
    """`make()`; a `UsageError` from it gets the command-line option it came from, or advice
    on which option to use, into its message (library code speaks of files and values only)."""
    try:
        return make()
    except UsageError as exc:
        raise type(exc)(f"{before}{exc}{after}") from None
