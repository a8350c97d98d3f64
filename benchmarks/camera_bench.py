"""Several network cameras on one device: N processes side by side, each reading its own RTSP camera.

    python -m benchmarks.camera_bench [--mode reader|infer] [--model M.int8.onnx]
        [--instances 1 --instances 2 --instances 4] [--seconds 30] [--warmup 10] [--fps 15] [--json OUT]

Prints its figures (a markdown table) and asserts nothing.

- **Clip.** 640x480 frames of people walking across a scene (benchmarks/track_bench.py's
  `make_people_clips`: real faces from ../shared/datasets/utkface-dev, framed by YuNet,
  pasted on generated backgrounds, JPEG-encoded as a camera would), written as JPEG files;
  without the dataset or the YuNet model, a generated clip of moving shapes, and the table
  says so.
- **Cameras.** One tools/rtsp_server.py per instance (GStreamer, run by the system's
  python3), each looping the clip as H.264 at `--fps` (a camera's rate), on loopback. The
  servers' CPU is reported apart: a real camera encodes on its own chip, not the device's.
- **Instances.** For each N in `--instances`, N processes started together, each on its own
  camera. `--mode reader`: a bare `NetworkSource` reading loop (network and H.264 decoding,
  no model): what a camera costs before any inference. `--mode infer`: `gclf-infer MODEL
  --camera rtsp://... --headless --json` with YuNet on every `--detect-every`-th frame
  (`instance_command`). After `--warmup` seconds, for `--seconds`: each instance's processed
  frames per second (its JSON lines) and its CPU time (/proc/PID/stat, all its threads), and
  the machine's whole CPU use (/proc/stat; other work on a shared machine counts there).
"""

from __future__ import annotations

import gclf.runtime  # noqa: F401  (first: it sets OpenCV's decoder limits, read when cv2 loads)

import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import cv2
import numpy as np

from benchmarks.common import FRAME_H, FRAME_W

REPO = Path(__file__).resolve().parents[1]
RTSP_SERVER = REPO / "tools" / "rtsp_server.py"
SYSTEM_PYTHON = os.environ.get("GCLF_SYSTEM_PYTHON", "/usr/bin/python3")
SHARED = REPO.parent / "shared"
PEOPLE_DATA = SHARED / "datasets" / "utkface-dev"
YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
TICKS = os.sysconf("SC_CLK_TCK")

# A bare reading loop: one JSON line per frame, as gclf-infer --json prints one per processed frame.
READER = """
import json, sys
from gclf.runtime.live.network import NetworkSource
source = NetworkSource(sys.argv[1])
index = 0
while (frame := source.read()) is not None:
    print(json.dumps({"frame": index}), flush=True)
    index += 1
"""


def instance_command(mode: str, url: str, model: Path | None, detect_every: int, threads: int) -> list[str]:
    """The command of one instance reading `url`."""
    if mode == "reader":
        return [sys.executable, "-c", READER, url]
    assert model is not None, "--mode infer needs --model"
    return [
        str(Path(sys.executable).with_name("gclf-infer")), str(model), "--camera", url, "--headless", "--json",
        "--face-model", str(YUNET) if YUNET.is_file() else "yunet", "--detect-every", str(detect_every), "--threads", str(threads),
    ]  # fmt: skip


# --- the clip --------------------------------------------------------------------------------


def write_people_clip(folder: Path, seed: int = 0) -> str:
    """JPEG frames 000001.jpg ... of people walking in `folder`; what they show, in words."""
    rng, nprng = random.Random(seed), np.random.default_rng(seed)
    if PEOPLE_DATA.is_dir() and YUNET.is_file():
        from benchmarks.common import load_photos
        from benchmarks.scene_bench import reference_box
        from benchmarks.track_bench import make_people_clips
        from gclf.runtime.decode import decode_image
        from gclf.runtime.faces import YuNetFaceDetector

        pool = load_photos([PEOPLE_DATA], set())
        rng.shuffle(pool)
        reference = YuNetFaceDetector(YUNET)
        chosen = []
        for photo in pool:
            if len(chosen) == 6:
                break
            bgr = cv2.cvtColor(decode_image(photo.path), cv2.COLOR_RGB2BGR)
            ref = reference_box(bgr, reference)
            if ref is not None:
                chosen.append((photo, bgr, ref))
        frames, _ = make_people_clips(chosen, pool, walkers=4, crossings=1, returns=0, rng=rng, nprng=nprng)
        what = f"{len(frames)} frames of people walking (faces from {PEOPLE_DATA.name})"
    else:
        frames = [_shapes_frame(t, nprng) for t in range(150)]
        what = f"{len(frames)} frames of moving shapes (no {PEOPLE_DATA} or YuNet model here: no faces)"
    for index, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return what


