"""The decoded-image cache on disk (gclf.train.image_cache) and the parallel scan.

Reused by later scans (nothing decoded again), keyed by what decides its pixels, never read
when damaged, holding no pixels in memory whatever the number of photos; the scan in worker
processes gives what the in-process scan gives; a transform hook (a face crop's shape)
applied after decoding and keyed; gclf-train and --resume through it.
"""

from __future__ import annotations

import os
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from gclf.runtime.decode import decode_image
from gclf.runtime.preprocess import PreprocessSpec, preprocess, resize_to_input
from gclf.train import scan as scan_module
from gclf.train.image_cache import DiskImageCache, default_cache_root, working_size
from gclf.train.scan import ImageStore, scan_folders
from gclf_testutil import noise_bgr, write_image_file

SPEC = PreprocessSpec(input_height=20, input_width=24)


def _fill(root: Path, per_class: int, *, side: int = 30) -> Path:
    for c, name in enumerate(("a", "b")):
        for i in range(per_class):
            ext = ".png" if i % 3 == 0 else ".jpg"
            write_image_file(root / name / f"{i:03d}{ext}", noise_bgr(c * 1000 + i, side, side + 7))
    return root


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    return _fill(tmp_path / "photos", 6)


def _cache(root: Path, spec: PreprocessSpec = SPEC, **kwargs) -> DiskImageCache:
    return DiskImageCache(root, spec, **kwargs)


def _entries(store: DiskImageCache) -> list[Path]:
    return sorted(store.folder.rglob("*.img"))


