"""The --serve page in a real browser: headless Chromium (or Chrome), driven over the DevTools
protocol on a pipe (no driver, no download, no extra package), while gclf-infer plays a video.

The video's frames are solid red or solid blue, the colour changing every second, and the
tiny model's label is the colour. The page is opened with its token, as the printed URL
gives it (generated for the run); the page trades it for a cookie and takes it out of the
address bar. The test reads what the browser shows:
- the <img> (drawn into a canvas in the page): its lower half is red at one moment and blue
  at another (the picture changes), and its top-left corner has white text with a dark
  outline on the solid colour (the label and FPS drawn into the frame);
- the page's text: a label "red 0.9x" and "blue 0.9x" at different moments, a number for
  FPS, the model's name and its classes.
A missing browser is a failure, not a skip: README command 2 installs one with
tools/test_deps.py, which is also where this test looks for it.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from network_testutil import mjpeg_server  # noqa: F401 (a fixture)
from serve_testutil import start_served_run, write_colour_video
from gclf_testutil import REPO

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=800,600",
    "--remote-debugging-pipe",  # DevTools protocol on fds 3 (in) and 4 (out)
]
WATCH_S = 30.0  # at most this long for the page to show both colours and both labels

SAMPLE_JS = r"""
(() => {
  const $ = (id) => document.getElementById(id);
  const img = $("view");
  const out = {labels: $("labels").textContent, fps: $("fps").textContent, model: $("model").textContent,
               classes: $("classes").textContent, status: $("status").textContent, width: img.naturalWidth,
               search: location.search, cookie: document.cookie};
  if (img.naturalWidth > 0) {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const lower = g.getImageData(0, c.height >> 1, c.width, c.height >> 1).data;
    let r = 0, b = 0;
    for (let i = 0; i < lower.length; i += 4) { r += lower[i]; b += lower[i + 2]; }
    out.red = r / (lower.length / 4); out.blue = b / (lower.length / 4);
    const corner = g.getImageData(0, 0, c.width >> 1, c.height >> 2).data;
    out.white = 0; out.dark = 0;
    for (let i = 0; i < corner.length; i += 4) {
      const lo = Math.min(corner[i], corner[i + 1], corner[i + 2]), hi = Math.max(corner[i], corner[i + 1], corner[i + 2]);
      if (lo > 200) out.white++;
      if (hi < 60) out.dark++;
    }
  }
  return out;
})()
"""


def find_chromium() -> str:
    """The browser tools/test_deps.py finds (or installs): one search, in one place."""
    tool = REPO / "tools" / "test_deps.py"
    spec = importlib.util.spec_from_file_location("gclf_test_deps", tool)
    assert spec is not None and spec.loader is not None, f"{tool} is missing"
    test_deps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_deps)
    path = test_deps.find_browser()
    if path is None:
        pytest.fail(f"the browser test needs a headless Chromium or Chrome: run python tools/test_deps.py, or {test_deps.HOW}")
    return path


class DevTools:
    """Chromium with the DevTools protocol on a pipe: JSON messages ended by a NUL byte."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds_3_and_4() -> None:  # in the child, before exec: where Chromium looks for the pipe
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds_3_and_4, pass_fds=(3, 4),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_chrome, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                with self._lock:
                    waiting = self._replies.get(message.get("id", -1))
                if waiting is not None:
                    waiting.put(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 20.0) -> dict:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            self._replies[ident] = queue.Queue()
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        try:
            reply = self._replies[ident].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"Chromium did not answer {method} within {timeout} s") from None
        assert "error" not in reply, (method, reply["error"])
        return reply["result"]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._to_chrome)


