"""Memory and throughput of the scan and of training as the photo set grows: the image cache
on disk against the first design (every image in memory), in one run.

    python -m benchmarks.bigdata_bench [--dir /tmp/gclf-bigdata] [--sizes 10000,25000,50000]
                                       [--steps 30] [--batch-size 32] [--image-size 64] [--workers 2] [--record]

Generates (once, reused) a two-class set of 160x120 JPEGs of simple shapes in parts of 5,000
images (`--dir`; never commit it), then measures each design at each size in a subprocess of
its own, so that each figure of peak memory is that configuration's alone:
  - "memory": gclf's first design: the scan decodes every photo in the main process and
    keeps its resized copy and the decoded original (4 GB budget) in memory
    (`--image-cache memory --workers 0`);
  - "disk": the scan reads, hashes, decodes and resizes in `--workers` processes into a
    fresh image cache (`DiskImageCache`) and training reads batches through it, augmented
    in `--workers` DataLoader processes; "rescan" is a second scan of the same set, which
    finds every photo in the cache.
Training runs a fixed number of steps (`--steps` x `--batch-size` images, augmentation
"standard", random initialisation, `--image-size` px), not whole epochs, so the table fits a
small CPU. Peak RSS is the kernel's high-water mark (getrusage ru_maxrss): of the main
process, and of its largest child (a scan or loader worker; loader workers are forked, so
their figure includes pages they share with the main process). It prints a Markdown table and
asserts nothing: speed depends on the machine and on what else runs on it. `--record` also
writes the table into benchmarks/results/ (benchmarks.results).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PART = 5000  # images per generated part folder (half per class)
CLASSES = ("circles", "squares")


def _draw(args: tuple[int, int, Path]) -> None:
    import cv2
    import numpy as np

    part, index, folder = args
    rng = np.random.default_rng((part, index))
    kind = CLASSES[index % 2]
    img = np.empty((120, 160, 3), np.uint8)
    img[:] = rng.integers(40, 200, size=3)
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    cx, cy, r = int(rng.integers(40, 120)), int(rng.integers(30, 90)), int(rng.integers(15, 35))
    if kind == "circles":
        cv2.circle(img, (cx, cy), r, colour, -1)
    else:
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (folder / kind / f"{part:02d}_{index:05d}.jpg").write_bytes(data.tobytes())


def generate(root: Path, total: int, workers: int) -> list[Path]:
    """Part folders part_00 ... each with circles/ and squares/ (PART images); reused if done."""
    parts = []
    for part in range(-(-total // PART)):
        folder = root / f"part_{part:02d}"
        parts.append(folder)
        if (folder / ".done").is_file():
            continue
        for kind in CLASSES:
            (folder / kind).mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(_draw, [(part, i, folder) for i in range(PART)], chunksize=250)
        (folder / ".done").write_text("")
        print(f"generated {folder} ({PART} images) in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return parts


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def measure(args: argparse.Namespace) -> dict:
    """One configuration, in this (fresh) process: scan, then train a fixed number of steps."""
    import torch

    from gclf.train.augment import augment, augment_config
    from gclf.train.config import TrainConfig
    from gclf.train.dataset import ImageDataset, loader_worker_options
    from gclf.train.epoch import EpochContext, run_epoch
    from gclf.train.model import build_model, resolve_weights
    from gclf.train.run_folder import make_store, spec_of
    from gclf.train.scan import scan_folders

    torch.set_num_threads(args.threads)
    parts = [Path(p) for p in args.parts]
    memory = args.design == "memory"
    config = TrainConfig(
        data=tuple(parts), out=Path(args.cache), image_size=args.image_size, augment="standard",
        image_cache="memory" if memory else args.cache, workers=0 if memory else args.workers,
    )
    spec = spec_of(config)
    result = {"design": args.design, "n": None}

    started = time.monotonic()
    store = make_store(config, spec)
    scan = scan_folders(parts, store, workers=config.workers)
    scan_s = time.monotonic() - started
    result.update(n=len(scan.samples), scan_s=round(scan_s, 1), scan_ips=round(len(scan.samples) / scan_s), decodes=store.decodes)
    if not memory:
        started = time.monotonic()
        rescan_store = make_store(config, spec)
        scan_folders(parts, rescan_store, workers=config.workers)
        rescan_s = time.monotonic() - started
        result.update(rescan_ips=round(len(scan.samples) / rescan_s), rescan_decodes=rescan_store.decodes)
    result["rss_after_scan_mb"] = round(_rss_mb(resource.RUSAGE_SELF))

    aug = augment_config("standard")
    dataset = ImageDataset(scan.samples, store, spec, augment=lambda rgb, rng: augment(rgb, rng, aug), seed=0)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0),
        **loader_worker_options(0 if memory else config.workers),
    )
    model = build_model(scan.class_names, resolve_weights("none"))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    # The first step pays for start-up (loader workers, allocator); it is not timed.
    batches = iter(loader)
    run_epoch(EpochContext(model, optimizer, epoch=1, first_iteration=1, started=time.monotonic()), itertools.islice(batches, 1))
    started = time.monotonic()
    run_epoch(EpochContext(model, optimizer, epoch=1, first_iteration=2, started=started), itertools.islice(batches, args.steps))
    train_s = time.monotonic() - started
    del batches  # ends the loader's workers, so their peak counts among the children
    result.update(
        train_ips=round(args.steps * args.batch_size / train_s, 1),
        peak_rss_mb=round(_rss_mb(resource.RUSAGE_SELF)),
        child_peak_rss_mb=round(_rss_mb(resource.RUSAGE_CHILDREN)),
    )
    if not memory:
        result["cache_mb_on_disk"] = round(sum(f.stat().st_size for f in store.folder.rglob("*.img")) / 2**20)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "gclf-bigdata", help="where the generated images live (reused)")
    parser.add_argument("--sizes", default="10000,25000,50000", help="set sizes, multiples of 5000")
    parser.add_argument("--designs", default="memory,disk")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="the disk design's scan and loader workers")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in training")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--record", action="store_true", help="also write the table into benchmarks/results/<this machine>.json and render docs/measurements.md again")
    # internal: one measurement in a subprocess
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--design", help=argparse.SUPPRESS)
    parser.add_argument("--parts", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    load_start = os.getloadavg()[0]
    parts = generate(args.dir, max(sizes), args.workers)
    rows = []
    for n in sizes:
        for design in args.designs.split(","):
            cache = args.dir / "cache" / f"{design}-{n}"
            shutil.rmtree(cache, ignore_errors=True)  # the first scan is a cold one
            cmd = [sys.executable, __file__, "--measure", "--design", design, "--cache", str(cache), "--parts", *map(str, parts[: n // PART]),
                   "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
                   "--workers", str(args.workers), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            shutil.rmtree(cache, ignore_errors=True)
    from gclf.runtime.cpu_class import cpu_model_name  # the one reader of /proc/cpuinfo's CPU name

    cpu = cpu_model_name()
    print(f"\n{os.cpu_count()} cores ({cpu}), load average at the end {os.getloadavg()[0]:.2f}; "
          f"{args.image_size} px, batch {args.batch_size}, {args.steps} timed steps, augmentation standard, workers {args.workers}\n")
    print("| images | design | peak RSS main (MB) | largest child (MB) | scan img/s | rescan img/s | train img/s | cache on disk (MB) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['n']:,} | {r['design']} | {r['peak_rss_mb']:,} | {r['child_peak_rss_mb']:,} | {r['scan_ips']:,} | {r.get('rescan_ips', '-')} | {r['train_ips']} | {r.get('cache_mb_on_disk', '-')} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.record:
        from benchmarks import results

        table = results.Table(["images", "design", "peak RSS main (MB)", "largest child (MB)", "scan img/s", "rescan img/s", "train img/s", "cache on disk (MB)"],
                              [[r["n"], r["design"], r["peak_rss_mb"], r["child_peak_rss_mb"], r["scan_ips"], r.get("rescan_ips"), r["train_ips"],
                                r.get("cache_mb_on_disk")] for r in rows])
        results.record("benchmarks.bigdata_bench", "Memory against the number of photos", topic="scale", table=table, conditions={
            "images": "generated 160x120 JPEGs of simple shapes, two classes",
            "training": f"{args.image_size} px, batch {args.batch_size}, {args.steps} timed steps, augmentation standard, random initialisation",
            "threads": f"{args.threads} torch threads; {args.workers} scan and loader workers (disk)",
            "load": f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"})


if __name__ == "__main__":
    main()
