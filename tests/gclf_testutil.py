"""Helpers the tests import: generated images and tiny hand-built ONNX classifiers.

Imported by conftest.py and the test modules (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import cv2
import numpy as np

if TYPE_CHECKING:
    from gclf.runtime.live.sources import Frame


# Colour of each tiny-model class, as an RGB channel index: the tiny model's logit for a
# class is the mean (normalised) value of that channel, so a pure-red image is "red".
# Where things are, from any test file however deep: the tests folder, the repository, and the
# shared data beside the checkout (../shared: real photos and the YuNet file; absent: tests skip).
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED = REPO.parent / "shared"

TINY_CLASS_CHANNEL = {"red": 0, "green": 1, "blue": 2}
TINY_TRAINING_SUMMARY = {"note": "hand-built test model"}
# A colour the tiny red/blue model is unsure of: "blue", at about 0.59 (build_tiny_onnx).
PURPLE_RGB = (128, 0, 128)


def decision_record(min_confidence: float, **extra: object) -> dict[str, object]:
    """A `gclf.decision` record as gclf-export writes it, with `min_confidence` as its threshold."""
    return {"min_confidence": min_confidence, "chosen_on": "validation", "target_accuracy": 0.95,
            "coverage": 0.8, "accuracy": 0.951, "photos": 400, **extra}


def encode_image(image: np.ndarray, ext: str, params: Sequence[int] = ()) -> bytes:
    """BGR(A)/grey uint8 or uint16 array -> file bytes in the format of `ext` (".png", ".jpg")."""
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok, f"OpenCV could not encode {image.dtype} {image.shape} as {ext}"
    return data.tobytes()


def write_image_file(path: Path, image: np.ndarray, params: Sequence[int] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(image, path.suffix, params))
    return path


def solid_bgr(rgb: tuple[int, int, int], height: int = 12, width: int = 16) -> np.ndarray:
    """An image of one colour given as RGB, in OpenCV's BGR order (what cv2.imencode expects)."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = rgb[::-1]
    return img


def noise_bgr(seed: int, height: int = 10, width: int = 12) -> np.ndarray:
    """A small random image; different seeds give different bytes (for distinct samples)."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def build_tiny_onnx(
    path: Path,
    *,
    class_names: Sequence[str] = ("red", "blue"),
    input_hw: tuple[int, int] = (32, 32),
    graph_hw: tuple[int, int] | None = None,
    graph_classes: int | None = None,
    with_metadata: bool = True,
    props_update: Mapping[str, str | None] | None = None,
    decision: Mapping[str, object] | None = None,
) -> Path:
    """Write a three-node ONNX classifier: GlobalAveragePool -> Flatten -> MatMul.

    `graph_hw`/`graph_classes` make the graph disagree with its metadata; `props_update`
    overwrites (or, with None, deletes) raw `metadata_props` entries after gclf's are set;
    `decision`: the `gclf.decision` record (a confidence threshold) the model carries.
    Its answer follows the colour: a solid RGB image's logits are its normalised red and blue
    means, so (255, 0, 0) is "red" at 0.98 and PURPLE_RGB "blue" at about 0.59.
    """
    import onnx  # a test-only dependency of the runtime's tests; torch is never needed here
    from onnx import TensorProto, helper, numpy_helper

    from gclf.runtime.metadata import Decision, ModelMetadata
    from gclf.runtime.preprocess import PreprocessSpec

    gh, gw = graph_hw or input_hw
    n_out = graph_classes or len(class_names)
    weights = np.zeros((3, n_out), dtype=np.float32)
    for i in range(n_out):
        name = class_names[i] if i < len(class_names) else ""
        weights[TINY_CLASS_CHANNEL.get(name, i % 3), i] = 1.0
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, gh, gw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    if with_metadata:
        spec = PreprocessSpec(input_height=input_hw[0], input_width=input_hw[1])
        props = ModelMetadata(spec=spec, class_names=tuple(class_names), variant="fp32", training=dict(TINY_TRAINING_SUMMARY),
                              decision=Decision.from_dict(decision) if decision is not None else None).to_props()
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
    if props_update:
        props = {p.key: p.value for p in model.metadata_props}
        for key, value in props_update.items():
            if value is None:
                props.pop(key, None)
            else:
                props[key] = value
        del model.metadata_props[:]
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


class ListFeed:
    """A feed that hands out given frames, then ends; records that it was closed."""

    def __init__(self, images: list[np.ndarray]) -> None:
        from gclf.runtime.live.sources import Frame

        self.frames = [Frame(i, 1000.0 + i / 10, img) for i, img in enumerate(images)]
        self.closed = False
        self.dropped = 0
        self.end_reason: str | None = None
        self.failure = None

    def next_frame(self) -> Frame | None:
        if not self.frames:
            self.end_reason = "end of list"
            return None
        return self.frames.pop(0)

    def close(self) -> None:
        self.closed = True


def rgba_png_of_zeros(path: Path, width: int, height: int) -> Path:
    """A valid RGBA PNG of `width` x `height` transparent black pixels, written without ever
    holding the image: zlib compresses zeros about 1000:1 (20000x20000: a 1.5 MB file)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    squeeze = zlib.compressobj(9)
    zeros, remaining, parts = bytes(1 << 23), height * (1 + 4 * width), []
    while remaining:
        step = min(remaining, len(zeros))
        parts.append(squeeze.compress(memoryview(zeros)[:step]))
        remaining -= step
    parts.append(squeeze.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path


# `python -c MEASURE_PEAK CMD...`: runs CMD, passes its output and exit code on, and prints the
# child's peak resident memory in bytes as the last line of stderr (ru_maxrss of the children).
MEASURE_PEAK = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(code.stdout)
sys.stderr.write(code.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr)  # ru_maxrss: KiB on Linux
sys.exit(code.returncode)
"""


# --- live-loop helpers shared by several test files ---------------------------------------

RED_BGR = (20, 20, 230)
BLUE_BGR = (230, 20, 20)


def write_video(path: Path, colours: list[tuple[int, int, int]], *, size: tuple[int, int] = (64, 48), fps: float = 10.0) -> Path:
    """A MJPG .avi with one solid-colour frame (BGR) per entry of `colours`."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for colour in colours:
        frame = np.empty((size[1], size[0], 3), dtype=np.uint8)
        frame[:] = colour
        writer.write(frame)
    writer.release()
    return path


# A tiny model's metadata entry that makes it a faces model (the live loop then detects faces).
FACES_MODEL = {"gclf.training": json.dumps({"input_kind": "faces"})}


class SquareDetector:
    """Finds the bright square exactly; counts its calls."""

    name = "square"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        self.calls += 1
        ys, xs = np.nonzero(bgr.max(axis=2) > 100)
        if not len(xs):
            return []
        return [(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))]


