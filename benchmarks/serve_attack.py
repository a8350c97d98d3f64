"""`--serve` and the decoders under attack: the figures of issue 19's probes.

    python -m benchmarks.serve_attack [--connections 400] [--nofile 256] [--flood-s 8] [--record]

Prints its figures and asserts nothing; "Done when" thresholds are shown beside them (`--record`
also writes them into benchmarks/results/: benchmarks.results). Needs the
`train` extra (onnx) for its generated model, and the `serve` extra. Everything is loopback.

1. Idle flood: `gclf-infer --video ... --realtime --headless --serve 127.0.0.1:0` runs in a
   child whose open-file limit (soft and hard) is `--nofile`: a generated 640x480 video played
   at `--video-fps` (a camera faster than most), with a small CNN (benchmarks/serve_bench.py's);
   frames the loop has no time for are dropped, so its frame rate shows the time it gets.
   After a baseline, `--connections` idle connections from 127.0.0.1 (each opened again as
   soon as the server closes it) are held for `--flood-s` seconds. Frame rates come from the
   JSON lines' timestamps (frames per second of wall time in each window); requests with the
   token are timed during the flood; console lines are the child's stderr lines.
2. Stalled viewers: 8 viewers with the token read /stream, then all stop reading at once;
   the time until a new viewer is let in (a slot freed).
3. The 20000x20000 RGBA PNG (1.5 MB) beside an ordinary photo: exit code, the refusal, peak
   memory of gclf-infer (ru_maxrss).
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click

from benchmarks import results
from benchmarks.serve_bench import make_model, make_video

# The tests' attack helpers, so there is one of each (tests/ is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gclf_testutil import MEASURE_PEAK, build_tiny_onnx, rgba_png_of_zeros, solid_bgr, write_image_file  # noqa: E402
from serve_testutil import IdleFlood, limit_open_files, port_of, start_served_run, timed_get  # noqa: E402

TOKEN = "bench-Zq8vW3kLr5Tn0Yx2Hd7Pa"  # a good token (22+ characters, varied); given, so never printed


class Lines(threading.Thread):
    """Reads the child's JSON lines: the wall time of each processed frame."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.times: list[float] = []

    def run(self) -> None:
        for line in self.stream:
            try:
                self.times.append(json.loads(line)["timestamp"])
            except (ValueError, KeyError, TypeError):
                pass

    def fps(self, start: float, end: float) -> float:
        return sum(start <= t < end for t in self.times) / (end - start)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def peak_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def flood(model: Path, video: Path, connections: int, nofile: int, flood_s: float, baseline_s: float) -> dict:
    run = start_served_run(
        [str(model), "--video", str(video), "--realtime", "--headless", "--serve", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        env={"GCLF_SERVE_TOKEN": TOKEN},
        preexec_fn=limit_open_files(nofile),
    )
    lines = Lines(run.proc.stdout)
    lines.start()
    port = port_of(run.url)
    try:
        time.sleep(1.0)  # past start-up
        t0 = time.time()
        time.sleep(baseline_s)
        t1 = time.time()
        attack = IdleFlood(port, connections)
        attack.start()
        time.sleep(1.0)  # the flood at full strength
        t2 = time.time()
        answers, fds = [], []
        while time.time() < t2 + flood_s:
            answers.append(timed_get(port, "/latest", token=TOKEN))
            fds.append(open_fds(run.proc.pid))
            time.sleep(0.5)
        t3 = time.time()
        held, reopened = attack.held, attack.reopened
        attack.stop()
        time.sleep(1.0)
        t4 = time.time()
        time.sleep(baseline_s)
        t5 = time.time()
        result = {
            "fps_before": lines.fps(t0, t1),
            "fps_flood": lines.fps(t2, t3),
            "fps_after": lines.fps(t4, t5),
            "answers": answers,
            "server_fds_max": max(fds),
            "attacker_held": held,
            "attacker_reopened": reopened,
            "peak_rss_mb": peak_rss_mb(run.proc.pid),
        }
        result.update(stalled_viewers(port))
    finally:
        run.stop()
    result["console_lines"] = len(run.stderr_lines)
    result["token_on_console"] = TOKEN in "".join(run.stderr_lines)
    result["frames"] = len(lines.times)
    return result


def stalled_viewers(port: int, n: int = 8) -> dict:
    """n viewers read for a moment, then stop reading: seconds until a new viewer gets in."""
    viewers = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"GET /stream?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        viewers.append(sock)
    for sock in viewers:
        got = 0
        while got < 200_000:  # a few frames each: they are watching
            got += len(sock.recv(65536))
    full = timed_get(port, "/stream", token=TOKEN)[0]  # all 8 slots taken: 503
    stopped = time.monotonic()  # from now on nobody reads
    freed = None
    while time.monotonic() - stopped < 60:
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sendall(f"GET /stream?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status = conn.recv(64).split(b" ", 2)[1]
        conn.close()
        if status == b"200":
            freed = time.monotonic() - stopped
            break
        time.sleep(0.25)
    for sock in viewers:
        sock.close()
    return {"slots_full_status": full, "stalled_freed_s": freed}


def png_bomb(tmp: Path) -> dict:
    photos = tmp / "photos"
    photos.mkdir()
    bomb = rgba_png_of_zeros(photos / "bomb.png", 20000, 20000)
    write_image_file(photos / "ok.png", solid_bgr((0, 0, 255)))
    model = build_tiny_onnx(tmp / "tiny.onnx")
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", MEASURE_PEAK, sys.executable, "-m", "gclf.runtime.cli", str(model), str(photos)],
        capture_output=True, text=True, timeout=600,
    )
    *messages, peak = run.stderr.strip().splitlines()
    return {
        "file_mb": bomb.stat().st_size / 1e6,
        "exit": run.returncode,
        "refusal": next((m for m in messages if "bomb.png" in m), "(none)"),
        "peak_mb": int(peak) / 1e6,
        "seconds": time.monotonic() - start,
        "ok_classified": "ok.png" in run.stdout,
    }


@click.command()
@click.option("--connections", type=click.IntRange(min=1), default=400, show_default=True)
@click.option("--nofile", type=click.IntRange(min=64), default=256, show_default=True, help="The server's open-file limit (soft and hard).")
@click.option("--flood-s", type=click.FloatRange(min=1), default=8.0, show_default=True)
@click.option("--baseline-s", type=click.FloatRange(min=1), default=4.0, show_default=True)
@click.option("--video-fps", type=click.FloatRange(min=1), default=100.0, show_default=True)
@click.option("--video-s", type=click.FloatRange(min=20), default=45.0, show_default=True, help="Video length: it must outlast the run.")
@click.option("--record", "save_record", is_flag=True, help=results.RECORD_HELP)
def main(connections: int, nofile: int, flood_s: float, baseline_s: float, video_fps: float, video_s: float, save_record: bool) -> None:
    load_start = results.load_average()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = make_model(tmp / "bench_cnn.onnx")
        video = make_video(tmp / "bench.avi", int(video_fps * video_s), fps=video_fps)
        r = flood(model, video, connections, nofile, flood_s, baseline_s)
        b = png_bomb(tmp)
    ok = [s for s, _ in r["answers"] if s == 200]
    times = [t for s, t in r["answers"] if s == 200]
    kept = r["fps_flood"] / r["fps_before"] if r["fps_before"] else 0.0
    print(f"idle flood: {connections} connections from 127.0.0.1, server open-file limit {nofile}, {flood_s:.0f} s")
    print(f"  loop FPS before {r['fps_before']:.1f}, during {r['fps_flood']:.1f} ({kept:.0%} kept; done when >= 80%), after {r['fps_after']:.1f}")
    print(f"  requests with the token during the flood: {len(ok)}/{len(r['answers'])} answered 200, "
          f"median {statistics.median(times) if times else float('nan'):.3f} s, max {max(times) if times else float('nan'):.3f} s (done when <= 3 s)")
    print(f"  server's open descriptors at most {r['server_fds_max']} (limit {nofile}); the attacker held {r['attacker_held']} "
          f"(kernel-completed, most never accepted), reopened {r['attacker_reopened']} the server closed")
    print(f"  console: {r['console_lines']} lines for the whole run (done when < 100); token on the console: {r['token_on_console']}")
    print(f"  server peak memory {r['peak_rss_mb']:.0f} MB; {r['frames']} frames processed (video at {video_fps:.0f} FPS, --realtime)")
    freed = r["stalled_freed_s"]
    print(f"stalled viewers: 8 stop reading (a 9th got {r['slots_full_status']}); a new viewer let in after "
          + (f"{freed:.1f} s (README: within 10 s)" if freed is not None else "more than 60 s"))
    print(f"PNG bomb: 20000x20000 RGBA in {b['file_mb']:.2f} MB beside one ordinary photo: exit {b['exit']}, "
          f"peak memory {b['peak_mb']:.0f} MB (done when <= 700 MB), {b['seconds']:.1f} s, other photo classified: {b['ok_classified']}")
    print(f"  {b['refusal']}")
    if save_record:
        median = f"median {statistics.median(times):.3f} s, max {max(times):.3f} s" if times else "none answered"
        table = results.Table(["probe", "measured", "done when"], [
            [f"loop FPS before / during / after {connections} idle connections ({r['attacker_reopened']:,} reopened in {flood_s:.0f} s)",
             f"{r['fps_before']:.1f} / {r['fps_flood']:.1f} / {r['fps_after']:.1f} ({kept:.0%} kept)", ">= 80%"],
            ["requests with the token during the flood", f"{len(ok)}/{len(r['answers'])} answered 200; {median}", "within 3 s"],
            ["server's open file descriptors, at most", f"{r['server_fds_max']} of {nofile}", "below the limit"],
            ["console lines, whole run", r["console_lines"], "< 100"],
            ["token on the console", r["token_on_console"], "never"],
            ["8 viewers with the token stop reading: a new viewer let in after",
             f"{freed:.1f} s (a 9th got {r['slots_full_status']} before)" if freed is not None else "more than 60 s", "within 10 s"],
            [f"{b['file_mb']:.2f} MB PNG declaring 20000x20000 RGBA beside one photo",
             f"exit {b['exit']}, the other photo classified: {'yes' if b['ok_classified'] else 'no'}; peak {b['peak_mb']:.0f} MB, {b['seconds']:.1f} s",
             "<= 700 MB, exit 5"]])
        results.record("benchmarks.serve_attack", "`--serve` and the decoders under attack", topic="hostile", table=table, conditions={
            "model": "serve_bench's generated CNN", "video": f"640x480 at {video_fps:.0f} FPS, --realtime (frames the loop has no time for are dropped)",
            "server": f"gclf-infer --video --realtime --headless --serve 127.0.0.1:0, open-file limit {nofile}",
            "load": f"{load_start} at the start, {results.load_average()} at the end"})


if __name__ == "__main__":
    main()
