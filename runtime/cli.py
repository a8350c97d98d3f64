"""`gclf-infer`: classify image files and folders with a gclf ONNX model."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import click

from gclf.runtime.cli_support import report_errors, warn
from gclf.runtime.errors import EXIT_BAD_DATA, EXIT_PARTIAL

# Default widening of a detected face box before cropping (share of its size, each side);
# here rather than imported from gclf.runtime.live so that --help does not load OpenCV.
FACE_MARGIN = 0.0


class Camera(NamedTuple):
    kind: str  # "usb": OpenCV VideoCapture; "picam": the Raspberry Pi camera via picamera2
    index: int


class CameraParam(click.ParamType):
    """`--camera`: INDEX (a USB/V4L2 camera), `picam` or `picam:N` (the N-th Pi camera)."""

    name = "camera"

    def convert(self, value, param, ctx) -> Camera:
        if isinstance(value, Camera):
            return value
        text = str(value).strip().lower()
        if text == "picam":
            return Camera("picam", 0)
        kind, number = ("picam", text[len("picam:"):]) if text.startswith("picam:") else ("usb", text)
        if not number.isdigit():
            self.fail(f"{value!r} is not a camera: give an index (0, 1, ...), picam or picam:N", param, ctx)
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
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Images per inference call.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="onnxruntime intra-op threads (0: one per core).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image (live: per frame) instead of a table.")
@click.option("--camera", type=CameraParam(), default=None, metavar="INDEX|picam[:N]", help="Live: classify frames from camera INDEX (0 is the first), or from the Raspberry Pi camera module (picam, picam:N) through picamera2.")
@click.option("--camera-size", type=SizeParam(), default=None, metavar="WxH", help="Live: frame size to ask the camera for, e.g. 640x480.  [default: the camera's own; picam: 640x480]")
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, metavar="FILE", help="Live: classify the frames of a video file, every frame in order.")
@click.option("--realtime", is_flag=True, help="With --video: play the file at its frame rate and drop frames the model has no time for, like a camera.")
@click.option("--faces/--no-faces", "faces", default=None, help="Live: detect faces and classify each crop, or classify whole frames. Default: what the model's metadata says it was trained on.")
@click.option("--face-model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, metavar="PATH", help="Live: detect faces with this YuNet ONNX model (cv2.FaceDetectorYN) instead of OpenCV's bundled Haar cascade.")
@click.option("--face-margin", type=click.FloatRange(min=0.0, max=2.0), default=None, help=f"Live: widen each face box by this share of its size on every side before cropping.  [default: {FACE_MARGIN}]")
@click.option("--headless", is_flag=True, help="Live: no window; print one JSON line per processed frame (for a device without a screen).")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE", help="Live: write the annotated video to FILE (.mp4 or .avi).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, metavar="N", help="Live: stop after N processed frames.")
@report_errors
def main(
    model: Path,
    paths: tuple[Path, ...],
    batch_size: int,
    threads: int,
    as_json: bool,
    camera: Camera | None,
    camera_size: tuple[int, int] | None,
    video: Path | None,
    realtime: bool,
    faces: bool | None,
    face_model: Path | None,
    face_margin: float | None,
    headless: bool,
    save: Path | None,
    max_frames: int | None,
) -> None:
    """Classify image files and folders (searched recursively) with MODEL, or live frames
    from a camera (--camera) or a video file (--video).

    Unreadable files are reported by name on stderr and skipped. Exit code 0: all images
    classified; 5: some could not be read; 3: none could.

    Live: a window shows each face's (or the frame's) label, confidence and the FPS; q or
    Esc quits. A summary (frames processed and dropped, mean FPS) goes to stderr at the
    end. Exit code 0: the video ended or the user quit; 2: the camera cannot be opened;
    5: the camera stopped delivering frames mid-run; 8: --camera picam without picamera2.
    """
    live_options = {
        "--realtime": realtime, "--faces/--no-faces": faces is not None, "--face-model": face_model is not None,
        "--face-margin": face_margin is not None, "--headless": headless, "--save": save is not None,
        "--max-frames": max_frames is not None, "--camera-size": camera_size is not None,
    }
    if camera is not None or video is not None:
        if paths:
            raise click.UsageError("give image files/folders or a live source (--camera/--video), not both")
        margin = FACE_MARGIN if face_margin is None else face_margin
        if camera_size is not None and camera is None:
            raise click.UsageError("--camera-size sets the size of a --camera's frames; a --video has its own")
        live = LiveOptions(camera, video, realtime, faces, face_model, margin, headless, as_json, save, max_frames, camera_size)
        sys.exit(run_live_command(model, live, threads=threads))
    given = [name for name, used in live_options.items() if used]
    if given:
        raise click.UsageError(f"{', '.join(given)} only apply to live sources (--camera INDEX or --video FILE)")
    if not paths:
        raise click.UsageError("give image files or folders to classify, or a live source: --camera INDEX or --video FILE")

    # Imported here so that `gclf-infer --help` stays fast (no onnxruntime import).
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.files import expand_inputs

    files = expand_inputs(list(paths))
    if not files:
        click.echo("error: no image files found in " + ", ".join(map(str, paths)), err=True)
        sys.exit(EXIT_BAD_DATA)
    clf = Classifier(model, threads=threads or None)
    n_ok = n_failed = 0
    width = max(len(str(f)) for f in files)
    if not as_json:
        click.echo(f"{'image':<{width}}  {'label':<16} confidence")
    for result in clf.classify_files(files, batch_size=batch_size):
        if result.prediction is None:
            n_failed += 1
            click.echo(f"skipped: {result.error}", err=True)
            continue
        n_ok += 1
        pred = result.prediction
        if as_json:
            record = {
                "path": str(result.path),
                "label": pred.label,
                "confidence": round(pred.confidence, 6),
                "probabilities": {c: round(p, 6) for c, p in zip(clf.class_names, pred.probabilities)},
            }
            click.echo(json.dumps(record))
        else:
            click.echo(f"{str(result.path):<{width}}  {pred.label:<16} {pred.confidence:.3f}")
    click.echo(f"{n_ok} classified, {n_failed} skipped ({clf.metadata.variant} model {model.name})", err=True)
    if n_failed:
        sys.exit(EXIT_PARTIAL if n_ok else EXIT_BAD_DATA)


@dataclass(frozen=True)
class LiveOptions:
    camera: Camera | None
    video: Path | None
    realtime: bool
    faces: bool | None  # None: follow the model's metadata
    face_model: Path | None
    face_margin: float
    headless: bool
    as_json: bool
    save: Path | None
    max_frames: int | None
    camera_size: tuple[int, int] | None = None  # (width, height); None: the camera's default


def run_live_command(model: Path, opts: LiveOptions, *, threads: int) -> int:
    """`gclf-infer --camera/--video`: set up source, detector and sinks, run, summarise.

    Returns the exit code. Everything that can fail because of the user's input (model,
    face model, window, camera) is checked before the camera is opened.
    """
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.errors import EXIT_INTERRUPTED, EXIT_OK
    from gclf.runtime.faces import make_detector
    from gclf.runtime.live import JsonLinesSink, Sink, VideoFileSink, WindowSink, run_live, use_face_detection
    from gclf.runtime.video_sources import CaptureSource, FrameSource, PacedSource, open_camera, open_feed

    if opts.camera is not None and opts.video is not None:
        raise click.UsageError("give one live source: --camera or --video")
    if opts.realtime and opts.video is None:
        raise click.UsageError("--realtime paces a --video file; a camera is always real time")

    # No spinning: onnxruntime's idle threads would otherwise busy-wait on the cores that the
    # capture and preparation threads need (measured in docs/measurements.md: with face
    # detection 0.84x instead of 0.70x of the bare model rate, and a third of the latency).
    clf = Classifier(model, threads=threads or None, spin=False)
    with_faces = use_face_detection(clf.metadata.training, opts.faces, warn)
    if opts.face_model is not None and not with_faces:
        warn(f"--face-model is not used: {model.name} is run on whole frames (pass --faces to detect faces)")
    detector = make_detector(opts.face_model) if with_faces else None

    keep_every_frame = opts.video is not None and not opts.realtime
    sinks: list[Sink] = []
    source: FrameSource | None = None
    try:
        if opts.headless or opts.as_json:
            sinks.append(JsonLinesSink(sys.stdout))
        saver = VideoFileSink(opts.save, fps=None) if opts.save is not None else None
        if not opts.headless:
            sinks.append(WindowSink(f"gclf - {model.name}"))
        # Opened last: nothing above can leave a camera open when it fails.
        if opts.camera is not None:
            source = open_camera(opts.camera.kind, opts.camera.index, opts.camera_size)
        else:
            source = CaptureSource.video(opts.video)
        if opts.realtime:
            source = PacedSource(source)
    except BaseException:
        for item in [*sinks, *([source] if source is not None else [])]:
            item.close()
        raise
    if saver is not None:
        # Every frame kept: the file's own rate. Frames dropped: measured while running (fps None).
        saver.fps = source.fps if keep_every_frame else None
        sinks.append(saver)

    what = f"faces ({detector.name} detector)" if detector is not None else "whole frames"
    click.echo(f"live: {source.name}, classifying {what} with {model.name}" + ("" if opts.headless else "; q or Esc quits"), err=True)
    feed = open_feed(source, keep_every_frame=keep_every_frame)
    summary = run_live(feed, clf, detector=detector, sinks=sinks, margin=opts.face_margin, max_frames=opts.max_frames)

    click.echo(f"live: {summary.line()}", err=True)
    if opts.save is not None and summary.processed:
        click.echo(f"live: annotated video written to {opts.save}", err=True)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.failure is not None:
        click.echo(f"error: {summary.failure}", err=True)
        return summary.failure.exit_code
    return EXIT_OK


if __name__ == "__main__":
    main()
