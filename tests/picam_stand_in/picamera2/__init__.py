"""A stand-in for picamera2, Raspberry Pi OS's camera library, for tests on any machine.

It records what gclf asks of it (camera number, configuration) and hands out frames the way
picamera2's "RGB888" format lays them out in memory: [B, G, R] per pixel. Captures follow
picamera2's API: `capture_array(name)` waits and returns the array; with `wait=False` it
returns a job, and `wait(job, timeout)` (= `job.get_result(timeout)`) raises
`concurrent.futures.TimeoutError` when no frame completes in time.

In-process tests set the class attributes (tests/conftest.py's `fake_picamera2`
fixture). A subprocess gets this folder's parent on PYTHONPATH and its knobs from the
environment, read when the module is imported:

    GCLF_FAKE_PICAM_FAIL_AFTER=N     captures raise (libcamera error) after N frames
    GCLF_FAKE_PICAM_STALL_AFTER=N    no frame completes after N frames: waits time out
    GCLF_FAKE_PICAM_IGNORE_TIMEOUT=1 a stalled wait never returns, timeout or not (a wedged driver)
    GCLF_FAKE_PICAM_INTERVAL_S=S     seconds per frame (default 0.002)
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from typing import Callable

import numpy as np

RED_SCENE_RGB = (230, 20, 20)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


class Job:
    """What `capture_array(wait=False)` returns; the frame is taken when its result is asked for."""

    def __init__(self, take: Callable[[float | None], np.ndarray]) -> None:
        self._take = take

    def get_result(self, timeout: float | None = None) -> np.ndarray:
        return self._take(timeout)


class Picamera2:
    """Stands in for `picamera2.Picamera2`; class attributes are the test's knobs and records."""

    camera_info: list[dict] = [{"Model": "imx708", "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a"}]
    scene_rgb = RED_SCENE_RGB
    fail_after: int | None = _env_int("GCLF_FAKE_PICAM_FAIL_AFTER")
    stall_after: int | None = _env_int("GCLF_FAKE_PICAM_STALL_AFTER")
    ignore_timeout: bool = bool(os.environ.get("GCLF_FAKE_PICAM_IGNORE_TIMEOUT"))
    interval_s: float = float(os.environ.get("GCLF_FAKE_PICAM_INTERVAL_S") or 0.002)
    instances: list["Picamera2"] = []
    release = threading.Event()  # set by a test's teardown: waits stuck "for ever" return

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.config_request: dict | None = None
        self.configured: dict | None = None
        self.started = self.stopped = self.closed = False
        self.captured = 0
        self.timeouts: list[float | None] = []  # the timeout of every wait, in order
        self.capture_threads: set[str] = set()
        Picamera2.instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict]:
        return Picamera2.camera_info

    def create_video_configuration(self, main=None, **options) -> dict:
        self.config_request = {"main": dict(main or {}), **options}
        return {"use_case": "video", "main": dict(main or {}), **options}

    def configure(self, config: dict) -> None:
        self.configured = config

    def start(self) -> None:
        assert self.configured is not None, "started before configure()"
        self.started = True

    def capture_array(self, name: str = "main", wait: bool | None = None):
        assert self.started and not self.closed and name == "main"
        job = Job(self._take)
        return job if wait is False else job.get_result()

    def wait(self, job: Job, timeout: float | None = None) -> np.ndarray:
        return job.get_result(timeout)

    def _take(self, timeout: float | None) -> np.ndarray:
        self.timeouts.append(timeout)
        if self.fail_after is not None and self.captured >= self.fail_after:
            raise RuntimeError("Device or resource busy")
        if self.stall_after is not None and self.captured >= self.stall_after:
            if timeout is None or self.ignore_timeout:
                self.release.wait()  # for ever, as picamera2 does when libcamera stops
            else:
                time.sleep(timeout)
            raise concurrent.futures.TimeoutError()
        time.sleep(self.interval_s)  # a camera delivers at its own pace
        self.captured += 1
        self.capture_threads.add(threading.current_thread().name)
        width, height = self.configured["main"]["size"]
        r, g, b = self.scene_rgb
        frame = np.empty((height, width, 3), dtype=np.uint8)
        frame[:] = (b, g, r)  # "RGB888" is [B, G, R] in memory (picamera2 manual, appendix A)
        return frame

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.closed = True