def test_the_page_shows_the_changing_annotated_picture_and_labels(tiny_onnx, tmp_path: Path) -> None:
    chromium = find_chromium()
    video = write_colour_video(tmp_path / "colours.avi", 1500, fps=25, size=(320, 240), every=25)  # 60 s; stopped sooner
    run = start_served_run([str(tiny_onnx()), "--video", str(video), "--realtime", "--serve", "127.0.0.1:0", "--name", "front-door"], env={"GCLF_SERVE_TOKEN": ""})
    browser = None
    try:
        assert "/?token=" in run.url  # generated: printed once, with the address
        browser = DevTools(chromium, tmp_path / "profile")
        target = browser.call("Target.createTarget", {"url": run.url})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

        samples: list[dict] = []
        not_ready: list[str] = []
        deadline = time.monotonic() + WATCH_S
        while time.monotonic() < deadline:
            evaluated = browser.call("Runtime.evaluate", {"expression": SAMPLE_JS, "returnByValue": True}, session)
            if "exceptionDetails" in evaluated:  # the page is not there yet (about:blank, loading)
                not_ready.append(evaluated["exceptionDetails"].get("exception", {}).get("description", "?"))
            else:
                samples.append(evaluated["result"]["value"])
                if _seen_everything(samples):
                    break
            time.sleep(0.2)
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session)
        (tmp_path / "page.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        if browser is not None:
            browser.close()
        run.stop()

    assert samples, f"the page never loaded: {not_ready[-1:]}"
    pictures = [s for s in samples if s["width"]]
    assert pictures, f"the page never showed a picture; last sample {samples[-1]}"
    assert all(s["width"] == 320 for s in pictures)
    assert any(s["red"] > 150 > s["blue"] for s in pictures), "never a red picture"
    assert any(s["blue"] > 150 > s["red"] for s in pictures), "never a blue picture: the picture does not change"
    assert any(s["white"] > 20 and s["dark"] > 20 for s in pictures), "no label drawn into the frame"
    labels = " ".join(s["labels"] for s in samples)
    assert re.search(r"\bred 0\.\d\d\b", labels) and re.search(r"\bblue 0\.\d\d\b", labels), labels
    last = samples[-1]
    assert float(last["fps"]) > 0, last
    assert last["model"] == "front-door: tiny.onnx (fp32)" and last["classes"] == "classes: red, blue"
    assert last["status"] == "live", last
    assert last["search"] == "", "the token is still in the address bar"
    assert last["cookie"] == "", "the token's cookie is readable by scripts (not HttpOnly)"


def _seen_everything(samples: list[dict]) -> bool:
    pictures = [s for s in samples if s["width"]]
    labels = " ".join(s["labels"] for s in samples)
    return (
        any(s["red"] > 150 > s["blue"] for s in pictures)
        and any(s["blue"] > 150 > s["red"] for s in pictures)
        and "red 0." in labels
        and "blue 0." in labels
        and samples[-1]["fps"] not in ("-", "0.0")
    )


STATUS_JS = r"""
(() => ({status: document.getElementById("status").textContent, bad: document.getElementById("status").className === "bad",
         labels: document.getElementById("labels").textContent, title: document.title}))()
"""


def test_the_page_says_when_a_network_camera_is_down_and_when_it_is_back(tiny_onnx, tmp_path: Path, mjpeg_server) -> None:
    chromium = find_chromium()
    camera = mjpeg_server()
    run = start_served_run([str(tiny_onnx()), "--camera", camera.url(), "--serve", "127.0.0.1:0", "--name", "porch"], env={"GCLF_SERVE_TOKEN": ""})
    browser = None
    try:
        browser = DevTools(chromium, tmp_path / "profile")
        target = browser.call("Target.createTarget", {"url": run.url})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

        def sample_until(condition, what: str) -> dict:
            deadline = time.monotonic() + WATCH_S
            last = None
            while time.monotonic() < deadline:
                evaluated = browser.call("Runtime.evaluate", {"expression": STATUS_JS, "returnByValue": True}, session)
                if "exceptionDetails" not in evaluated:
                    last = evaluated["result"]["value"]
                    if condition(last):
                        return last
                time.sleep(0.2)
            raise AssertionError(f"the page never showed {what}; last: {last}")

        up = sample_until(lambda s: s["status"] == "live" and re.search(r"\b(red|blue) 0\.\d\d\b", s["labels"]), "the camera's frames")
        assert up["title"] == "gclf live: porch" and not up["bad"]
        camera.kill()
        down = sample_until(lambda s: s["status"].startswith("camera down since "), "that the camera is down")
        assert down["bad"] and ", 1 outage (" in down["status"] and down["labels"].startswith("camera down since ")
        camera.start()
        back = sample_until(lambda s: s["status"].startswith("live (camera up, 1 outage"), "that the camera is back")
        assert not back["bad"] and not back["labels"].startswith("camera down")
    finally:
        if browser is not None:
            browser.close()
        run.stop()


UNSURE_JS = r"""
(() => ({labels: document.getElementById("labels").textContent, classes: document.getElementById("classes").textContent,
         unsure: [...document.querySelectorAll("#labels li.unsure")].map((li) => getComputedStyle(li).backgroundColor)}))()
"""


def test_the_page_shows_an_unsure_answer_with_its_best_class_in_amber(tiny_onnx, tmp_path: Path) -> None:
    chromium = find_chromium()
    video = write_colour_video(tmp_path / "colours.avi", 750, fps=25, size=(320, 240), every=25)
    # No answer is certain: at 1, every frame's answer is unsure.
    run = start_served_run([str(tiny_onnx()), "--video", str(video), "--realtime", "--serve", "127.0.0.1:0", "--min-confidence", "1"],
                           env={"GCLF_SERVE_TOKEN": ""})
    browser = None
    try:
        browser = DevTools(chromium, tmp_path / "profile")
        target = browser.call("Target.createTarget", {"url": run.url})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        seen: list[dict] = []
        deadline = time.monotonic() + WATCH_S
        while time.monotonic() < deadline and not (seen and seen[-1]["unsure"]):
            evaluated = browser.call("Runtime.evaluate", {"expression": UNSURE_JS, "returnByValue": True}, session)
            if "exceptionDetails" not in evaluated:
                seen.append(evaluated["result"]["value"])
            time.sleep(0.2)
    finally:
        if browser is not None:
            browser.close()
        run.stop()

    assert seen and seen[-1]["unsure"], f"the page never showed an unsure answer; last: {seen[-1:]}"
    last = seen[-1]
    assert re.fullmatch(r"unsure \((red|blue) 0\.\d\d\)", last["labels"]), last
    assert last["unsure"] == ["rgb(122, 82, 0)"]  # amber, as the box in the frame
    assert last["classes"] == "classes: red, blue; unsure below confidence 1"