class TopHalf:
    """A stand-in for a face crop: the shape scan_folders' transform hook takes (a picklable
    object with a `key` and `__call__(rgb) -> image or None`). It finds "nothing" in images
    narrower than `min_width`."""

    key = "top-half-v1"

    def __init__(self, min_width: int = 0, pid_folder: Path | None = None) -> None:
        self.min_width, self.pid_folder = min_width, pid_folder

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        if self.pid_folder is not None:  # which processes ran the transform
            (self.pid_folder / str(os.getpid())).touch()
        if rgb.shape[1] < self.min_width:
            return None
        return np.ascontiguousarray(rgb[: rgb.shape[0] // 2])


def test_a_second_scan_decodes_nothing_and_rewrites_nothing(photos: Path, tmp_path: Path) -> None:
    first = _cache(tmp_path / "cache")
    scan1 = scan_folders([photos], first)
    assert first.decodes == 12 and first.hits == 0
    entries = _entries(first)
    assert len(entries) == 12
    stamps = {p: p.stat().st_mtime_ns for p in entries}

    second = _cache(tmp_path / "cache")
    scan2 = scan_folders([photos], second)

    assert second.decodes == 0 and second.hits == 12
    assert {p: p.stat().st_mtime_ns for p in _entries(second)} == stamps
    assert scan2.samples == scan1.samples
    for s in scan2.samples:
        assert np.array_equal(second.resized(s.path), first.resized(s.path))


def test_the_cache_folder_is_keyed_by_what_decides_the_pixels(tmp_path: Path) -> None:
    base = _cache(tmp_path)
    assert _cache(tmp_path).folder == base.folder  # the same key: the same folder
    others = [
        _cache(tmp_path, PreprocessSpec(input_height=20, input_width=25)),
        _cache(tmp_path, PreprocessSpec(input_height=20, input_width=24, interpolation="area")),
        _cache(tmp_path, work_hw=working_size(SPEC, True)),
        _cache(tmp_path, transform=TopHalf()),
    ]
    folders = {base.folder, *(o.folder for o in others)}
    assert len(folders) == 5
    # mean/std are applied in float after the cache: they share its entries.
    assert _cache(tmp_path, PreprocessSpec(input_height=20, input_width=24, mean_01=(0.5, 0.5, 0.5))).folder == base.folder


def test_damaged_or_half_written_entries_are_rebuilt_never_read(photos: Path, tmp_path: Path) -> None:
    store = _cache(tmp_path / "cache", work_hw=(26, 30))
    scan = scan_folders([photos], store)
    by_sha = {s.sha256: s.path for s in scan.samples}
    entries = _entries(store)
    truncated, flipped, garbage, longer = entries[:4]
    truncated.write_bytes(truncated.read_bytes()[:-100])  # a write cut short
    data = bytearray(flipped.read_bytes())
    data[200] ^= 0xFF  # one pixel changed: the checksum no longer matches
    flipped.write_bytes(bytes(data))
    garbage.write_bytes(b"\0" * len(data))  # right size, no magic (a lost write)
    longer.write_bytes(longer.read_bytes() + b"x")
    (entries[4].parent / f".{entries[4].name}.123.abcdabcd.tmp").write_bytes(b"partial")  # a killed writer's file

    again = _cache(tmp_path / "cache", work_hw=(26, 30))
    scan_folders([photos], again)

    assert again.decodes == 4 and again.hits == 8
    for entry in entries[:4]:
        path = by_sha[entry.stem]
        assert np.array_equal(again.resized(path), resize_to_input(decode_image(path), SPEC))


def test_an_entry_damaged_after_the_scan_is_rebuilt_when_read(photos: Path, tmp_path: Path) -> None:
    store = _cache(tmp_path / "cache")
    scan = scan_folders([photos], store)
    sample = scan.samples[3]
    entry = store.entry_path(sample.sha256)
    entry.write_bytes(entry.read_bytes()[:10])

    assert np.array_equal(store.resized(sample.path), resize_to_input(decode_image(sample.path), SPEC))
    assert _cache(tmp_path / "cache")._read(sample.sha256) is not None  # rewritten whole


def test_the_disk_cache_holds_no_pixels_in_memory_whatever_the_number_of_photos(tmp_path: Path) -> None:
    spec = PreprocessSpec(input_height=64, input_width=64)  # 12 KB an image
    small, large = _fill(tmp_path / "small", 4, side=70), _fill(tmp_path / "large", 24, side=70)
    image_bytes = 64 * 64 * 3

    def held(make_store, root: Path) -> int:
        """Bytes still allocated after the scan, while the store (and the scan) live."""
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        store = make_store()
        scan = scan_folders([root], store)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(scan.samples) in (8, 48)
        return after - before

    disk_growth = held(lambda: _cache(tmp_path / "c", spec), large) - held(lambda: _cache(tmp_path / "c", spec), small)
    memory_growth = held(lambda: ImageStore(spec), large) - held(lambda: ImageStore(spec), small)

    # 40 more photos: the in-memory store holds their pixels (at least the 64x64 copies);
    # the disk cache only a path -> sha256 row and a Sample each (well under 1 KB).
    assert memory_growth > 40 * image_bytes
    assert disk_growth < 40 * image_bytes / 10
    assert _cache(tmp_path / "c", spec).pixel_bytes_in_memory == 0


def _unusable_files(root: Path) -> list[str]:
    (root / "a" / "empty.jpg").write_bytes(b"")
    (root / "b" / "text.png").write_text("not an image")
    shutil.copyfile(root / "a" / "001.jpg", root / "a" / "copy.jpg")  # a duplicate, same class
    shutil.copyfile(root / "a" / "002.jpg", root / "b" / "conflict.jpg")  # the same photo in two classes
    return [str(root / "a" / "empty.jpg"), str(root / "b" / "text.png")]


@pytest.mark.parametrize("store_kind", ["disk", "memory"])
def test_the_scan_in_worker_processes_gives_what_the_scan_in_process_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_kind: str) -> None:
    photos = _fill(tmp_path / "photos", 10)
    unusable = _unusable_files(photos)
    monkeypatch.setattr(scan_module, "POOL_MIN_FILES", 0)  # a pool even for a few files
    pids = tmp_path / "pids"
    pids.mkdir()

    def scan(workers: int, cache: str):
        store = _cache(tmp_path / cache) if store_kind == "disk" else ImageStore(SPEC)
        reported: list[tuple[str, str]] = []
        result = scan_folders([photos], store, workers=workers, transform=TopHalf(pid_folder=pids), on_skip=lambda p, r: reported.append((p, r)))
        return result, store, reported

    serial, serial_store, serial_reported = scan(0, "serial")
    assert {p.name for p in pids.iterdir()} == {str(os.getpid())}
    for p in pids.iterdir():
        p.unlink()
    parallel, parallel_store, parallel_reported = scan(2, "parallel")

    assert str(os.getpid()) not in {p.name for p in pids.iterdir()}  # the work ran in other processes
    assert parallel.samples == serial.samples
    assert parallel.skipped == serial.skipped == parallel_reported == serial_reported
    assert sorted(p for p, _ in parallel.skipped) == sorted(unusable)
    assert parallel.duplicate_groups == serial.duplicate_groups and len(parallel.duplicate_groups) == 1
    assert parallel.conflicts == serial.conflicts and len(parallel.conflicts) == 1
    for s in parallel.samples:
        assert np.array_equal(parallel_store.resized(s.path), serial_store.resized(s.path))


@pytest.mark.parametrize("no_face", ["whole", "skip"])
def test_the_transform_runs_after_decoding_and_before_resizing_and_what_it_finds_nothing_in_is_listed(tmp_path: Path, no_face: str) -> None:
    photos = _fill(tmp_path / "photos", 4)
    narrow = write_image_file(photos / "a" / "narrow.png", noise_bgr(77, 30, 12))
    store = _cache(tmp_path / "cache", work_hw=(30, 36))
    reported: list[tuple[str, str]] = []
    told: list[str] = []

    scan = scan_folders([photos], store, transform=TopHalf(min_width=20), on_skip=lambda p, r: reported.append((p, r)), no_face=no_face, on_no_face=told.append)

    assert reported == [] and scan.no_face == told == [str(narrow)]
    assert (narrow in {s.path for s in scan.samples}) == (no_face == "whole")
    for s in scan.samples:
        rgb = decode_image(s.path)
        kept = rgb if s.path == narrow else rgb[: rgb.shape[0] // 2]  # nothing found: the whole photo
        assert np.array_equal(store.resized(s.path), resize_to_input(kept, SPEC))
        assert store.working(s.path).shape == (30, 36, 3)
    # A later scan finds every entry in the cache, and still knows where nothing was found.
    again = _cache(tmp_path / "cache", work_hw=(30, 36))
    rescan = scan_folders([photos], again, transform=TopHalf(min_width=20), no_face=no_face)
    assert again.decodes == 0 and rescan.no_face == [str(narrow)]
    assert [s.path for s in rescan.samples] == [s.path for s in scan.samples]
    # The same photos without the transform are other entries, in another folder.
    plain = _cache(tmp_path / "cache", work_hw=(30, 36))
    scan_folders([photos], plain)
    assert plain.folder != store.folder and plain.decodes == 9


def test_evaluation_through_the_disk_cache_equals_the_runtime_preprocess(tmp_path: Path) -> None:
    from gclf.train.dataset import ImageDataset
    from gclf.train.synthetic import make_shapes_dataset

    shapes = make_shapes_dataset(tmp_path / "shapes", per_class=6, grey_share=0.5, min_side=24, max_side=90)
    spec = PreprocessSpec(input_height=40, input_width=56)
    store = _cache(tmp_path / "cache", spec, work_hw=working_size(spec, True))  # with a working copy too
    scan = scan_folders([shapes], store)
    dataset = ImageDataset(scan.samples, _cache(tmp_path / "cache", spec, work_hw=working_size(spec, True)), spec)
    dataset.store._sha.update(store._sha)  # a second store on the same entries: read from disk only

    for i, sample in enumerate(scan.samples):
        x, _ = dataset[i]
        assert np.array_equal(x.numpy(), preprocess(decode_image(sample.path), spec)), sample.path


def test_the_working_copy_is_the_evaluation_copy_without_augmentation(photos: Path, tmp_path: Path) -> None:
    store = _cache(tmp_path / "cache", work_hw=working_size(SPEC, False))
    scan = scan_folders([photos], store)
    path = scan.samples[0].path
    assert np.array_equal(store.working(path), store.resized(path))
    assert working_size(SPEC, True) == (25, 30)  # WORK_SCALE 1.25


def test_the_default_cache_is_under_gclf_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / "images"
    monkeypatch.delenv("GCLF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "gclf" / "images"


# --- gclf-train through the cache ------------------------------------------------------------

TRAIN = ["--weights", "none", "--image-size", "32", "--max-epochs", "2", "--batch-size", "4", "--device", "cpu", "--quiet", "--seed", "2", "--augment", "standard"]


def _train(*args) -> "object":
    from click.testing import CliRunner

    from gclf.train.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.usefixtures("one_thread")
def test_training_reuses_the_cache_and_loader_workers_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from gclf.train import loop

    monkeypatch.setattr(loop, "POOL_MIN_FILES", 0)  # loader workers even for a few images

    from gclf.train.run_folder import load_run_config, read_run_data

    data = _fill(tmp_path / "photos", 8)
    cache = tmp_path / "cache"
    first = _train("--data", data, "--out", tmp_path / "r0", "--image-cache", cache, "--workers", "0", *TRAIN)
    assert "decoded 16 image(s), 0 found in the image cache" in first.output
    second = _train("--data", data, "--out", tmp_path / "r2", "--image-cache", cache, "--workers", "2", *TRAIN)
    assert "decoded 0 image(s), 16 found in the image cache" in second.output

    # Augmentation in 2 loader processes: the same batches, so the same network.
    w0, w2 = (torch.load(tmp_path / r / "last.pt", weights_only=True)["state_dict"] for r in ("r0", "r2"))
    assert all(torch.equal(w0[k], w2[k]) for k in w0)
    # What --resume reads (the manifest's images) comes from the cache too.
    config = load_run_config(tmp_path / "r2")
    assert config.image_cache == str(cache) and config.workers == 2
    run = read_run_data(tmp_path / "r2", config, lambda _: None)
    assert run.store.decodes == 0 and run.store.hits == 16


def test_image_cache_memory_is_the_in_memory_store(tmp_path: Path) -> None:
    from gclf.train.config import TrainConfig
    from gclf.train.run_folder import make_store, spec_of

    config = TrainConfig(data=(tmp_path,), out=tmp_path / "r", image_cache="memory", image_size=32)
    assert isinstance(make_store(config, spec_of(config)), ImageStore)
    config = TrainConfig(data=(tmp_path,), out=tmp_path / "r", image_cache=str(tmp_path / "c"), image_size=32, augment="light")
    store = make_store(config, spec_of(config))
    assert isinstance(store, DiskImageCache) and store.root == tmp_path / "c" and store.layout.work_hw == (40, 40)


def test_loader_workers_run_after_the_parent_used_opencvs_threads(photos: Path, tmp_path: Path) -> None:
    """Loader workers are forked: they must not wait on OpenCV's thread pool of the parent
    (a cv2.setNumThreads call in a forked worker did, forever)."""
    import cv2
    import torch

    from gclf.train.augment import augment, augment_config
    from gclf.train.dataset import ImageDataset, loader_worker_options

    big = np.zeros((1500, 1500, 3), np.uint8)
    for _ in range(3):  # starts OpenCV's worker threads in this process
        cv2.resize(big, (700, 700))
        cv2.warpAffine(big, np.float32([[1, 0, 2], [0, 1, 2]]), (1500, 1500))
    store = _cache(tmp_path / "cache", work_hw=working_size(SPEC, True))
    scan = scan_folders([photos], store)
    aug = augment_config("standard")
    dataset = ImageDataset(scan.samples, store, SPEC, augment=lambda rgb, rng: augment(rgb, rng, aug))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, timeout=120, **loader_worker_options(2))
    in_process = torch.utils.data.DataLoader(dataset, batch_size=4)
    for (x, y), (x0, y0) in zip(loader, in_process, strict=True):
        assert torch.equal(x, x0) and torch.equal(y, y0)