class UntrustworthyDetector:
    """A stand-in for a detector whose network misbehaves: each answer holds one good face (the
    middle of the frame, with a score) among entries no face can be: NaN and infinite
    coordinates, empty and inverted boxes, boxes wholly outside the frame, NaN and
    out-of-range scores, entries that are not numbers or have too few of them.
    `good_box(frame_hw)` is the box that must come through; BAD_PER_ANSWER entries must not."""

    name = "untrustworthy"
    BAD_PER_ANSWER = 11

    def __init__(self, *, good: bool = True) -> None:
        self.good = good  # False: only bad entries (a photo where it "finds" nothing usable)
        self.calls = 0

    @staticmethod
    def good_box(frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        h, w = frame_hw
        return (w // 4, h // 4, w // 2, h // 2)

    def detect(self, bgr: np.ndarray) -> list[tuple]:
        self.calls += 1
        h, w = bgr.shape[:2]
        nan, inf = float("nan"), float("inf")
        bad = [
            (nan, 0.0, 10.0, 10.0),
            (0.0, 0.0, inf, 10.0),
            (-inf, 2.0, 5.0, 5.0),
            (5.0, 5.0, 0.0, 10.0),  # empty
            (5.0, 5.0, 10.0, -3.0),  # inverted
            (w + 10.0, 0.0, 10.0, 10.0),  # right of the frame
            (0.0, -50.0, 10.0, 20.0),  # above it
            (5.0, 5.0, 10.0, 10.0, nan),  # a score that is not a number
            (5.0, 5.0, 10.0, 10.0, 1.5),  # nor a probability
            ("x", 1, 2, 3),
            (1.0, 2.0, 3.0),
        ]
        assert len(bad) == self.BAD_PER_ANSWER
        x, y, bw, bh = self.good_box((h, w))
        return bad + ([(float(x), float(y), float(bw), float(bh), 0.93)] if self.good else [])


# --- the torch-free runtime: the heavy packages a device does not have -----------------------

HEAVY = ("torch", "torchvision", "onnx")  # the onnx package; onnxruntime is the runtime's own

# A meta-path hook that makes the heavy packages look uninstalled, as on a device.
BLOCK = r"""
import importlib.abc
class _Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _Uninstalled())
"""


# --- programs the tests run (tools/test_deps.py installs them) ---------------------------------


def find_program(name: str) -> str | None:
    """A program as tools/test_deps.py finds it: on the PATH or in an sbin folder."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gclf_test_deps", REPO / "tools" / "test_deps.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.find_program(name)
