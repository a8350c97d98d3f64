"""`gclf-infer`: classify image files and folders with a gclf ONNX model.

This module is the command line only (options, and which job they ask for): the files job is
gclf.runtime.cli.files_job, the live job gclf.runtime.cli.live_job, --check gclf.runtime.cli.preflight.
"""

from __future__ import annotations

from pathlib import Path

import click

from gclf.runtime.cli.config import read_camera_config
from gclf.runtime.cli.params import NETWORK, Camera, CameraParam, FaceModelParam, SizeParam
from gclf.runtime.cli.support import exit_with, report_errors
from gclf.runtime.errors import GclfError, UsageError
from gclf.runtime.redact import resolve_camera_url
from gclf.runtime.engine import DEFAULT_ENGINE, DEFAULT_PRECISION, ENGINES, PRECISIONS  # light: no numpy, OpenCV or engine loads
from gclf.runtime.faces.crops import DEFAULT_FACE_MARGIN, NO_FACE_ACTIONS  # light: OpenCV loads only when a face is looked for
from gclf.runtime.live.carry import DEFAULT_DETECT_EVERY  # light: OpenCV is loaded only when tracking


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--check", is_flag=True, help="Check this machine for running gclf (a Raspberry Pi's preflight): 64-bit userland, imports, the camera the other options (or --config) name, the MODEL (if given) and its face detector, threads, power. One line per check; exit 0 if all pass.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Images per inference call.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="onnxruntime intra-op threads (0: one per core).")
@click.option("--engine", type=click.Choice(ENGINES), default=DEFAULT_ENGINE, show_default=True, help="What runs the model: onnxruntime, or OpenVINO (the openvino extra: pip install \".[openvino]\" in a gclf checkout; faster int8 and bf16 on Intel CPUs with AMX). Checked once per model and machine against the reference outputs the model records; `--check MODEL` names the fastest that passed here.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=DEFAULT_PRECISION, show_default=True, help="What an fp32 model is computed in: fp32, or bf16 (--engine openvino; faster on CPUs with AMX or AVX512-BF16, answers a little further from fp32). An int8 model runs as it is.")
@click.option("--min-confidence", type=click.FloatRange(min=0.0, max=1.0), default=None, metavar="P", help="Answers whose top confidence is below P get the label unsure (the most probable class is kept beside it: JSON \"best\"); 0: every answer is given. Files and live frames, tracks, events and counts alike.  [default: the threshold the model records (gclf.decision), else 0]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image (live: per frame) instead of a table.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE.toml", is_eager=True, expose_value=False, callback=lambda ctx, param, value: _load_config(ctx, value), help="Read options from a TOML file (one camera's settings: the options' own names without the dashes, e.g. detect-every = 3, model = \"...\"); an option on the command line wins over the file.")
@click.option("--camera", type=CameraParam(), default=None, metavar="INDEX|/dev/...|picam[:N]|URL", help="Live: classify frames from camera INDEX (0 is the first) or device path (/dev/video*, /dev/v4l/by-id/...: a USB camera keeps its name), from the Raspberry Pi camera module (picam, picam:N) through picamera2, or from a network camera: rtsp://, rtsps://, http(s):// (MJPEG, or any stream FFmpeg reads), reconnected when it drops. A password or token in the URL is never printed; --camera-url-file or $GCLF_CAMERA_URL keep it off the command line.")
@click.option("--camera-url-file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH", help="Live: read the network camera's URL from PATH (its first line; a file other users cannot read). Without --camera or --camera-url-file, a live run takes $GCLF_CAMERA_URL, else the systemd credential camera-url.")
@click.option("--rtsp-transport", type=click.Choice(["tcp", "udp"]), default=None, help="Live, an rtsp:// camera: RTP over the RTSP connection (tcp: one connection, passes NAT and firewalls) or over UDP.  [default: tcp]")
@click.option("--reconnect-max", type=click.IntRange(min=0), default=None, metavar="N", help="Live, a network camera: give up (exit 5) after N reopenings in a row failed.  [default: never; a camera down is waited for, with 1, 2, 4 ... 30 s between attempts]")
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
@click.option("--serve", default=None, metavar="[HOST:]PORT", help="Live: serve a page with the annotated frames at http://HOST:PORT/ (no window). No host: 127.0.0.1, this machine only. Every address needs a token (generated and printed, or --token-file / $GCLF_SERVE_TOKEN). Needs the serve extra (pip install \".[serve]\" in a checkout).")
@click.option("--token", default=None, metavar="TOKEN", help="With --serve: the token every request must carry (?token= or Authorization: Bearer), at least 22 characters; other users see a command line, so prefer --token-file or $GCLF_SERVE_TOKEN. Default: $GCLF_SERVE_TOKEN, else a generated one, printed with the URL.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH", help="With --serve: read the token from PATH (one line; a file only its owner, or group, can read, e.g. a systemd credential).")
@click.option("--events", is_flag=True, help="Live, faces: print one JSON line per person (track) when they leave, and for those still in view at the end, instead of a line per frame (--json adds the frame lines back).")
@click.option("--summary-every", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS", help="Live: every SECONDS, one JSON line with the frames, frame rate and tracks per label (last minute, last hour, total).")
@click.option("--jsonl", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE", help="Live: append the JSON lines to FILE instead of stdout, renamed FILE.1 when it reaches --jsonl-max-bytes (one old file kept).")
@click.option("--jsonl-max-bytes", type=click.IntRange(min=1024), default=None, metavar="BYTES", help="With --jsonl: the size at which FILE is rotated; at most twice this on disk.  [default: 10000000]")
@click.option("--name", default=None, metavar="NAME", help="Live: the camera's name (letters, digits, . _ -): on the page, in the summary and event lines, in systemd's status, in the MQTT topics gclf/NAME/... and the metrics.  [default: $GCLF_CAMERA_NAME (the template unit's instance name), else this machine's host name]")
@click.option("--mqtt", default=None, metavar="mqtt[s]://[USER@]HOST[:PORT]", help="Live: publish each person's event, the counts and online/offline to this MQTT broker (gclf/NAME/...); events wait on disk while it is away. The password: --mqtt-password-file, $GCLF_MQTT_PASSWORD or the unit's LoadCredential=mqtt-password:FILE, never in the address. Needs the mqtt extra (pip install \".[mqtt]\" in a checkout).")
@click.option("--mqtt-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, metavar="FILE", help="With --mqtt mqtts://...: the CA certificate (PEM) that signed the broker's.  [default: the system's]")
@click.option("--mqtt-password-file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE", help="With --mqtt: read the broker password from FILE (one line; a file other users cannot read).")
@click.option("--mqtt-discovery", is_flag=True, help="With --mqtt: publish Home Assistant discovery configs, so the camera appears there with its sensors (people per label, camera, FPS).")
@click.option("--mqtt-queue-max", type=click.IntRange(min=1), default=None, metavar="N", help="With --mqtt: events kept on disk while the broker is away; beyond, the oldest are dropped and counted.  [default: 2000]")
@click.option("--metrics-public", is_flag=True, help="With --serve on 127.0.0.1: serve /metrics without the token (for a Prometheus on this machine). Elsewhere a scraper sends the token (Authorization: Bearer).")
@report_errors
def main(
    model: Path | None,
    paths: tuple[Path, ...],
    check: bool,
    batch_size: int,
    threads: int,
    engine: str,
    precision: str,
    min_confidence: float | None,
    as_json: bool,
    camera: Camera | None,
    camera_url_file: Path | None,
    rtsp_transport: str | None,
    reconnect_max: int | None,
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
    name: str | None,
    mqtt: str | None,
    mqtt_ca: Path | None,
    mqtt_password_file: Path | None,
    mqtt_discovery: bool,
    mqtt_queue_max: int | None,
    metrics_public: bool,
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
    user quit; 2: the camera cannot be opened, or a network camera refused the user name,
    password or token; 5: a local camera stopped delivering frames or stalled (nothing for
    a few seconds), or a network camera could not be reopened --reconnect-max times in a
    row; 8: --camera picam without picamera2. A network camera that drops, stalls or cannot
    be reached is reopened until it answers: the run goes on.

    --config FILE.toml: the options from a file (one per camera); the command line wins.

    --check [MODEL] [options]: what a Raspberry Pi needs, checked in one go, with the run's
    own options (the camera they name, a network one within a few seconds; with --mqtt,
    whether the broker answers and takes the login); exit 0, or 12 and one sentence per
    problem.
    """
    ctx = click.get_current_context()
    camera = _camera(camera, camera_url_file, fallback=video is None and not paths)
    if check:
        return _check(ctx, model, paths, threads, {**ctx.params, "camera": camera})
    if model is None:
        raise UsageError("give a MODEL (an ONNX file from gclf-export), or --check")
    if camera is not None or video is not None:
        if paths:
            raise UsageError("give image files/folders or a live source (--camera/--video), not both")
        if if_no_face is not None:
            raise UsageError("--if-no-face applies to image files; a live frame without a face has an empty face list")
        from gclf.runtime.cli.live_job import LiveOptions, run_live_command  # here: --help stays fast

        live = LiveOptions(
            camera=camera, video=video, realtime=realtime, faces=faces, face_model=face_model, face_margin=face_margin,
            detect_every=detect_every, headless=headless, as_json=as_json, save=save, max_frames=max_frames, serve=serve,
            token=token, token_file=token_file, camera_size=camera_size, events=events, summary_every=summary_every,
            jsonl=jsonl, jsonl_max_bytes=jsonl_max_bytes, name=name, mqtt=mqtt, mqtt_ca=mqtt_ca,
            mqtt_password_file=mqtt_password_file, mqtt_discovery=mqtt_discovery, mqtt_queue_max=mqtt_queue_max,
            metrics_public=metrics_public, rtsp_transport=rtsp_transport, reconnect_max=reconnect_max,
        )
        return run_live_command(model, live, threads=threads, engine=engine, precision=precision, min_confidence=min_confidence)
    given = _given(ctx, LIVE_ONLY)
    if given:
        raise UsageError(f"{', '.join(given)} only apply to live sources (--camera INDEX or --video FILE)")
    if not paths:
        raise UsageError("give image files or folders to classify, or a live source: --camera INDEX or --video FILE")
    from gclf.runtime.cli.files_job import FileOptions, run_files_command  # here: --help stays fast

    options = FileOptions(faces, face_model, face_margin, if_no_face, batch_size, as_json)
    return run_files_command(model, list(paths), options, threads=threads, engine=engine, precision=precision, min_confidence=min_confidence)


# Options that only mean something for a live source.
LIVE_ONLY = ("realtime", "headless", "save", "max_frames", "serve", "token", "token_file", "camera_size", "detect_every",
             "events", "summary_every", "jsonl", "jsonl_max_bytes", "name", "mqtt", "mqtt_ca", "mqtt_password_file",
             "mqtt_discovery", "mqtt_queue_max", "metrics_public", "rtsp_transport", "reconnect_max")


def _load_config(ctx: click.Context, path: Path | None) -> None:
    """--config: the file's options become click's defaults, so the command line wins. Runs
    while click parses (outside report_errors): a mistake is reported here, the same way."""
    if path is None:
        return
    try:
        ctx.default_map = {**(ctx.default_map or {}), **read_camera_config(path, ctx.command)}
    except GclfError as exc:
        exit_with(exc)


def _camera(camera: Camera | None, url_file: Path | None, *, fallback: bool) -> Camera | None:
    """The camera the run reads: --camera, or a network camera's URL from --camera-url-file,
    or (`fallback`: no other source was given) from $GCLF_CAMERA_URL or the systemd credential."""
    if camera is not None and not camera.is_network:
        if url_file is not None:
            raise UsageError("give --camera or --camera-url-file, not both")
        return camera
    given = camera.device if camera is not None else None
    if given is None and url_file is None and not fallback:
        return None
    found = resolve_camera_url(given, url_file)  # type: ignore[arg-type]
    return Camera(NETWORK, found[0]) if found is not None else None


def _given(ctx: click.Context, names: tuple[str, ...] | None = None) -> list[str]:
    """The options among `names` (all, if None) that were given on the command line, as written there."""
    return [param.opts[0] for param in ctx.command.params if isinstance(param, click.Option) and (names is None or param.name in names)
            and ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE]


def _check(ctx: click.Context, model: Path | None, paths: tuple[Path, ...], threads: int, options: dict) -> int:
    """--check with the run's options (command line and --config): the checks look at what
    the run would use (the camera it names; nothing of a camera when it names none)."""
    if paths:
        raise UsageError("--check checks a MODEL and the live run's options, not image files: leave the files out")
    from gclf.runtime.cli.preflight import run_check_command  # here: --help stays fast

    return run_check_command(model, threads=threads, options=options)


if __name__ == "__main__":
    main()
