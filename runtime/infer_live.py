"""`gclf-infer --camera/--video`: set up the live loop's source, face detector and sinks from
the command line's options, run it, and print the summary."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, TypeVar

import click

from gclf.runtime.cli_support import warn
from gclf.runtime.cli_types import Camera
from gclf.runtime.errors import EXIT_INTERRUPTED, EXIT_OK, UsageError
from gclf.runtime.face_choice import face_detection, use_face_detection
from gclf.runtime.faces import DEFAULT_FACE_MARGIN  # faces.py loads OpenCV only when detecting
from gclf.runtime.tracking import DEFAULT_DETECT_EVERY  # light: OpenCV is loaded only when tracking

T = TypeVar("T")


@dataclass(frozen=True)
class LiveOptions:
    camera: Camera | None
    video: Path | None
    realtime: bool
    faces: bool | None  # None: follow the model's metadata
    face_model: Path | str | None  # a file, or "haar"/"yunet"; None: the model's, else today's default
    face_margin: float | None  # None: the model's training margin, else DEFAULT_FACE_MARGIN
    headless: bool
    as_json: bool
    save: Path | None
    max_frames: int | None
    serve: str | None = None  # --serve [HOST:]PORT
    token: str | None = None
    camera_size: tuple[int, int] | None = None  # (width, height); None: the camera's default
    detect_every: int = DEFAULT_DETECT_EVERY  # the face detector runs on every N-th frame, boxes tracked between
    detect_every_given: bool = False  # --detect-every was on the command line (warned about if unused)
    token_file: Path | None = None  # --token-file PATH
    events: bool = False  # --events: a JSON line per track, not per frame
    summary_every: float | None = None  # --summary-every SECONDS
    jsonl: Path | None = None  # --jsonl FILE: the JSON lines go there (rotated), not to stdout
    jsonl_max_bytes: int | None = None  # None: DEFAULT_JSONL_MAX_BYTES


def run_live_command(model: Path, opts: LiveOptions, *, threads: int) -> int:
    """`gclf-infer --camera/--video`: set up source, detector and sinks, run, summarise.

    Returns the exit code; a lost camera raises its error once the summary is printed.
    Everything that can fail because of the user's input (model, face model, window, camera)
    is checked before the camera is opened.
    """
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.faces import make_detector
    from gclf.runtime.live import run_live, stop_on_signals
    from gclf.runtime.sinks import DEFAULT_JSONL_MAX_BYTES, JsonLinesSink, RotatingLineFile, Sink, SummarySink, VideoFileSink, WindowSink, write_json_line
    from gclf.runtime.tracks import PersonTracker, TrackCounts
    from gclf.runtime.sd_notify import SystemdNotifySink
    from gclf.runtime.serve import announce_web_sink, make_web_sink
    from gclf.runtime.video_sources import FrameSource, PacedSource, open_camera, open_feed, open_video

    if opts.camera is not None and opts.video is not None:
        raise UsageError("give one live source: --camera or --video")
    if opts.realtime and opts.video is None:
        raise UsageError("--realtime paces a --video file; a camera is always real time")
    if opts.serve is None and (opts.token is not None or opts.token_file is not None):
        raise UsageError(f"{'--token' if opts.token is not None else '--token-file'} only applies with --serve")
    if opts.jsonl_max_bytes is not None and opts.jsonl is None:
        raise UsageError("--jsonl-max-bytes caps the file of --jsonl FILE")

    # No spinning: onnxruntime's idle threads would otherwise busy-wait on the cores that the
    # capture and preparation threads need (measured in docs/measurements.md: with face
    # detection 0.84x instead of 0.70x of the bare model rate, and a third of the latency).
    clf = Classifier(model, threads=threads or None, spin=False)
    with_faces = use_face_detection(clf.metadata, opts.faces)
    unused = [name for name, given in (("--face-model", opts.face_model is not None), ("--detect-every", opts.detect_every_given)) if given]
    if unused and not with_faces:
        warn(f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used: {model.name} is run on whole frames (pass --faces to detect faces)")
    detector = None
    if with_faces:
        face_model, margin = face_detection(clf, model, opts.face_model, opts.face_margin)
        detector = make_detector(face_model)
        opts = replace(opts, face_margin=margin)
    elif opts.events:
        warn(f"--events records people, and {model.name} is run on whole frames: no track events (pass --faces to detect faces)")

    keep_every_frame = opts.video is not None and not opts.realtime
    sinks: list[Sink] = []
    source: FrameSource | None = None
    saver = None
    web = None
    # All JSON lines (frames, tracks, summaries) go to one stream: stdout, or --jsonl's capped file.
    lines = RotatingLineFile(opts.jsonl, opts.jsonl_max_bytes or DEFAULT_JSONL_MAX_BYTES) if opts.jsonl is not None else sys.stdout
    counts = TrackCounts() if detector is not None else None
    people = PersonTracker(counts=counts) if detector is not None else None
    if people is not None and opts.events:
        people.on_end.append(lambda event: write_json_line(lines, event.to_json()))
    try:
        # A line per frame: asked for (--json), or headless without --events.
        if opts.as_json or (opts.headless and not opts.events):
            sinks.append(JsonLinesSink(lines))
        if opts.summary_every is not None:
            sinks.append(SummarySink(lines, counts, opts.summary_every))
        saver = _naming_option(lambda: VideoFileSink(opts.save, fps=None), before="--save ") if opts.save is not None else None
        if opts.serve is not None:
            web = make_web_sink(opts.serve, opts.token, opts.token_file, model, clf)
            if counts is not None:
                web.counts = counts.snapshot
            sinks.append(web)
        if not opts.headless and web is None:  # with --serve the page is the window
            sinks.append(_naming_option(lambda: WindowSink(f"gclf - {model.name}"), after=WINDOW_ADVICE))
        # Opened last: nothing above can leave a camera open when it fails.
        if opts.camera is not None:
            source = open_camera(opts.camera.kind, opts.camera.device, opts.camera_size)
        else:
            source = open_video(opts.video)
        if opts.realtime:
            source = _naming_option(lambda: PacedSource(source), before="--realtime: ")
    except BaseException:
        opened = [*sinks, *([saver] if saver is not None else []), *([source] if source is not None else [])]
        for item in [*opened, *([lines] if lines is not sys.stdout else [])]:
            item.close()
        raise
    if saver is not None:
        # Every frame kept: the file's own rate. Frames dropped: measured while running (fps None).
        saver.fps = source.fps if keep_every_frame else None
        sinks.append(saver)

    what = f"faces ({detector.name} detector)" if detector is not None else "whole frames"
    if detector is not None:
        n = opts.detect_every
        pace = "; faces detected on every frame" if n == 1 else f"; faces detected on every {n}{_ordinal(n)} frame, boxes tracked between"
    windowed = not opts.headless and web is None
    click.echo(
        f"live: {source.name}, classifying {what} with {model.name}" + (pace if detector is not None else "") + ("; q or Esc quits" if windowed else ""),
        err=True,
    )
    feed = open_feed(source, keep_every_frame=keep_every_frame)
    if web is not None:
        web.dropped = lambda: feed.dropped
        announce_web_sink(web)
    margin = DEFAULT_FACE_MARGIN if opts.face_margin is None else opts.face_margin  # None only without faces
    notifier = SystemdNotifySink.from_environment()  # under systemd: READY=1, WATCHDOG=1 as frames flow
    if notifier is not None:
        sinks.append(notifier)
    # SIGTERM (systemctl stop), SIGINT and SIGHUP end the run as q does: summary, exit 0.
    try:
        with stop_on_signals() as stop:
            summary = run_live(feed, clf, detector=detector, sinks=sinks, margin=margin, max_frames=opts.max_frames,
                               detect_every=opts.detect_every, stop=stop, people=people)
    finally:
        if lines is not sys.stdout:
            lines.close()

    click.echo(f"live: {summary.line()}", err=True)
    if counts is not None:
        click.echo(f"live: {counts.line()}", err=True)
    if opts.save is not None and summary.processed:
        click.echo(f"live: annotated video written to {opts.save}", err=True)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.failure is not None:
        raise summary.failure
    return EXIT_OK


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


