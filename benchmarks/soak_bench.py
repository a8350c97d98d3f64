"""Soak: does gclf-infer's live loop with --serve run for hours without growing?

    python -m benchmarks.soak_bench [--model MODEL.onnx] [--minutes 60] [--interval 60]
        [--face-photo PHOTO --face-model YUNET.onnx] [--fps 15] [--record] [-- EXTRA GCLF-INFER OPTIONS]

Prints its figures and asserts nothing (tests/benchmarks/test_soak.py runs a short one and asserts);
`--record` also writes them into benchmarks/results/ (benchmarks.results).
`gclf-infer MODEL --camera picam --headless --serve 127.0.0.1:0` runs as its own process, as
systemd runs it, with a stand-in `picamera2` (put first on its PYTHONPATH) that delivers
640x480 frames at --fps: a colour gradient with a moving disc, or with --face-photo that
photo moving across the frame, so that with --faces the detector, tracker and crops run
too. Viewers connect to /stream and the page, read for a while and leave, every interval
(1 to 3 of them, in turn), as people looking in on a camera do. At the end of every
interval, once the viewers have gone, the process's resident memory (VmRSS), open files
(/proc/PID/fd) and threads are sampled, with the frame rate of the interval (counted from
the JSON lines).

The verdict: RSS drift in MB per hour (least-squares slope over the samples after the
first, which is the warm-up), open files and threads at the end against after warm-up,
and the frame rate's spread. Targets (issue 18): drift <= 5 MB/hour, no growth in files
or threads, a stable frame rate.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from benchmarks import results
from gclf.runtime.classifier import Classifier

STAND_IN_PICAMERA2 = '''
"""A stand-in picamera2 for the soak (benchmarks/soak_bench.py): paced 640x480 frames."""
import time

import cv2
import numpy as np

FPS = {fps}
FACE_PHOTO = {face_photo!r}


class _Job:
    def __init__(self, result):
        self.result = result

    def get_result(self, timeout=None):
        return self.result


class Picamera2:
    def __init__(self, camera_num=0):
        self.size = (640, 480)
        self.i = 0
        self.next_t = time.monotonic()
        self.face = None
        if FACE_PHOTO:
            face = cv2.imread(FACE_PHOTO)
            self.face = cv2.resize(face, (round(face.shape[1] * 220 / face.shape[0]), 220))

    @staticmethod
    def global_camera_info():
        return [{{"Model": "soak stand-in", "Id": "soak"}}]

    def create_video_configuration(self, main=None, **options):
        return {{"main": dict(main or {{}}), **options}}

    def configure(self, config):
        self.size = tuple(config["main"].get("size", self.size))

    def start(self):
        pass

    def capture_array(self, name="main", wait=None, signal_function=None):
        # wait=False (a job, for a capture with a timeout): the frame is ready at once.
        frame = self._frame()
        return _Job(frame) if wait is False else frame

    def _frame(self):
        self.next_t = max(self.next_t + 1 / FPS, time.monotonic())
        time.sleep(max(0.0, self.next_t - time.monotonic()))
        w, h = self.size
        ys, xs = np.mgrid[0:h, 0:w]
        frame = np.dstack([xs * 255 // w, ys * 255 // h, 128 + 0 * xs]).astype(np.uint8)
        self.i += 1
        if self.face is not None:
            fh, fw = self.face.shape[:2]
            x = (self.i * 3) % max(1, w - fw)
            frame[(h - fh) // 2 : (h - fh) // 2 + fh, x : x + fw] = self.face
        else:
            cv2.circle(frame, (40 + (self.i * 7) % (w - 80), h // 2), 60, (0, 0, 255), -1)
        return frame

    def wait(self, job, timeout=None):
        return job.get_result(timeout)

    def stop(self):
        pass

    def close(self):
        pass
'''


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the process started
    rss_kb: int
    open_files: int
    threads: int
    fps: float  # frames per second over the interval that ends here


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    viewer_sessions: int = 0
    viewer_bytes: int = 0
    exit_code: int | None = None
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def steady(self) -> list[Sample]:
        """The samples after the first: the first interval is the warm-up (lazy imports,
        onnxruntime's arena, the first viewer's encoder), not drift."""
        return self.samples[1:]

    def rss_drift_mb_per_hour(self) -> float:
        """Least-squares slope of RSS over the steady samples, in MB (10^6 bytes) per hour."""
        pts = self.steady
        if len(pts) < 2:
            return 0.0
        ts = [s.t_s for s in pts]
        rs = [s.rss_kb * 1024 / 1e6 for s in pts]
        t_mean, r_mean = statistics.fmean(ts), statistics.fmean(rs)
        var = sum((t - t_mean) ** 2 for t in ts)
        return sum((t - t_mean) * (r - r_mean) for t, r in zip(ts, rs)) / var * 3600 if var else 0.0

    def rss_ceiling_growth_mb(self) -> float:
        """Highest RSS in the second half of the steady samples minus the highest in the first
        half, in MB. glibc's allocator keeps RSS at one of two levels 15 MB apart, handing an
        arena back or not from one sample to the next (docs/measurements.md, the hour's soak),
        so first-against-last and the least-squares slope read that flip as growth. A leak
        raises the ceiling; the flip does not."""
        pts = self.steady
        if len(pts) < 2:
            return 0.0
        half = len(pts) // 2
        return (max(s.rss_kb for s in pts[half:]) - max(s.rss_kb for s in pts[:half])) * 1024 / 1e6

    def report(self) -> str:
        lines = [f"{'t (s)':>7} {'RSS (MB)':>9} {'files':>6} {'threads':>8} {'FPS':>6}"]
        for s in self.samples:
            lines.append(f"{s.t_s:7.0f} {s.rss_kb * 1024 / 1e6:9.1f} {s.open_files:6d} {s.threads:8d} {s.fps:6.1f}")
        steady = self.steady
        if steady:
            first, last = steady[0], steady[-1]
            fps = [s.fps for s in steady]
            lines += [
                f"viewer sessions: {self.viewer_sessions} ({self.viewer_bytes / 1e6:.0f} MB streamed)",
                f"RSS after warm-up {first.rss_kb * 1024 / 1e6:.1f} MB, at the end {last.rss_kb * 1024 / 1e6:.1f} MB, "
                f"max {max(s.rss_kb for s in steady) * 1024 / 1e6:.1f} MB; drift {self.rss_drift_mb_per_hour():+.1f} MB/hour (least squares); "
                f"ceiling {self.rss_ceiling_growth_mb():+.1f} MB (second half's highest against the first half's)",
                f"open files after warm-up {first.open_files}, at the end {last.open_files}, max {max(s.open_files for s in steady)}",
                f"threads after warm-up {first.threads}, at the end {last.threads}, max {max(s.threads for s in steady)}",
                f"frame rate per interval: min {min(fps):.1f}, median {statistics.median(fps):.1f}, max {max(fps):.1f} FPS",
            ]
        return "\n".join(lines)


def write_stand_in_camera(folder: Path, fps: float, face_photo: Path | None) -> Path:
    """A `picamera2` package in `folder` (put it first on PYTHONPATH); returns `folder`."""
    package = folder / "picamera2"
    package.mkdir(parents=True, exist_ok=True)
    source = STAND_IN_PICAMERA2.format(fps=float(fps), face_photo=str(face_photo) if face_photo else None)
    (package / "__init__.py").write_text(textwrap.dedent(source))
    return folder


def proc_sample(pid: int) -> tuple[int, int, int]:
    """(VmRSS in kB, open file descriptors, threads) of process `pid`, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def _view(url: str, seconds: float, stop: threading.Event) -> int:
    """One viewer: the page, then /stream for `seconds`; returns the bytes read."""
    m = re.match(r"http://([^:/]+):(\d+)/(\?.*)?$", url)
    host, port, query = m.group(1), int(m.group(2)), m.group(3) or ""
    total = 0
    for path, limit in (("/", 1.0), ("/stream", seconds)):
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(f"GET {path}{query} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            end = time.monotonic() + limit
            while time.monotonic() < end and not stop.is_set():
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                total += len(chunk)
    return total


def run_soak(
    model: Path,
    *,
    duration_s: float,
    interval_s: float,
    fps: float = 15.0,
    face_photo: Path | None = None,
    extra_args: tuple[str, ...] = (),
    workdir: Path,
    log=None,
) -> SoakResult:
    """Run gclf-infer with --serve on the stand-in camera for `duration_s`, sampling every `interval_s`.

    In each interval 1 to 3 viewers (in turn) watch for the first 40% of it and leave; the
    sample is taken at the interval's end, once they have gone. `log(line)` gets each
    sample's line as it is taken (None: quiet).
    """
    camera_dir = write_stand_in_camera(workdir / "stand_in", fps, face_photo)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(camera_dir), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    argv = [sys.executable, "-m", "gclf.runtime.cli", str(model), "--camera", "picam", "--camera-size", "640x480",
            "--headless", "--serve", "127.0.0.1:0", *extra_args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, bufsize=1)
    result = SoakResult()
    frames = 0
    url: list[str] = []
    url_seen = threading.Event()
    stop = threading.Event()

    def count_frames() -> None:
        nonlocal frames
        for _ in proc.stdout:
            frames += 1

    def read_stderr() -> None:
        for line in proc.stderr:
            result.stderr_tail = [*result.stderr_tail[-19:], line.rstrip()]
            found = re.search(r"watch at (http://\S+)", line)
            if found and not url:
                url.append(found.group(1))
                url_seen.set()

    readers = [threading.Thread(target=f, daemon=True) for f in (count_frames, read_stderr)]
    for t in readers:
        t.start()
    try:
        if not url_seen.wait(120):
            raise RuntimeError("gclf-infer did not start serving:\n" + "\n".join(result.stderr_tail))
        start = time.monotonic()
        n_intervals = max(2, round(duration_s / interval_s))
        for i in range(n_intervals):
            interval_start = time.monotonic()
            frames_before = frames
            n_viewers = 1 + i % 3
            watchers: list[threading.Thread] = []
            got: list[int] = []
            for _ in range(n_viewers):
                t = threading.Thread(target=lambda: got.append(_view(url[0], 0.4 * interval_s, stop)), daemon=True)
                t.start()
                watchers.append(t)
            for t in watchers:
                t.join(interval_s)
            result.viewer_sessions += n_viewers
            result.viewer_bytes += sum(got)
            time.sleep(max(0.0, interval_start + interval_s - time.monotonic()))
            if proc.poll() is not None:
                raise RuntimeError(f"gclf-infer ended early (exit {proc.returncode}):\n" + "\n".join(result.stderr_tail))
            rss, files, threads = proc_sample(proc.pid)
            sample = Sample(time.monotonic() - start, rss, files, threads, (frames - frames_before) / (time.monotonic() - interval_start))
            result.samples.append(sample)
            if log is not None:
                log(f"{sample.t_s:7.0f} s: RSS {rss * 1024 / 1e6:.1f} MB, {files} files, {threads} threads, {sample.fps:.1f} FPS")
    finally:
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in readers:
            t.join(5)
        result.exit_code = proc.returncode
    return result


def _default_model(folder: Path) -> Path:
    from benchmarks.serve_bench import make_model  # a small generated CNN (needs the train extra: onnx)

    return make_model(folder / "soak_cnn.onnx")


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="A gclf ONNX model (default: a small generated CNN).")
@click.option("--minutes", type=click.FloatRange(min=0.1), default=60.0, show_default=True)
@click.option("--interval", type=click.FloatRange(min=1.0), default=60.0, show_default=True, help="Seconds between samples (and viewer rounds).")
@click.option("--fps", type=click.FloatRange(min=1.0), default=15.0, show_default=True, help="The stand-in camera's frame rate.")
@click.option("--face-photo", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="Show this photo in the frames (with --faces).")
@click.option("--record", "save_record", is_flag=True, help=results.RECORD_HELP)
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def main(model: Path | None, minutes: float, interval: float, fps: float, face_photo: Path | None, save_record: bool, extra: tuple[str, ...]) -> None:
    load_start = results.load_average()
    conditions = results.model_conditions(model, Classifier(model).metadata) if model else {"model": "a small generated CNN (serve_bench's)"}
    with tempfile.TemporaryDirectory() as tmp:
        model = model or _default_model(Path(tmp))
        print(f"soak: {model.name} on a stand-in camera at {fps:g} FPS, {minutes:g} min, sampled every {interval:g} s; "
              f"gclf-infer options: --headless --serve 127.0.0.1:0 {' '.join(extra)}", file=sys.stderr, flush=True)
        print(f"soak: load average at the start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", file=sys.stderr, flush=True)
        result = run_soak(model, duration_s=minutes * 60, interval_s=interval, fps=fps, face_photo=face_photo,
                          extra_args=extra, workdir=Path(tmp), log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"soak: load average at the end {os.getloadavg()[0]:.2f}; gclf-infer exit code {result.exit_code}", file=sys.stderr)
    print(result.report())
    if save_record and result.steady:
        record_soak(result, minutes, {
            **conditions, "camera": f"stand-in picamera2, 640x480 at {fps:g} FPS" + (f", {face_photo.name} moving across" if face_photo else ""),
            "gclf-infer options": " ".join(["--headless", "--serve 127.0.0.1:0", *(results.local_path(e) for e in extra)]),
            "sampled": f"every {interval:g} s", "load": f"{load_start} at the start, {results.load_average()} at the end"})


def record_soak(result: SoakResult, minutes: float, conditions: dict) -> None:
    steady = result.steady
    first, last = steady[0], steady[-1]
    fps = [s.fps for s in steady]

    def mb(kb: int) -> str:
        return f"{kb * 1024 / 1e6:.1f}"

    results.record("benchmarks.soak_bench", f"{'An hour' if minutes == 60 else f'{minutes:g} minutes'} of `--serve` with viewers coming and going",
                   topic="serve", conditions=conditions, values={
                       "viewer sessions": result.viewer_sessions, "streamed (MB)": round(result.viewer_bytes / 1e6),
                       "RSS": f"{mb(first.rss_kb)} MB after warm-up, {mb(last.rss_kb)} at the end, {mb(max(s.rss_kb for s in steady))} at most",
                       "ceiling growth, second half against first (MB)": round(result.rss_ceiling_growth_mb(), 1),
                       "open files": f"{first.open_files} after warm-up, {last.open_files} at the end, {max(s.open_files for s in steady)} at most",
                       "threads": f"{first.threads} after warm-up, {last.threads} at the end, {max(s.threads for s in steady)} at most",
                       "FPS": f"median {statistics.median(fps):.1f}, {min(fps):.1f}-{max(fps):.1f}", "exit on SIGINT": result.exit_code})


if __name__ == "__main__":
    main()
