"""Fleet: several gclf-infer processes report to one MQTT broker, which goes away and comes
back mid-run, and one of them is killed. Does every person's event arrive?

    python -m benchmarks.fleet_bench [--cameras 4] [--people 30] [--outage 20] [--fps 15]

Prints its figures and asserts nothing (tests/benchmarks/test_fleet.py runs a short one and
asserts). Needs Debian's `mosquitto` and `prometheus` (python tools/test_deps.py installs
them), the `mqtt` and `serve` extras, and the `train` extra (onnx) for its generated model.
Everything is loopback.

The fleet: a real Mosquitto on a free port, with a password file and persistence, as a house
runs one; `--cameras` processes of `gclf-infer MODEL --video CLIP --realtime --headless
--events --jsonl FILE --mqtt mqtt://gclf@... --name cam-N`, each on a generated video of
`--people` known people walking through one after another (a textured square per person,
whose colour is what the tiny model answers; played at its frame rate, as a camera, frames
the loop has no time for dropped); the first two also with `--serve`, scraped by a real
Prometheus. A subscriber of the house (a persistent session, QoS 1) collects every message.
The detector is a stand-in that finds the squares exactly (the launcher below puts it in
place of the face detector): what is measured is the delivery, not the detection.

The run: once every camera has delivered an event, the broker is stopped (SIGTERM; it saves
its state) for `--outage` seconds and started again; the cameras keep their events on disk
meanwhile and deliver them when they reconnect (paho's back-off: 1, 2, 4, ... s between
tries). Once the last camera has reconnected and delivered its next event, it is killed with
SIGKILL, mid-visit; the broker publishes its last will, `offline`.

What is checked (the test asserts it; the bench prints it): every event each process wrote
to its --jsonl file arrives, at least once, with a unique id; deduplicated by id (QoS 1 is
at least once: a message whose acknowledgement was lost with the connection comes again),
each camera's events arrive in the order they were written; the people are the clip's, one
event each, with their labels; the killed camera's `offline` comes within 1.5 keepalives; the
counts each surviving camera retained add up to its events, and over the fleet; nothing was
dropped (the queue's cap is far above an outage's events). Figures: messages per second,
delivery latency (median, max; from the event's `queued_at` to its arrival, the same clock),
the backlog's delivery rate after the restart, CPU per process, the load average.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click
import cv2
import numpy as np

# The tests' broker and subscriber, and the tiny model, so there is one of each (tests/ is not a package).
TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
from gclf_testutil import FACES_MODEL, build_tiny_onnx, find_program  # noqa: E402
from mosquitto_testutil import Message, MosquittoBroker, Subscriber, free_port  # noqa: E402

GCLF_USER, GCLF_PASSWORD = "gclf", "fleet-gclf-Xw3q9LmT2v"
HOUSE_USER, HOUSE_PASSWORD = "house", "fleet-house-Pk7Rz1Nd"
SERVE_TOKEN = "fleet-Bq4xN8vR2kLm7Zp0Tw3y"
KEEPALIVE_S = 30  # the publisher's (settings.DEFAULT_KEEPALIVE_S): a silent camera is offline after 1.5 of these
# Frame and person size, pixels. A big person crossing slowly keeps its one track through a
# stall of more than half a second (frames dropped while the CPU is taken), as on a busy Pi.
W, H, SIDE = 320, 240, 96
COLOURS = ("red", "blue")  # the tiny model's classes: a person's texture is dominated by one

# Runs gclf-infer's own command with the stand-in detector in place of the face detector.
LAUNCHER = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import gclf.runtime.faces.detectors as detectors
from gclf_testutil import SquareDetector
detectors.make_detector = lambda face_model: SquareDetector()
from gclf.runtime.cli.infer import main
main(prog_name="gclf-infer")
"""


# --- the clips ------------------------------------------------------------------------------