def _shapes_frame(t: int, nprng: np.random.Generator) -> np.ndarray:
    frame = np.full((FRAME_H, FRAME_W, 3), 110, dtype=np.uint8)
    x = int((t * 6) % (FRAME_W - 80))
    cv2.circle(frame, (x + 40, FRAME_H // 2), 40, (200, 180, 160), -1)
    noise = nprng.normal(0, 3, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


# --- processes ---------------------------------------------------------------------------------


def start_camera(frames: Path, fps: int) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [SYSTEM_PYTHON, str(RTSP_SERVER), "--port", "0", "--frames", str(frames), "--fps", str(fps), "--size", f"{FRAME_W}x{FRAME_H}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    line = server.stdout.readline().strip()
    if "rtsp-server: ready" not in line:
        server.kill()
        raise click.ClickException(f"the RTSP server did not start ({line or 'no output'}): python tools/test_deps.py installs it")
    return server, line.split("ready ", 1)[1]


@dataclass
class Instance:
    process: subprocess.Popen
    stamps: list[float] = field(default_factory=list)  # monotonic time of each frame line
    with_faces: list[bool] = field(default_factory=list)  # per frame line: a face was classified on it

    def start_counting(self) -> "Instance":
        def count() -> None:
            for line in self.process.stdout:
                if line.startswith("{"):
                    self.stamps.append(time.monotonic())
                    self.with_faces.append('"faces":[{' in line)

        threading.Thread(target=count, daemon=True).start()
        return self

    def frames_between(self, start: float, end: float) -> int:
        return sum(start <= t < end for t in list(self.stamps))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def measure(n: int, frames: Path, args: dict) -> dict:
    servers, instances = [], []
    try:
        for _ in range(n):
            servers.append(start_camera(frames, args["fps"]))
        for _, url in servers:
            command = instance_command(args["mode"], url, args["model"], args["detect_every"], args["threads"])
            instances.append(Instance(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)).start_counting())
        time.sleep(args["warmup"])
        start = time.monotonic()
        cpu0 = [cpu_seconds(i.process.pid) for i in instances]
        srv0 = sum(cpu_seconds(s.pid) for s, _ in servers)
        busy0, total0 = machine_busy()
        time.sleep(args["seconds"])
        end = time.monotonic()
        cpu1 = [cpu_seconds(i.process.pid) if i.process.poll() is None else math.nan for i in instances]
        srv1 = sum(cpu_seconds(s.pid) for s, _ in servers)
        busy1, total1 = machine_busy()
        span = end - start
        failed = [i.process.stderr.read().strip().splitlines()[-1:] for i in instances if i.process.poll() is not None]
        return {
            "instances": n,
            "fps": [round(i.frames_between(start, end) / span, 2) for i in instances],
            "face_share": round(sum(sum(i.with_faces) for i in instances) / max(1, sum(len(i.with_faces) for i in instances)), 3),
            "cpu_pct": [round(100 * (b - a) / span, 1) for a, b in zip(cpu0, cpu1)],
            "servers_cpu_pct": round(100 * (srv1 - srv0) / span, 1),
            "machine_busy_pct": round(100 * (busy1 - busy0) / (total1 - total0) * os.cpu_count(), 1),
            "failed": failed,
        }
    finally:
        for instance in instances:
            stop(instance.process)
        for server, _ in servers:
            stop(server)


@click.command()
@click.option("--mode", type=click.Choice(["reader", "infer"]), default="reader", show_default=True)
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--instances", "counts", type=click.IntRange(min=1), multiple=True, default=(1, 2, 4), show_default=True)
@click.option("--seconds", type=float, default=30.0, show_default=True)
@click.option("--warmup", type=float, default=10.0, show_default=True)
@click.option("--fps", type=int, default=15, show_default=True, help="The cameras' frame rate.")
@click.option("--detect-every", type=int, default=3, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime threads per instance.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(mode, model, counts, seconds, warmup, fps, detect_every, threads, json_out) -> None:
    if mode == "infer" and model is None:
        raise click.UsageError("--mode infer needs --model")
    args = {"mode": mode, "model": model, "seconds": seconds, "warmup": warmup, "fps": fps, "detect_every": detect_every, "threads": threads}
    scratch = Path(tempfile.mkdtemp(prefix="gclf-camera-bench-"))
    try:
        clip = write_people_clip(scratch)
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        print(f"{os.cpu_count()} CPU cores, load average at start {os.getloadavg()[0]:.2f}; commit {commit}; clip: {clip}, "
              f"served as H.264 {FRAME_W}x{FRAME_H} at {fps} fps; mode {mode}" + (f", model {model}, YuNet every {detect_every}" if mode == "infer" else ""))
        rows = [measure(n, scratch, args) for n in counts]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min)")
    print("\n| instances | FPS each | CPU each (% of a core) | instances' CPU | RTSP servers' CPU | machine busy (% of a core) | frames with a face |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        total = sum(c for c in row["cpu_pct"] if not math.isnan(c))
        print(f"| {row['instances']} | {', '.join(f'{f:.1f}' for f in row['fps'])} | {', '.join(f'{c:.0f}' for c in row['cpu_pct'])} "
              f"| {total:.0f}% | {row['servers_cpu_pct']:.0f}% | {row['machine_busy_pct']:.0f}% | {100 * row['face_share']:.0f}% |")
        for failure in row["failed"]:
            print(f"  an instance ended early: {' '.join(failure) or 'no message'}")
    if json_out is not None:
        json_out.write_text(json.dumps({"args": {k: str(v) for k, v in args.items()}, "clip": clip, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
