"""Does serving slow the model? Live-loop FPS with --serve and 0, 1 or 3 viewers, against --headless alone.

    python -m benchmarks.serve_bench [--model MODEL.onnx] [--frames 300] [--rounds 3] [--record]

Prints its figures and asserts nothing (`--record` also writes them into benchmarks/results/). A generated 640x480 video (moving shapes, MJPG) is
run through the live loop, every frame in order, as `gclf-infer --video ... --headless`
does (JSON lines, here to /dev/null); then the same with a `WebSink` (what --serve adds)
and 0, 1 and 3 viewers reading /stream as fast as they can. The viewers run in another
process, as a browser on another machine would: they cost this process nothing but the
server's work. Rounds are interleaved (headless, 0, 1, 3, headless, ...) so that a change
in the machine's load hits every configuration alike; the median of the rounds is shown.

Without --model a small generated convolutional network (four 3x3 convolutions at 224x224,
a few ms per frame) is used, so the model, not the video decoding, is the bottleneck, as
with a real model on a Pi. Needs the `train` extra for that (onnx), and the `serve` extra.
"""

from __future__ import annotations

import socket
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import cv2
import numpy as np

from benchmarks import results
from benchmarks.common import FRAME_H, FRAME_W, write_video
from gclf.runtime.classifier import Classifier
from gclf.runtime.live.annotate import annotate
from gclf.runtime.live.loop import run_live
from gclf.runtime.live.sinks import JsonLinesSink
from gclf.runtime.serve import LOOPBACK, ModelInfo, ServeAddress, WebSink
from gclf.runtime.live.sources import CaptureSource, open_feed

CONFIGS = ("headless", "serve, 0 viewers", "serve, 1 viewer", "serve, 3 viewers")
JPEG_BYTES = 0.0  # mean size of a streamed frame, as the viewers saw it
VIEWERS = {"serve, 0 viewers": 0, "serve, 1 viewer": 1, "serve, 3 viewers": 3}
TOKEN = "bench-Vb6yQ1mNs4Rt8Wk0Jc3Ex"  # every address needs one (docs/live.md)