def _texture(label: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = rng.integers(110, 200, (12, 12, 3), dtype=np.uint8)
    tex[..., 2 if label == "red" else 0] = 250  # BGR: the person's colour dominates
    return cv2.resize(tex, (SIDE, SIDE), interpolation=cv2.INTER_NEAREST)


def people_clip(path: Path, labels: list[str], *, fps: float, walk_s: float, gap_s: float) -> Path:
    """People walking from the left edge to the right one, one after another, with `gap_s` of
    empty frames between; person k is `labels[k]` (its texture's dominant colour)."""
    walk, gap = max(2, round(walk_s * fps)), round(gap_s * fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    empty = np.full((H, W, 3), 20, dtype=np.uint8)
    for k, label in enumerate(labels):
        texture = _texture(label, k)
        for t in range(walk):
            frame = empty.copy()
            x, y = round(t * (W - SIDE) / (walk - 1)), 20 + 50 * (k % 3)
            frame[y : y + SIDE, x : x + SIDE] = texture
            writer.write(frame)
        for _ in range(gap):
            writer.write(empty)
    writer.release()
    return path


def clip_labels(camera: int, people: int) -> list[str]:
    """The labels of a camera's people: a different mix per camera, known in advance."""
    rng = np.random.default_rng(1000 + camera)
    return [COLOURS[int(i)] for i in rng.integers(0, 2, people)]


# --- Prometheus ---------------------------------------------------------------------------


class Prometheus:
    """Debian's `prometheus` on a free loopback port, scraping `targets`' /metrics every
    second with the token (Authorization: Bearer), its data in `folder`."""

    def __init__(self, folder: Path, targets: list[str], token: str) -> None:
        program = find_program("prometheus")
        if program is None:
            raise RuntimeError("prometheus is not installed: python tools/test_deps.py installs it (Debian: apt-get install prometheus)")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "token").write_text(token)
        (folder / "token").chmod(0o600)
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: gclf\n"
            f"    authorization:\n      type: Bearer\n      credentials_file: {folder / 'token'}\n"
            f"    static_configs:\n      - targets: {json.dumps(targets)}\n"
        )
        self.port = free_port()
        self.log = folder / "prometheus.log"
        with open(self.log, "wb") as log:
            self._process = subprocess.Popen(
                [program, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return resp.status, resp.read()
        except OSError:
            return 0, b""

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._get("/-/ready")[0] != 200:
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def query(self, expr: str) -> dict[str, float]:
        """Instance -> value of an instant PromQL query."""
        status, body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if status != 200:
            return {}
        return {r["metric"].get("instance", ""): float(r["value"][1]) for r in json.loads(body)["data"]["result"]}

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


# --- the fleet ------------------------------------------------------------------------------


@dataclass
class Camera:
    name: str
    labels: list[str]  # its clip's people, in order
    clip: Path
    jsonl: Path
    log: Path
    serve_port: int | None
    process: subprocess.Popen | None = None
    exit_code: int | None = None
    cpu_s: float = 0.0  # user + system seconds of the process
    wall_s: float = 0.0
    killed_at: float | None = None  # time.time() of the SIGKILL

    def written_events(self) -> list[dict[str, Any]]:
        """The track events the process wrote to its --jsonl file (what it saw)."""
        if not self.jsonl.exists():
            return []
        text = self.jsonl.read_text()
        whole = text[: text.rfind("\n") + 1]  # a line being written as this reads is left for the next look
        return [e for e in map(json.loads, whole.splitlines()) if e.get("event") == "track"]

    def stderr_tail(self, n: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


# The fields of an event that the process wrote and the broker carried alike.
EVENT_FIELDS = ("track", "label", "first_seen", "last_seen", "frames")


def event_key(event: dict[str, Any]) -> tuple:
    return tuple(event[k] for k in EVENT_FIELDS)


@dataclass
class FleetResult:
    cameras: list[Camera]
    victim: str
    messages: list[Message]
    outage: tuple[float, float]  # time.time() of the broker's stop and start
    started: float
    ended: float
    broker_cpu_s: float
    load: tuple[float, float]  # the 1-minute load average at the start and the end
    metrics_text: bytes = b""  # one serving camera's /metrics, mid-run
    healthz: tuple[int, bytes] = (0, b"")
    prometheus: dict[str, float] = field(default_factory=dict)  # instance -> gclf_frames_processed_total
    notes: list[str] = field(default_factory=list)

    # --- what arrived ---

    def on(self, topic: str) -> list[Message]:
        return [m for m in self.messages if m.topic == topic]

    def arrived_events(self, camera: str) -> list[tuple[dict[str, Any], float]]:
        """Every event message of `camera` as it arrived (duplicates included), with its time."""
        return [(m.json(), m.at) for m in self.on(f"gclf/{camera}/event")]

    def unique_events(self, camera: str) -> list[tuple[dict[str, Any], float]]:
        """Deduplicated by id, the first copy kept (what a consumer does), in arrival order."""
        seen: set[str] = set()
        out = []
        for event, at in self.arrived_events(camera):
            if event["id"] not in seen:
                seen.add(event["id"])
                out.append((event, at))
        return out

    def duplicates(self) -> int:
        return sum(len(self.arrived_events(c.name)) - len(self.unique_events(c.name)) for c in self.cameras)

    def last_json(self, topic: str) -> dict[str, Any] | None:
        found = self.on(topic)
        return found[-1].json() if found else None

    def offline_after_kill_s(self) -> float | None:
        victim = next(c for c in self.cameras if c.name == self.victim)
        after = [m.at for m in self.on(f"gclf/{self.victim}/status") if m.payload == b"offline" and victim.killed_at and m.at >= victim.killed_at]
        return after[0] - victim.killed_at if after and victim.killed_at else None

    def reconnected_at(self, camera: str) -> float:
        """When `camera` was back after the restart: its first live (not retained) `online`."""
        back = [m.at for m in self.on(f"gclf/{camera}/status") if m.payload == b"online" and not m.retain and m.at >= self.outage[1]]
        return back[0] if back else self.ended

    def _waited(self, camera: str, event: dict[str, Any]) -> bool:
        """Whether the event was queued while its camera had no broker (stopped, or not yet
        reconnected: paho waits 1, 2, 4, ... s between tries)."""
        return self.outage[0] <= event["queued_at"] <= self.reconnected_at(camera)

    def latencies(self, waited: bool | None = None) -> list[float]:
        """Arrival minus queued_at of each event's first copy; `waited`: only the events queued
        while their camera had no broker (True), or only the others (False)."""
        return [at - e["queued_at"] for c in self.cameras for e, at in self.unique_events(c.name)
                if waited is None or self._waited(c.name, e) == waited]

    def backlog_rate(self) -> tuple[int, float | None]:
        """(events that waited for the broker, delivered per second once their cameras were back)."""
        arrivals = sorted(at for c in self.cameras for e, at in self.unique_events(c.name) if self._waited(c.name, e))
        if len(arrivals) < 2 or arrivals[-1] <= arrivals[0]:
            return len(arrivals), None
        return len(arrivals), (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    def report(self) -> str:
        wall = self.ended - self.started
        stop, start = self.outage
        lines = [f"fleet: {len(self.cameras)} gclf-infer processes, {sum(len(c.labels) for c in self.cameras)} people in their clips, "
                 f"{wall:.0f} s; broker away {start - stop:.1f} s; {self.victim} killed (SIGKILL)"]
        for c in self.cameras:
            unique = self.unique_events(c.name)
            counts = self.last_json(f"gclf/{c.name}/counts") or {}
            total = sum((counts.get("total") or {}).values())
            lines.append(
                f"  {c.name}: exit {c.exit_code}, {len(c.labels)} people in the clip, {len(c.written_events())} events written, "
                f"{len(unique)} delivered ({len(self.arrived_events(c.name)) - len(unique)} duplicates), counts total {total}, "
                f"CPU {c.cpu_s:.1f} s over {c.wall_s:.0f} s ({100 * c.cpu_s / max(c.wall_s, 1e-9):.0f}% of a core)"
            )
        lat, connected, waited = self.latencies(), self.latencies(False), self.latencies(True)
        med = lambda xs: f"{1000 * statistics.median(xs):.0f} ms" if xs else "-"  # noqa: E731
        top = lambda xs: f"{1000 * max(xs):.0f} ms" if xs else "-"  # noqa: E731
        lines.append(f"  delivery latency: median {med(lat)}, max {top(lat)}; connected: median {med(connected)}, max {top(connected)} "
                     f"({len(connected)} events); waited for the broker: median {med(waited)}, max {top(waited)} ({len(waited)} events)")
        back = ", ".join(f"{c.name} {self.reconnected_at(c.name) - stop:.1f} s" for c in self.cameras)
        n_backlog, rate = self.backlog_rate()
        lines.append(f"  back after the broker's stop: {back}; the {n_backlog} waiting events delivered" + (f" at {rate:.0f} events/s" if rate else ""))
        lines.append(f"  messages: {len(self.messages)} received in {wall:.0f} s ({len(self.messages) / wall:.1f}/s over the run), "
                     f"{sum(len(self.arrived_events(c.name)) for c in self.cameras)} of them events; {self.duplicates()} duplicate events dropped by id")
        offline = self.offline_after_kill_s()
        lines.append(f"  {self.victim}'s offline: {'not seen' if offline is None else f'{offline:.2f} s after the kill'} "
                     f"(1.5 keepalives = {1.5 * KEEPALIVE_S:.0f} s)")
        lines.append(f"  broker (mosquitto) CPU {self.broker_cpu_s:.2f} s; load average {self.load[0]:.2f} at the start, {self.load[1]:.2f} at the end")
        if self.prometheus:
            lines.append("  prometheus: gclf_frames_processed_total " + ", ".join(f"{k} = {v:.0f}" for k, v in sorted(self.prometheus.items())))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reap(camera: Camera, started: float, timeout_s: float) -> None:
    """Wait for the process (os.wait4: its CPU time comes with it)."""
    proc = camera.process
    assert proc is not None
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = camera.exit_code = os.waitstatus_to_exitcode(status)
    camera.cpu_s = usage.ru_utime + usage.ru_stime
    camera.wall_s = time.time() - started


def _wait(condition: Callable[[], bool], timeout_s: float, what: str, *, meanwhile: Callable[[], None] = lambda: None) -> None:
    """Until `condition()`, calling `meanwhile()` at each look (it raises to give up early)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        meanwhile()
        if time.monotonic() > deadline:
            raise TimeoutError(f"fleet: {what} within {timeout_s:g} s")
        time.sleep(0.05)


def _http_get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def run_fleet(
    workdir: Path,
    *,
    cameras: int = 4,
    people: int = 8,
    fps: float = 15.0,
    walk_s: float = 2.5,
    gap_s: float = 0.4,
    outage_s: float = 3.0,
    serving: int = 2,
    prometheus: bool = True,
    log: Callable[[str], None] | None = None,
) -> FleetResult:
    """Run the fleet (module docstring) in `workdir`; `log(line)` follows its steps (None: quiet)."""
    say = log or (lambda line: None)
    workdir.mkdir(parents=True, exist_ok=True)
    model = build_tiny_onnx(workdir / "faces.onnx", class_names=COLOURS, props_update=FACES_MODEL)
    fleet = []
    for i in range(cameras):
        labels = clip_labels(i, people)
        fleet.append(Camera(f"cam-{i + 1}", labels, people_clip(workdir / f"cam-{i + 1}.avi", labels, fps=fps, walk_s=walk_s, gap_s=gap_s),
                            workdir / f"cam-{i + 1}.jsonl", workdir / f"cam-{i + 1}.log", free_port() if i < serving else None))
    victim = fleet[-1]
    broker = MosquittoBroker(workdir / "broker", {GCLF_USER: GCLF_PASSWORD, HOUSE_USER: HOUSE_PASSWORD})
    house = Subscriber(broker, HOUSE_USER, HOUSE_PASSWORD, topics=("gclf/#",), client_id="fleet-house")
    scraper = Prometheus(workdir / "prometheus", [f"127.0.0.1:{c.serve_port}" for c in fleet if c.serve_port], SERVE_TOKEN) if prometheus and serving else None
    env = {**os.environ, "GCLF_MQTT_PASSWORD": GCLF_PASSWORD, "GCLF_SERVE_TOKEN": SERVE_TOKEN, "STATE_DIRECTORY": str(workdir / "state")}
    env.pop("GCLF_CAMERA_NAME", None)
    load_start = os.getloadavg()[0]
    broker_cpu = 0.0
    started = time.time()
    result: FleetResult | None = None
    try:
        for c in fleet:
            argv = [sys.executable, "-c", LAUNCHER, str(model), "--video", str(c.clip), "--realtime", "--headless", "--events",
                    "--jsonl", str(c.jsonl), "--summary-every", "2", "--detect-every", "1", "--face-model", "haar",
                    "--name", c.name, "--mqtt", f"mqtt://{GCLF_USER}@{broker.host}:{broker.port}"]
            if c.serve_port:
                argv += ["--serve", f"127.0.0.1:{c.serve_port}"]
            with open(c.log, "wb") as out:
                c.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        say(f"fleet: {cameras} gclf-infer processes started, {people} people each, broker on port {broker.port}")

        def online(c: Camera, since: float = 0.0) -> bool:
            return any(m.payload == b"online" and not m.retain and m.at >= since for m in house.on(f"gclf/{c.name}/status"))

        def delivered(c: Camera) -> int:
            return len({m.json()["id"] for m in house.on(f"gclf/{c.name}/event")})

        def alive() -> None:
            for c in fleet:
                # WNOWAIT: looked at, not reaped (_reap takes its CPU time with it later).
                if c.process is not None and os.waitid(os.P_PID, c.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    raise RuntimeError(f"fleet: {c.name} ended early:\n{c.stderr_tail()}")

        _wait(lambda: all(online(c) for c in fleet), 120, "every camera online", meanwhile=alive)
        say("fleet: every camera online")
        _wait(lambda: all(delivered(c) >= 1 for c in fleet), 60 + 3 * walk_s, "an event from every camera", meanwhile=alive)
        metrics_text, healthz, scraped = b"", (0, b""), {}
        if serving:
            port = fleet[0].serve_port
            assert port is not None
            metrics_text = _http_get(port, "/metrics", SERVE_TOKEN)[1]
            healthz = _http_get(port, "/healthz")
        if scraper is not None:
            scraper.wait_ready()
            expr = "gclf_frames_processed_total"
            _wait(lambda: len(scraper.query(expr)) == serving, 30, "Prometheus scraping every serving camera")
            scraped = scraper.query(expr)
            say(f"fleet: prometheus: {expr} = {scraped}")

        broker_cpu += _proc_cpu_s(broker.pid)
        broker.stop()
        stopped_at = time.time()
        say(f"fleet: broker stopped for {outage_s:g} s")
        time.sleep(max(0.0, stopped_at + outage_s - time.time()))
        broker.start()
        restarted_at = time.time()
        say("fleet: broker started again")

        # The victim: back online, then once it has delivered a further event (someone just
        # left: the next person is mid-visit and nothing is in transit), killed.
        _wait(lambda: online(victim, restarted_at), 60, f"{victim.name} back online", meanwhile=alive)
        written = len(victim.written_events())
        _wait(lambda: len(victim.written_events()) > written, 30 + 3 * (walk_s + gap_s), f"a further event from {victim.name}", meanwhile=alive)
        _wait(lambda: delivered(victim) >= len(victim.written_events()), 30, f"{victim.name}'s events delivered")
        assert victim.process is not None
        victim.process.send_signal(signal.SIGKILL)
        victim.killed_at = time.time()
        say(f"fleet: {victim.name} killed")
        _reap(victim, started, 10)

        clip_s = people * (walk_s + gap_s)
        for c in fleet[:-1]:
            _reap(c, started, clip_s + 120)
        say("fleet: every other camera ended its clip")
        # Everything each process wrote down arrives (the last ones as it closed).
        _wait(lambda: all(delivered(c) >= len(c.written_events()) for c in fleet), 30, "every written event delivered")
        _wait(lambda: any(m.payload == b"offline" and m.at >= (victim.killed_at or 0) for m in house.on(f"gclf/{victim.name}/status")),
              1.5 * KEEPALIVE_S + 10, f"{victim.name}'s offline")
        time.sleep(0.5)  # the last retained counts and queue states
        broker_cpu += _proc_cpu_s(broker.pid)
        result = FleetResult(fleet, victim.name, list(house.messages), (stopped_at, restarted_at), started, time.time(), broker_cpu,
                             (load_start, os.getloadavg()[0]), metrics_text, healthz, scraped)
        return result
    finally:
        for c in fleet:
            if c.process is not None and c.process.poll() is None:
                c.process.kill()
                c.process.wait()
        house.close()
        if scraper is not None:
            scraper.stop()
        broker.stop()


@click.command()
@click.option("--cameras", type=click.IntRange(min=2), default=4, show_default=True, help="gclf-infer processes.")
@click.option("--people", type=click.IntRange(min=4), default=30, show_default=True, help="People in each camera's clip (one after another).")
@click.option("--outage", type=click.FloatRange(min=1), default=20.0, show_default=True, help="Seconds the broker is away.")
@click.option("--fps", type=click.FloatRange(min=5), default=15.0, show_default=True, help="The clips' frame rate (played in real time).")
@click.option("--walk", type=click.FloatRange(min=1), default=2.5, show_default=True, help="Seconds each person takes to cross the frame.")
def main(cameras: int, people: int, outage: float, fps: float, walk: float) -> None:
    with tempfile.TemporaryDirectory(prefix="gclf-fleet-") as tmp:
        result = run_fleet(Path(tmp), cameras=cameras, people=people, fps=fps, walk_s=walk, outage_s=outage,
                           log=lambda line: print(line, file=sys.stderr, flush=True))
        print(result.report())  # here: it reads the processes' --jsonl files
        written = {c.name: [event_key(e) for e in c.written_events()] for c in result.cameras}
        delivered = {c.name: {event_key(e) for e, _ in result.unique_events(c.name)} for c in result.cameras}
    lost = sum(1 for name, keys in written.items() for key in keys if key not in delivered[name])
    in_order = all([event_key(e) for e, _ in result.unique_events(name)] == keys for name, keys in written.items())
    print(f"fleet: events written {sum(map(len, written.values()))}, lost {lost}, each camera's in order: {'yes' if in_order else 'NO'}; "
          f"CPU: {_cpu_name()}, {os.cpu_count()} logical cores")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
