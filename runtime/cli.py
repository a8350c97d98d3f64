"""`gclf-infer`: classify image files and folders with a gclf ONNX model."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, TypeVar

import click

from gclf.runtime.cli_support import report_errors, warn
from gclf.runtime.errors import EXIT_BAD_DATA, EXIT_CHECK_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, BadDataError, UsageError
from gclf.runtime.faces import DEFAULT_FACE_MARGIN, NO_FACE_ACTIONS  # faces.py loads OpenCV only when detecting
from gclf.runtime.face_models import FaceModelParam
from gclf.runtime.tracking import DEFAULT_DETECT_EVERY  # light: OpenCV is loaded only when tracking


if TYPE_CHECKING:
    from gclf.runtime.classifier import Classifier, FaceResult, Prediction
    from gclf.runtime.faces import FaceDetector
    from gclf.runtime.metadata import ModelMetadata

T = TypeVar("T")


class Camera(NamedTuple):
    kind: str  # "usb": OpenCV VideoCapture; "picam": the Raspberry Pi camera via picamera2
    device: int | str  # the camera's index; "usb" also a /dev/video* path or a link to one


class CameraParam(click.ParamType):
    """`--camera`: INDEX or /dev/... (a USB/V4L2 camera: /dev/video*, or a link to one such as
    /dev/v4l/by-id/...), `picam` or `picam:N` (the N-th Pi camera)."""

    name = "camera"

    def convert(self, value, param, ctx) -> Camera:
        if isinstance(value, Camera):
            return value
        if str(value).startswith("/"):  # a device path, checked when opened: cameras come and go
            return Camera("usb", str(value))
        text = str(value).strip().lower()
        if text == "picam":
            return Camera("picam", 0)
        kind, number = ("picam", text[len("picam:"):]) if text.startswith("picam:") else ("usb", text)
        if not number.isdigit():
            self.fail(f"{value!r} is not a camera: give an index (0, 1, ...), a /dev/video* path, picam or picam:N", param, ctx)
        return Camera(kind, int(number))


class SizeParam(click.ParamType):
    """WIDTHxHEIGHT in pixels, e.g. 640x480."""

    name = "size"

    def convert(self, value, param, ctx) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        width, _, height = str(value).lower().partition("x")
        if not (width.isdigit() and height.isdigit() and 16 <= int(width) <= 8192 and 16 <= int(height) <= 8192):
            self.fail(f"{value!r} is not a frame size: give WIDTHxHEIGHT, e.g. 640x480 (16 to 8192 each)", param, ctx)
        return int(width), int(height)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--check", is_flag=True, help="Check this machine for running gclf (a Raspberry Pi's preflight): 64-bit userland, imports, cameras, the MODEL (if given) and its face detector, threads, power. One line per check; exit 0 if all pass.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Images per inference call.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="onnxruntime intra-op threads (0: one per core).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image (live: per frame) instead of a table.")
@click.option("--camera", type=CameraParam(), default=None, metavar="INDEX|/dev/...|picam[:N]", help="Live: classify frames from camera INDEX (0 is the first) or device path (/dev/video*, /dev/v4l/by-id/...: a USB camera keeps its name), or from the Raspberry Pi camera module (picam, picam:N) through picamera2.")
@click.option("--camera-size", type=SizeParam(), default=None, metavar="WxH", help="Live: frame size to ask the camera for, e.g. 640x480.  [default: the camera's own; picam: 640x480]")
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, metavar="FILE", help="Live: classify the frames of a video file, every frame in order.")
@click.option("--realtime", is_flag=True, help="With --video: play the file at its frame rate and drop frames the model has no time for, like a camera.")
@click.option("--faces/--no-faces", "faces", default=None, help="Detect faces and classify each crop, or classify whole images and frames. Default: what the model's metadata says it was trained on.")
@click.option("--face-model", type=FaceModelParam(), default=None, metavar="haar|yunet|PATH", help="The face detector. haar: OpenCV's bundled Haar cascade; yunet: OpenCV Zoo's YuNet, downloaded once into ~/.cache/gclf/face_models (sha256 checked); PATH: a YuNet ONNX file (cv2.FaceDetectorYN).  [default: the one the model was trained with (gclf-train --face-crop), else yunet once it is in that cache, else haar]")
@click.option("--detect-every", type=click.IntRange(min=1), default=None, metavar="N", help=f"Live, faces: run the face detector on every N-th frame and carry the boxes over (track them) in between; a lost box is detected again at once. 1: detect on every frame.  [default: {DEFAULT_DETECT_EVERY}]")
@click.option("--face-margin", type=click.FloatRange(min=0.0, max=2.0), default=None, help=f"Widen each face box by this share of its size on every side before cropping.  [default: the model's training margin, else {DEFAULT_FACE_MARGIN}]")
@click.option("--if-no-face", "if_no_face", type=click.Choice(NO_FACE_ACTIONS), default=None, help="Image files, faces detected: for a photo without a face, classify the whole image, or report it unclassified.  [default: whole]")
@click.option("--headless", is_flag=True, help="Live: no window; print one JSON line per processed frame (for a device without a screen).")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE", help="Live: write the annotated video to FILE (.mp4 or .avi).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, metavar="N", help="Live: stop after N processed frames.")
@click.option("--serve", default=None, metavar="[HOST:]PORT", help="Live: serve a page with the annotated frames at http://HOST:PORT/ (no window). No host: 127.0.0.1, this machine only. Every address needs a token (generated and printed, or --token-file / $GCLF_SERVE_TOKEN). Needs pip install \"gclf[serve]\".")
@click.option("--token", default=None, metavar="TOKEN", help="With --serve: the token every request must carry (?token= or Authorization: Bearer), at least 22 characters; other users see a command line, so prefer --token-file or $GCLF_SERVE_TOKEN. Default: $GCLF_SERVE_TOKEN, else a generated one, printed with the URL.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH", help="With --serve: read the token from PATH (one line; a file only its owner, or group, can read, e.g. a systemd credential).")
@click.option("--events", is_flag=True, help="Live, faces: print one JSON line per person (track) when they leave, and for those still in view at the end, instead of a line per frame (--json adds the frame lines back).")
@click.option("--summary-every", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS", help="Live: every SECONDS, one JSON line with the frames, frame rate and tracks per label (last minute, last hour, total).")
@click.option("--jsonl", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE", help="Live: append the JSON lines to FILE instead of stdout, renamed FILE.1 when it reaches --jsonl-max-bytes (one old file kept).")
@click.option("--jsonl-max-bytes", type=click.IntRange(min=1024), default=None, metavar="BYTES", help="With --jsonl: the size at which FILE is rotated; at most twice this on disk.  [default: 10000000]")
@report_errors
def main(
    model: Path | None,
    paths: tuple[Path, ...],
    check: bool,
    batch_size: int,
    threads: int,
    as_json: bool,
    camera: Camera | None,
    camera_size: tuple[int, int] | None,
    video: Path | None,
    realtime: bool,
    faces: bool | None,
    face_model: Path | str | None,
    detect_every: int | None,
    face_margin: float | None,
    if_no_face: str | None,
    headless: bool,
    save: Path | None,
    max_frames: int | None,
    serve: str | None,
    token: str | None,
    token_file: Path | None,
    events: bool,
    summary_every: float | None,
    jsonl: Path | None,
    jsonl_max_bytes: int | None,
) -> int:
    """Classify image files and folders (searched recursively) with MODEL, or live frames
    from a camera (--camera) or a video file (--video).

    A model trained on faces (or --faces) gets each photo's faces, found by the live loop's
    detector and classified one by one, largest first; a photo without a face is classified
    as a whole, or with --if-no-face skip left unclassified, and says so.

    Unreadable files are reported by name on stderr and skipped. Exit code 0: all images
    read; 5: some could not be read; 3: none could.

    Live: a window shows each face's (or the frame's) label, confidence and the FPS; q or
    Esc quits, and so do SIGTERM, SIGINT (Ctrl-C) and SIGHUP. A summary (frames processed
    and dropped, mean FPS) goes to stderr at the end. Exit code 0: the video ended or the
    user quit; 2: the camera cannot be opened; 5: the camera stopped delivering frames or
    stalled (nothing for a few seconds); 8: --camera picam without picamera2.

    --check [MODEL]: what a Raspberry Pi needs, checked in one go; exit 0, or 12 and one
    sentence per problem.
    """
    if check:
        ctx = click.get_current_context()
        given = [param.opts[0] for param in ctx.command.params if isinstance(param, click.Option)
                 and param.name not in ("check", "threads") and ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE]
        if given or paths:
            raise UsageError(f"--check takes a MODEL and --threads only, not {', '.join(given) or 'image files'}")
        return run_check_command(model, threads=threads)
    if model is None:
        raise UsageError("give a MODEL (an ONNX file from gclf-export), or --check")
    live_options = {
        "--realtime": realtime, "--headless": headless, "--save": save is not None, "--max-frames": max_frames is not None,
        "--serve": serve is not None, "--token": token is not None, "--token-file": token_file is not None,
        "--camera-size": camera_size is not None, "--detect-every": detect_every is not None,
        "--events": events, "--summary-every": summary_every is not None, "--jsonl": jsonl is not None,
        "--jsonl-max-bytes": jsonl_max_bytes is not None,
    }
    margin = face_margin  # None: the model's training margin, else DEFAULT_FACE_MARGIN (resolve_face_detection)
    if camera is not None or video is not None:
        if paths:
            raise UsageError("give image files/folders or a live source (--camera/--video), not both")
        if if_no_face is not None:
            raise UsageError("--if-no-face applies to image files; a live frame without a face has an empty face list")
        if camera_size is not None and camera is None:
            raise UsageError("--camera-size sets the size of a --camera's frames; a --video has its own")
        live = LiveOptions(
            camera, video, realtime, faces, face_model, margin, headless, as_json, save, max_frames, serve, token, camera_size,
            token_file=token_file,
            detect_every=DEFAULT_DETECT_EVERY if detect_every is None else detect_every, detect_every_given=detect_every is not None,
            events=events, summary_every=summary_every, jsonl=jsonl, jsonl_max_bytes=jsonl_max_bytes,
        )
        return run_live_command(model, live, threads=threads)
    given = [name for name, used in live_options.items() if used]
    if given:
        raise UsageError(f"{', '.join(given)} only apply to live sources (--camera INDEX or --video FILE)")
    if not paths:
        raise UsageError("give image files or folders to classify, or a live source: --camera INDEX or --video FILE")
    options = FileOptions(faces, face_model, margin, if_no_face, batch_size, as_json)
    return run_files_command(model, list(paths), options, threads=threads)


@dataclass(frozen=True)
class FileOptions:
    faces: bool | None  # None: follow the model's metadata
    face_model: Path | str | None  # a file, or "haar"/"yunet"; None: the model's, else today's default
    face_margin: float | None  # None: the model's training margin, else DEFAULT_FACE_MARGIN
    if_no_face: str | None  # None: not given ("whole")
    batch_size: int
    as_json: bool


def run_files_command(model: Path, paths: list[Path], opts: FileOptions, *, threads: int) -> int:
    """`gclf-infer MODEL PATHS...`: classify files, whole or face by face; one row (table) or
    object (--json) per image, or per face. Returns the exit code."""
    # Imported here so that `gclf-infer --help` stays fast (no onnxruntime import).
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.listing import expand_inputs

    files = expand_inputs(paths)
    if not files:
        raise BadDataError("no image files found in " + ", ".join(map(str, paths)))
    clf = Classifier(model, threads=threads or None)
    with_faces = _use_face_detection(clf.metadata, opts.faces)
    if not with_faces:
        unused = [name for name, given in (("--face-model", opts.face_model is not None), ("--if-no-face", opts.if_no_face is not None)) if given]
        if unused:
            warn(f"{', '.join(unused)} not used: {model.name} classifies whole images (pass --faces to detect faces)")
        return _print_whole_images(clf, files, opts)
    face_model, margin = _face_detection(clf, model, opts.face_model, opts.face_margin)
    from gclf.runtime.faces import make_detector

    detector = make_detector(face_model)
    return _print_faces(clf, files, replace(opts, face_margin=margin), detector)


def _print_whole_images(clf: Classifier, files: list[Path], opts: FileOptions) -> int:
    n_ok = n_failed = 0
    width = max(len(str(f)) for f in files)
    if not opts.as_json:
        click.echo(f"{'image':<{width}}  {'label':<16} confidence")
    for result in clf.predict_files(files, batch_size=opts.batch_size):
        if result.error is not None:
            n_failed += 1
            click.echo(f"skipped: {result.error}", err=True)
            continue
        n_ok += 1
        pred = result.prediction
        if opts.as_json:
            click.echo(json.dumps({"path": str(result.path), **_prediction_json(pred)}))
        else:
            click.echo(f"{str(result.path):<{width}}  {pred.label:<16} {pred.confidence:.3f}")
    click.echo(f"{n_ok} classified, {n_failed} skipped ({clf.metadata.variant} model {clf.path.name})", err=True)
    return _exit_code(n_ok, n_failed)


def _print_faces(clf: Classifier, files: list[Path], opts: FileOptions, detector: FaceDetector) -> int:
    """One table row per face (largest first), or one JSON object per photo with its faces;
    a photo without a face says so, with the whole image's label where that fallback is on."""
    no_face = opts.if_no_face or "whole"
    n_ok = n_failed = n_faces = n_without = 0
    width = max(len(str(f)) for f in files)
    if not opts.as_json:
        click.echo(f"{'image':<{width}}  {'face':>4}  {'box x,y,w,h':<19} {'label':<16} confidence")
    results = clf.predict_files(
        files, batch_size=opts.batch_size, faces=True, detector=detector, margin=opts.face_margin, no_face=no_face
    )
    for result in results:
        if result.error is not None:
            n_failed += 1
            click.echo(f"skipped: {result.error}", err=True)
            continue
        n_ok += 1
        n_faces += len(result.faces)
        n_without += not result.faces
        if opts.as_json:
            record: dict = {"path": str(result.path), "faces": [{"box": list(f.box), **_prediction_json(f)} for f in result.faces]}
            if result.fallback is not None:
                record["fallback"] = result.fallback
                if result.prediction is not None:
                    record.update(_prediction_json(result.prediction))
            click.echo(json.dumps(record))
            continue
        for i, face in enumerate(result.faces, start=1):
            box = ",".join(map(str, face.box))
            click.echo(f"{str(result.path):<{width}}  {i:>4}  {box:<19} {face.label:<16} {face.confidence:.3f}")
        if not result.faces:
            pred = result.prediction
            outcome = f"whole image: {pred.label} {pred.confidence:.3f}" if pred is not None else "not classified"
            click.echo(f"{str(result.path):<{width}}  {'-':>4}  no face found ({outcome})")
    fallback = "classified as whole images" if no_face == "whole" else "not classified"
    click.echo(
        f"{n_ok} read, {n_failed} skipped: {n_faces} face{'' if n_faces == 1 else 's'} classified, "
        f"{n_without} photo{'' if n_without == 1 else 's'} without a face ({fallback}); "
        f"{clf.metadata.variant} model {clf.path.name}, {detector.name} detector, margin {opts.face_margin:g}",
        err=True,
    )
    return _exit_code(n_ok, n_failed)