def make_video(path: Path, n_frames: int, fps: float = 30.0) -> Path:
    # A smooth scene, as a camera sees one (noise would make every JPEG several times larger).
    ys, xs = np.mgrid[0:FRAME_H, 0:FRAME_W]
    background = np.dstack([xs * 255 // FRAME_W, ys * 255 // FRAME_H, 128 + 0 * xs]).astype(np.uint8)
    cv2.putText(background, "gclf serve bench", (40, 420), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)

    def frames():
        for i in range(n_frames):
            frame = background.copy()
            cv2.circle(frame, (40 + (i * 7) % 560, 240), 60, (0, 0, 255), -1)
            cv2.rectangle(frame, (300, 40 + (i * 5) % 380), (380, 100 + (i * 5) % 380), (255, 0, 0), -1)
            yield frame

    return write_video(frames(), path, fps)


def make_model(path: Path) -> Path:
    """Four strided 3x3 convolutions (3->32->64->96->128) at 224x224, pooled, two classes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from gclf.export.onnx_export import set_metadata
    from gclf.runtime.metadata import ModelMetadata
    from gclf.runtime.preprocess import PreprocessSpec

    rng = np.random.default_rng(0)
    nodes, inits, prev, channels = [], [], "input", 3
    for i, out in enumerate((32, 64, 96, 128)):
        w = (rng.standard_normal((out, channels, 3, 3)) / np.sqrt(channels * 9)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev, channels = f"r{i}", out
    inits.append(numpy_helper.from_array(rng.standard_normal((channels, 2)).astype(np.float32), "fc"))
    nodes += [
        helper.make_node("GlobalAveragePool", [prev], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    set_metadata(model, ModelMetadata(spec=PreprocessSpec(), class_names=("circle", "square"), variant="fp32", training={"input_kind": "whole_image"}))
    onnx.save_model(model, str(path))
    return path


def viewers_process(port: int, n: int, stop: multiprocessing.Event, counts: multiprocessing.Array, sizes: multiprocessing.Array) -> None:
    """`n` viewers reading /stream as fast as they can; counts[i]: JPEG parts viewer i got.

    Bytes are only counted, not parsed (a boundary search in C): a browser elsewhere costs
    this machine nothing, and the viewers here should cost as little as they can.
    """
    boundary = b"--gclf-frame\r\n"

    def watch(i: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"GET /stream?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            tail, total = b"", 0
            while not stop.is_set():
                chunk = sock.recv(1 << 18)
                if not chunk:
                    return
                total += len(chunk)
                data = tail + chunk
                counts[i] += data.count(boundary)
                tail = data[-(len(boundary) - 1) :]
                sizes[i] = total // max(1, counts[i])

    threads = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    stop.wait()


def run_once(config: str, model: Path, video: Path, clf: Classifier) -> tuple[float, float, float]:
    """(loop FPS, JPEG frames per second each viewer got, this process's CPU ms per frame).

    CPU time counts every thread of this process (model, capture, preparation, server,
    encoder) and not the viewers' process: it is what serving costs the device, and it
    varies less than FPS when other work shares the machine."""
    devnull = open(os.devnull, "w")
    sinks: list = [JsonLinesSink(devnull)]
    viewers = VIEWERS.get(config)
    proc = stop = counts = None
    if viewers is not None:
        web = WebSink(ServeAddress(LOOPBACK, 0), token=TOKEN, model=ModelInfo(model.name, "fp32", clf.class_names))
        sinks.append(web)
        if viewers:
            ctx = multiprocessing.get_context("spawn")
            stop, counts, sizes = ctx.Event(), ctx.Array("i", viewers), ctx.Array("i", viewers)
            proc = ctx.Process(target=viewers_process, args=(web.port, viewers, stop, counts, sizes), daemon=True)
            proc.start()
            deadline = time.monotonic() + 30
            while web.viewers < viewers and time.monotonic() < deadline:
                time.sleep(0.05)
    cpu_start = time.process_time()
    feed = open_feed(CaptureSource.video(video), keep_every_frame=True)
    summary = run_live(feed, clf, detector=None, sinks=sinks)
    cpu_ms = (time.process_time() - cpu_start) * 1000 / max(1, summary.processed)
    per_viewer = 0.0
    if proc is not None:
        per_viewer = statistics.mean(counts[:]) / summary.elapsed_s if summary.elapsed_s else 0.0
        global JPEG_BYTES
        JPEG_BYTES = statistics.mean(sizes[:])
        stop.set()
        proc.join(10)
    devnull.close()
    return summary.mean_fps, per_viewer, cpu_ms


def annotate_cost_ms(video: Path, clf: Classifier) -> float:
    """What drawing one frame costs the loop while someone watches (and nothing otherwise)."""
    from gclf.runtime.live.frames import FrameResult
    from gclf.runtime.classifier import FaceResult

    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    capture.release()
    result = FrameResult(0, 0.0, (FaceResult((0, 0, 640, 480), clf.class_names[0], 0.93),), 25.0)
    start = time.perf_counter()
    for _ in range(200):
        annotate(frame.copy(), result)
    copy_start = time.perf_counter()
    for _ in range(200):
        frame.copy()
    end = time.perf_counter()
    return ((copy_start - start) - (end - copy_start)) / 200 * 1000


@click.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="A gclf ONNX model (default: a small generated CNN).")
@click.option("--frames", type=click.IntRange(min=30), default=300, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--record", "save_record", is_flag=True, help=results.RECORD_HELP)
def main(model: Path | None, frames: int, rounds: int, save_record: bool) -> None:
    load_start = results.load_average()
    model_name = model.name if model else "a small generated CNN (four 3x3 convolutions at 224 px)"
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "bench.avi", frames)
        model = model or make_model(Path(tmp) / "bench_cnn.onnx")
        clf = Classifier(model, spin=False)  # as gclf-infer's live loop runs it
        batch = np.zeros((1, 3, clf.spec.input_height, clf.spec.input_width), np.float32)
        clf.logits(batch)
        start = time.perf_counter()
        for _ in range(20):
            clf.logits(batch)
        model_fps = 20 / (time.perf_counter() - start)
        print(f"model {model.name}: {model_fps:.1f} images/s alone; video 640x480, {frames} frames, every frame in order", file=sys.stderr)
        print(f"annotate(): {annotate_cost_ms(video, clf):.2f} ms a frame (only while someone watches)", file=sys.stderr)
        fps: dict[str, list[float]] = {c: [] for c in CONFIGS}
        viewer_fps: dict[str, list[float]] = {c: [] for c in CONFIGS}
        cpu: dict[str, list[float]] = {c: [] for c in CONFIGS}
        for r in range(rounds):
            for config in CONFIGS:
                loop_fps, got, cpu_ms = run_once(config, model, video, clf)
                fps[config].append(loop_fps)
                viewer_fps[config].append(got)
                cpu[config].append(cpu_ms)
                print(
                    f"  round {r + 1}: {config:<17} {loop_fps:6.1f} FPS, {cpu_ms:5.1f} CPU ms/frame" + (f", {got:.1f} JPEG/s per viewer" if got else ""),
                    file=sys.stderr,
                )
    base = statistics.median(fps["headless"])
    base_cpu = statistics.median(cpu["headless"])
    print(f"\n{'configuration':<18} {'loop FPS (median)':>17} {'vs headless':>12} {'CPU ms/frame':>13} {'vs headless':>12} {'JPEG/s per viewer':>18}")
    for config in CONFIGS:
        med = statistics.median(fps[config])
        med_cpu = statistics.median(cpu[config])
        view = statistics.median(viewer_fps[config])
        print(f"{config:<18} {med:17.1f} {med / base:11.2f}x {med_cpu:13.1f} {med_cpu / base_cpu:11.2f}x {f'{view:.1f}' if view else '-':>18}")
    print(f"(a streamed frame: about {JPEG_BYTES / 1000:.0f} kB)")
    if save_record:
        values = {}
        for config in CONFIGS:
            med_cpu, view = statistics.median(cpu[config]), statistics.median(viewer_fps[config])
            values[config] = (f"{med_cpu:.1f} CPU ms a frame ({med_cpu / base_cpu:.2f}x headless), {statistics.median(fps[config]):.1f} FPS"
                              + (f", {view:.1f} JPEG/s per viewer" if view else ""))
        results.record("benchmarks.serve_bench", "Serving the live page", topic="serve", values=values, conditions={
            "model": model_name, "video": f"640x480, {frames} frames, every frame in order", "rounds": f"{rounds} interleaved, medians",
            "streamed frame": f"about {JPEG_BYTES / 1000:.0f} kB", "load": f"{load_start} at the start, {results.load_average()} at the end"})


if __name__ == "__main__":
    main()
