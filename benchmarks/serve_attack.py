"""`--serve` and the decoders under attack: the figures behind docs/security.md and docs/live.md.

    python -m benchmarks.serve_attack [--connections 400] [--nofile 256] [--flood-s 8] [--rate 470] [--record]

Prints its figures and asserts nothing; "Done when" thresholds are shown beside them (`--record`
also writes them into benchmarks/results/: benchmarks.results). Needs the `train` extra (onnx)
for its generated model, and the `serve` extra. Everything is loopback.

1. Idle flood: `gclf-infer --video ... --realtime --headless --serve 127.0.0.1:0` runs in a
   child whose open-file limit (soft and hard) is `--nofile`: a generated 640x480 video played
   at `--video-fps` (a camera faster than most), with a small CNN (benchmarks/serve_bench.py's);
   frames the loop has no time for are dropped, so its frame rate shows the time it gets.
   After a baseline, `--connections` idle connections from 127.0.0.1 (each opened again as
   soon as the server closes it) are held for `--flood-s` seconds. Frame rates come from the
   JSON lines' timestamps (frames per second of wall time in each window); requests with the
   token are timed during the flood; console lines are the child's stderr lines.
2. Many-address flood: the same command (default open-file limit), a flooder opening about
   `--rate` connections a second from six loopback addresses (127.0.0.2-7), each sending one
   byte and holding it (tests/serve_testutil.SpeakingFlood). First a baseline with the same
   flooder aimed at a closed port, so the flooder's own CPU is in both frame rates; then the
   flood. In each window `--requests` requests with the token are made from 127.0.0.1 and
   counted (answered 200, or not).
3. Stalled viewers: 8 viewers with the token read /stream, then all stop reading at once;
   the time until a new viewer is let in (a slot freed), with default and with 8 MB receive
   buffers.
4. The 20000x20000 RGBA PNG (1.5 MB) beside an ordinary photo: exit code, the refusal, peak
   memory of gclf-infer (ru_maxrss); then every decoder bomb of benchmarks/decode_attack.py.
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
from benchmarks.decode_attack import run_bombs
from benchmarks.serve_bench import make_model, make_video

# The tests' attack helpers, so there is one of each (tests/ is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gclf_testutil import MEASURE_PEAK, build_tiny_onnx, rgba_png_of_zeros, solid_bgr, write_image_file  # noqa: E402
from serve_testutil import FLOOD_SOURCES, IdleFlood, SpeakingFlood, limit_open_files, port_of, start_served_run, timed_get  # noqa: E402

SUMMARY_AFTER_S = 11.0  # the server's first summary of refusals comes 10 s after the first one
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
        result["stalled"] = [stalled_viewers(port), stalled_viewers(port, rcvbuf=8 << 20)]
    finally:
        run.stop()
    result["console_lines"] = len(run.stderr_lines)
    result["token_on_console"] = TOKEN in "".join(run.stderr_lines)
    result["frames"] = len(lines.times)
    return result


def many_address_flood(model: Path, video: Path, rate: float, flood_s: float, baseline_s: float, requests: int) -> dict:
    """The loop's frame rate and the token holder's requests under a flood of one-byte
    connections from six addresses, against a baseline whose flooder hits a closed port."""
    run = start_served_run(
        [str(model), "--video", str(video), "--realtime", "--headless", "--serve", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        env={"GCLF_SERVE_TOKEN": TOKEN},
    )
    lines = Lines(run.proc.stdout)
    lines.start()
    port = port_of(run.url)
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result: dict = {}
    try:
        time.sleep(1.0)  # past start-up
        for phase, target, seconds in (("baseline", closed_port, baseline_s), ("flood", port, flood_s)):
            flood = SpeakingFlood(target, rate)
            flood.start()
            time.sleep(1.0)  # the flooder at full strength
            start, answers = time.time(), []
            opened_before = flood.opened + flood.failed
            for i in range(requests):
                answers.append(timed_get(port, "/latest", token=TOKEN))
                time.sleep(max(0.0, start + (i + 1) * seconds / requests - time.time()))
            end = time.time()
            attempts = flood.opened + flood.failed - opened_before
            if phase == "flood":  # the run goes on until its summary of refusals is due
                time.sleep(max(0.0, start + SUMMARY_AFTER_S - time.time()))
            result[phase] = {
                "fps": lines.fps(start, end),
                "ok": sum(status == 200 for status, _ in answers),
                "answers": len(answers),
                "max_s": max(t for _, t in answers),
                "rate": attempts / (end - start),
                "closed_by_server": flood.closed_by_server,
            }
            flood.stop()
        result["peak_rss_mb"] = peak_rss_mb(run.proc.pid)
    finally:
        run.stop()
    result["console_lines"] = len(run.stderr_lines)
    result["console"] = [line.rstrip() for line in run.stderr_lines]
    return result


def stalled_viewers(port: int, n: int = 8, rcvbuf: int | None = None) -> dict:
    """n viewers read for a moment, then stop reading: seconds until a new viewer gets in.
    `rcvbuf`: each viewer's receive buffer (SO_RCVBUF; the kernel may cap it at rmem_max)."""
    viewers: list[socket.socket] = []
    deadline = time.monotonic() + 30
    while len(viewers) < n:  # slots freed by an earlier round may take a moment to show
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET /stream?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        if sock.recv(12, socket.MSG_PEEK).split(b" ")[1:2] == [b"200"]:
            viewers.append(sock)
            continue
        sock.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(viewers)} of {n} viewers got in within 30 s")
        time.sleep(0.5)
    for sock in viewers:
        got = 0
        while got < 200_000:  # a few frames each: they are watching
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed a viewer before it stopped reading (did the video end?)")
            got += len(chunk)
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
    granted = viewers[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    for sock in viewers:
        sock.close()
    return {"slots_full_status": full, "stalled_freed_s": freed, "rcvbuf": granted}


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
@click.option("--video-s", type=click.FloatRange(min=20), default=75.0, show_default=True, help="Video length: it must outlast the run.")
@click.option("--rate", type=click.FloatRange(min=1), default=470.0, show_default=True, help="Many-address flood: connections a second.")
@click.option("--requests", type=click.IntRange(min=1), default=80, show_default=True, help="Requests with the token in each window of the many-address flood.")
@click.option("--decoder-alone", is_flag=True, help="Also decode each bomb without limits (up to 2.4 GB each).")
@click.option("--record", "save_record", is_flag=True, help=results.RECORD_HELP)
def main(
    connections: int, nofile: int, flood_s: float, baseline_s: float, video_fps: float, video_s: float, rate: float, requests: int, decoder_alone: bool, save_record: bool
) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # each section's figures as soon as they are measured
    load_start = results.load_average()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = make_model(tmp / "bench_cnn.onnx")
        video = make_video(tmp / "bench.avi", int(video_fps * video_s), fps=video_fps)
        r = flood(model, video, connections, nofile, flood_s, baseline_s)
        print_idle_flood(r, connections, nofile, flood_s, video_fps)
        m = many_address_flood(model, video, rate, flood_s, baseline_s, requests)
        print_many_address_flood(m, flood_s)
        b = png_bomb(tmp)
    print(f"PNG bomb: 20000x20000 RGBA in {b['file_mb']:.2f} MB beside one ordinary photo: exit {b['exit']}, "
          f"peak memory {b['peak_mb']:.0f} MB (done when <= 700 MB), {b['seconds']:.1f} s, other photo classified: {b['ok_classified']}")
    print(f"  {b['refusal']}")
    if save_record:
        results.record("benchmarks.serve_attack", "`--serve` and the decoders under attack", topic="hostile", table=record_table(r, m, b, connections, nofile, flood_s), conditions={
            "model": "serve_bench's generated CNN", "video": f"640x480 at {video_fps:.0f} FPS, --realtime (frames the loop has no time for are dropped)",
            "server": f"gclf-infer --video --realtime --headless --serve 127.0.0.1:0; open-file limit {nofile} for the idle flood, the default for the many-address flood",
            "many-address flood": f"{rate:.0f} one-byte connections a second from {FLOOD_SOURCES[0]}-{FLOOD_SOURCES[-1]}; its baseline: the same flooder against a closed port",
            "load": f"{load_start} at the start, {results.load_average()} at the end"})
    print("decoder bombs (benchmarks/decode_attack.py):")
    run_bombs(skip_decoder=not decoder_alone)


def record_table(r: dict, m: dict, b: dict, connections: int, nofile: int, flood_s: float) -> results.Table:
    times = [t for s, t in r["answers"] if s == 200]
    ok = len(times)
    kept = r["fps_flood"] / r["fps_before"] if r["fps_before"] else 0.0
    median = f"median {statistics.median(times):.3f} s, max {max(times):.3f} s" if times else "none answered"
    base, hit = m["baseline"], m["flood"]
    kept_many = hit["fps"] / base["fps"] if base["fps"] else 0.0
    rows = [
        [f"loop FPS before / during / after {connections} idle connections from one address ({r['attacker_reopened']:,} reopened in {flood_s:.0f} s)",
         f"{r['fps_before']:.1f} / {r['fps_flood']:.1f} / {r['fps_after']:.1f} ({kept:.0%} kept)", ">= 80%"],
        ["requests with the token during the idle flood", f"{ok}/{len(r['answers'])} answered 200; {median}", "within 3 s"],
        ["server's open file descriptors, at most", f"{r['server_fds_max']} of {nofile}", "below the limit"],
        [f"loop FPS, flooder at a closed port / {hit['rate']:.0f} one-byte connections a second from 6 addresses ({hit['closed_by_server']:,} closed by the server)",
         f"{base['fps']:.1f} / {hit['fps']:.1f} ({kept_many:.0%} kept)", ">= 80%"],
        ["requests with the token during the many-address flood", f"{hit['ok']}/{hit['answers']} answered 200 (baseline {base['ok']}/{base['answers']}), slowest {hit['max_s']:.2f} s", ">= 95%"],
        ["console lines, whole run (idle / many-address)", f"{r['console_lines']} / {m['console_lines']}", "< 100"],
        ["token on the console", r["token_on_console"], "never"],
    ]
    for stalled in r["stalled"]:
        freed = stalled["stalled_freed_s"]
        rows.append([f"8 viewers with the token stop reading, receive buffers {stalled['rcvbuf'] / 1e6:.1f} MB: a new viewer let in after",
                     f"{freed:.1f} s (a 9th got {stalled['slots_full_status']} before)" if freed is not None else "more than 60 s", "within 10 s"])
    rows.append([f"{b['file_mb']:.2f} MB PNG declaring 20000x20000 RGBA beside one photo",
                 f"exit {b['exit']}, the other photo classified: {'yes' if b['ok_classified'] else 'no'}; peak {b['peak_mb']:.0f} MB, {b['seconds']:.1f} s",
                 "<= 700 MB, exit 5"])
    return results.Table(["probe", "measured", "done when"], rows)


def print_idle_flood(r: dict, connections: int, nofile: int, flood_s: float, video_fps: float) -> None:
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
    for stalled in r["stalled"]:
        freed = stalled["stalled_freed_s"]
        print(f"stalled viewers, receive buffers {stalled['rcvbuf'] / 1e6:.1f} MB: 8 stop reading (a 9th got {stalled['slots_full_status']}); "
              "a new viewer let in after " + (f"{freed:.1f} s (done when <= 10 s)" if freed is not None else "more than 60 s"))


def print_many_address_flood(m: dict, flood_s: float) -> None:
    base, hit = m["baseline"], m["flood"]
    kept = hit["fps"] / base["fps"] if base["fps"] else 0.0
    print(f"many-address flood: about {hit['rate']:.0f} connections/s from {len(FLOOD_SOURCES)} addresses "
          f"({FLOOD_SOURCES[0]}-{FLOOD_SOURCES[-1]}), one byte each, {flood_s:.0f} s; default open-file limit")
    print(f"  loop FPS with the flooder at a closed port {base['fps']:.1f} ({base['rate']:.0f} attempts/s), "
          f"under the flood {hit['fps']:.1f} ({kept:.0%} kept; done when >= 80%)")
    print(f"  requests with the token: baseline {base['ok']}/{base['answers']}, under the flood {hit['ok']}/{hit['answers']} answered 200 "
          f"({hit['ok'] / hit['answers']:.0%}; done when >= 95%), slowest {hit['max_s']:.3f} s; the server closed {hit['closed_by_server']} of the flood's connections")
    print(f"  console: {m['console_lines']} lines for the whole run (done when < 100); server peak memory {m['peak_rss_mb']:.0f} MB")
    for line in m["console"]:
        print(f"    | {line}")

if __name__ == "__main__":
    main()