def _prediction_json(pred: Prediction | FaceResult) -> dict:
    return {
        "label": pred.label,
        "confidence": round(pred.confidence, 6),
        "probabilities": {c: round(p, 6) for c, p in pred.probabilities.items()},
    }


def _exit_code(n_ok: int, n_failed: int) -> int:
    """0: every file read; 5: some could not be; 3: none could."""
    if not n_failed:
        return EXIT_OK
    return EXIT_PARTIAL if n_ok else EXIT_BAD_DATA


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
    with_faces = _use_face_detection(clf.metadata, opts.faces)
    unused = [name for name, given in (("--face-model", opts.face_model is not None), ("--detect-every", opts.detect_every_given)) if given]
    if unused and not with_faces:
        warn(f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used: {model.name} is run on whole frames (pass --faces to detect faces)")
    detector = None
    if with_faces:
        face_model, margin = _face_detection(clf, model, opts.face_model, opts.face_margin)
        detector = make_detector(face_model)
        opts = replace(opts, face_margin=margin)
    elif opts.events:
        warn(f"--events records people, and {model.name} is run on whole frames: no track events (pass --faces to detect faces)")

    keep_every_frame = opts.video is not None and not opts.realtime
    sinks: list[Sink] = []
    source: FrameSource | None = None
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
        for item in [*sinks, *([source] if source is not None else []), *([lines] if lines is not sys.stdout else [])]:
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


def run_check_command(model: Path | None, *, threads: int) -> int:
    """`gclf-infer --check [MODEL]`: every check of gclf.runtime.preflight, one line each."""
    from gclf.runtime.preflight import PreflightContext, run_checks

    findings = run_checks(PreflightContext(model=model, threads=threads or None), report=lambda f: click.echo(f.line()))
    problems = [f for f in findings if f.is_problem]
    if problems:
        click.echo(f"check: {len(problems)} problem{'' if len(problems) == 1 else 's'} (lines marked PROBLEM above)", err=True)
        return EXIT_CHECK_FAILED
    click.echo("check: all passed", err=True)
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


def _face_detection(clf: Classifier, model: Path, face_model: Path | str | None, face_margin: float | None) -> tuple[Path | str, float]:
    """(--face-model, --face-margin) as given, else as the model records it was trained with
    (gclf-train --face-crop), else today's default: gclf.runtime.faces.resolve_face_detection."""
    from gclf.runtime.faces import resolve_face_detection

    return resolve_face_detection(face_model, face_margin, clf.metadata.face_crop, model_dir=model.parent, warn=warn)


def _use_face_detection(metadata: ModelMetadata, override: bool | None) -> bool:
    """Whether to detect faces: the --faces/--no-faces override, else the model's metadata."""
    from gclf.runtime.metadata import DEFAULT_INPUT_KIND

    if override is not None:
        return override
    kind = metadata.input_kind
    if kind is None:
        warn(
            f"the model does not record whether it expects face crops or whole images (no input_kind); "
            f"treating it as {DEFAULT_INPUT_KIND} (pass --faces if it was trained on faces)"
        )
        kind = DEFAULT_INPUT_KIND
    return kind == "faces"


def make_web_sink(serve: str, token: str | None, token_file: Path | None, model: Path, clf):
    """The --serve sink, bound and serving (no frame yet); see gclf.runtime.serve."""
    from gclf.runtime.serve import ModelInfo, WebSink, parse_serve_address, resolve_token

    address = parse_serve_address(serve)
    info = ModelInfo(model.name, clf.metadata.variant, tuple(clf.class_names))
    return WebSink(address, token=resolve_token(token, token_file), model=info, report=warn)


def announce_web_sink(web) -> None:
    # A token the user gave is never printed (it outlives the run, and stderr is the journal).
    given = "" if web.token.generated else f" (add ?token= with the token from {web.token.source})"
    for url in web.urls():
        click.echo(f"live: watch at {url}{given}", err=True)
    if web.address.loopback:
        click.echo("live: only this machine can connect, with the token (from another one: ssh -L, or --serve 0.0.0.0:PORT)", err=True)
    else:
        click.echo("live: anyone on the network with this link (token included) can watch; Ctrl-C stops", err=True)


if __name__ == "__main__":
    main()
