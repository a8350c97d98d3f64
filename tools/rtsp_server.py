#!/usr/bin/python3
"""A real RTSP server on this machine, for tests and benchmarks of network cameras.

    /usr/bin/python3 tools/rtsp_server.py --port 8554 --path /cam
    /usr/bin/python3 tools/rtsp_server.py --port 0 --frames FOLDER --auth user:secret

Serves a moving test picture (GStreamer's videotestsrc, the default), a folder of JPEG frames
played in a loop (`--frames`), or a video file decoded once into such frames (`--video`), as
H.264 (`--codec h264`, what IP cameras send; GStreamer's x264enc) or Motion JPEG over RTP
(`--codec mjpeg`), at rtsp://127.0.0.1:PORT/PATH, optionally behind a login (`--auth
user:password`, basic or `--auth-method digest`). When it listens it prints one line to stdout:

    rtsp-server: ready rtsp://127.0.0.1:PORT/PATH

(`--port 0` picks a free port; the line says which; a password is shown as ***.) It runs
until SIGTERM or SIGINT.

Run it with the system's python3, not a virtual environment's: it needs Debian's python3-gi
and gir1.2-gst-rtsp-server-1.0 (plus gstreamer1.0-plugins-base, -good and, for H.264, -ugly),
and python3-gi does not import into a venv's interpreter. `python tools/test_deps.py`
installs them. Standard library and GStreamer only.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path

PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
except (ImportError, ValueError) as exc:  # ValueError: gi without the GStreamer typelibs
    print(f"rtsp-server: GStreamer's RTSP server is not importable by {sys.executable} ({exc}); "
          f"Debian: apt-get install {PACKAGES}, or python tools/test_deps.py", file=sys.stderr)
    sys.exit(1)

# The elements each codec needs, beyond what every pipeline here uses; named in the error
# when one is missing (which Debian package brings it).
ELEMENTS = {
    "common": {"videotestsrc": "gstreamer1.0-plugins-base", "videoconvert": "gstreamer1.0-plugins-base",
               "videoscale": "gstreamer1.0-plugins-base", "videorate": "gstreamer1.0-plugins-base",
               "multifilesrc": "gstreamer1.0-plugins-good", "jpegdec": "gstreamer1.0-plugins-good"},
    "h264": {"x264enc": "gstreamer1.0-plugins-ugly", "rtph264pay": "gstreamer1.0-plugins-good"},
    "mjpeg": {"jpegenc": "gstreamer1.0-plugins-good", "rtpjpegpay": "gstreamer1.0-plugins-good"},
}
ROLE = "camera-user"


def missing_elements(codec: str) -> list[str]:
    """'element (package)' for each GStreamer element this codec needs and lacks."""
    wanted = {**ELEMENTS["common"], **ELEMENTS[codec]}
    return [f"{name} ({package})" for name, package in wanted.items() if Gst.ElementFactory.find(name) is None]


def extract_frames(video: Path, folder: Path) -> int:
    """Decode `video` once into numbered JPEG files in `folder` (looped later by multifilesrc,
    which restarts a sequence of files cleanly where a demuxer would need seeking); their count."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{video}" ! decodebin ! videoconvert ! jpegenc quality=90 '
        f'! multifilesink location="{folder}/%06d.jpg"'
    )
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if message is None or message.type == Gst.MessageType.ERROR:
        reason = message.parse_error()[0].message if message is not None else "timed out"
        raise SystemExit(f"rtsp-server: cannot decode {video}: {reason}")
    return len(list(folder.glob("*.jpg")))


def source_description(args: argparse.Namespace, frames: Path | None) -> str:
    width, height = args.size
    raw = f"video/x-raw,width={width},height={height},framerate={args.fps}/1"
    if frames is None:
        return f"videotestsrc is-live=true pattern={args.pattern} ! {raw}"
    # multifilesrc does not pace itself: identity sync=true plays the frames at the stated rate.
    return (
        f'multifilesrc location="{frames}/%06d.jpg" index=1 loop=true caps="image/jpeg,framerate={args.fps}/1" '
        f"! jpegdec ! videoconvert ! videoscale ! videorate ! {raw} ! identity sync=true"
    )


def encoder_description(codec: str, fps: int) -> str:
    if codec == "h264":
        # A key frame every second: a client that (re)connects shows pictures within a second.
        return (
            f"videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast "
            f"key-int-max={fps} bitrate=1500 ! rtph264pay name=pay0 pt=96 config-interval=1"
        )
    # RTP/JPEG carries 4:2:0 JPEG only (RFC 2435 types 0 and 1).
    return "videoconvert ! video/x-raw,format=I420 ! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26"


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a size as WIDTHxHEIGHT, not {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554, help="0: a free port (the ready line says which)")
    parser.add_argument("--path", default="/cam")
    picture = parser.add_mutually_exclusive_group()
    picture.add_argument("--frames", type=Path, help="a folder of JPEG files named 000001.jpg, 000002.jpg, ..., played in a loop")
    picture.add_argument("--video", type=Path, help="a video file GStreamer can decode, played in a loop")
    parser.add_argument("--pattern", default="ball", help="videotestsrc's pattern when no --frames/--video")
    parser.add_argument("--size", type=parse_size, default=(640, 480), help="WIDTHxHEIGHT served")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--codec", choices=("h264", "mjpeg"), default="h264")
    parser.add_argument("--auth", help="user:password: clients must log in with these")
    parser.add_argument("--check", action="store_true", help="only check that everything the server needs is installed (exit 0) or say what is missing (exit 1)")
    parser.add_argument("--auth-method", choices=("basic", "digest"), default="basic", help="how clients log in (cameras offer either)")
    args = parser.parse_args(argv)

    Gst.init(None)
    missing = sorted({name for codec in (("h264", "mjpeg") if args.check else (args.codec,)) for name in missing_elements(codec)})
    if missing:
        print(f"rtsp-server: GStreamer elements missing: {', '.join(missing)}; python tools/test_deps.py installs them", file=sys.stderr)
        return 1
    if args.check:
        print("rtsp-server: everything it needs is installed")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="gclf-rtsp-"))
    try:
        frames = args.frames
        if args.video is not None:
            frames = scratch
            if extract_frames(args.video, frames) == 0:
                print(f"rtsp-server: {args.video} has no frames", file=sys.stderr)
                return 1
        return serve(args, frames)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def serve(args: argparse.Namespace, frames: Path | None) -> int:
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( {source_description(args, frames)} ! {encoder_description(args.codec, args.fps)} )")
    # One pipeline for every client of this path (a benchmark's camera is encoded once).
    factory.set_shared(True)
    shown_user = ""
    if args.auth:
        user, _, password = args.auth.partition(":")
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", ROLE)
        if args.auth_method == "digest":
            auth.add_digest(user, password, token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        factory.add_role_from_structure(
            Gst.Structure.from_string(f"{ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0]
        )
        shown_user = f"{user}:***@"
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"rtsp-server: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"rtsp-server: ready rtsp://{shown_user}{args.host}:{server.get_bound_port()}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
