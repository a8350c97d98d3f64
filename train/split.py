"""Stratified, seeded train/val/test split that keeps duplicate files inside one split."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from gclf.runtime.errors import BadDataError, UsageError
from gclf.train.scan import SPLIT_NAMES, Sample, ScanResult


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        values = (self.train, self.val, self.test)
        if any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
            raise UsageError(f"--split fractions must be >= 0 and sum to 1, got {self.train}, {self.val}, {self.test}")
        if self.train <= 0 or self.val <= 0:
            raise UsageError("--split needs a training and a validation fraction above 0")

    @classmethod
    def parse(cls, text: str) -> "SplitFractions":
        try:
            parts = [float(p) for p in text.split(",")]
        except ValueError:
            raise UsageError(f"--split must be three numbers like 0.8,0.1,0.1, got {text!r}") from None
        if len(parts) != 3:
            raise UsageError(f"--split must be three numbers like 0.8,0.1,0.1, got {text!r}")
        return cls(*parts)


def split_samples(scan: ScanResult, fractions: SplitFractions, seed: int) -> dict[str, list[Sample]]:
    """Assign every sample to train/val/test.

    Per class, duplicate groups (identical bytes) are shuffled with `seed` and dealt to the
    split furthest below its target share, so the split is stratified and no image has a
    copy on the other side of the train/test boundary. Pre-split folders keep their split.
    """
    if scan.presplit:
        splits = {name: [s for s in scan.samples if s.split == name] for name in SPLIT_NAMES}
        if not splits["val"]:
            raise BadDataError("a pre-split folder needs a val/ folder (the best checkpoint is chosen on it)")
        return splits

    groups: dict[int, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for s in scan.samples:
        groups[s.label][s.sha256].append(s)
    rng = random.Random(seed)
    splits: dict[str, list[Sample]] = {name: [] for name in SPLIT_NAMES}
    wanted = dict(zip(SPLIT_NAMES, (fractions.train, fractions.val, fractions.test)))
    for label in sorted(groups):
        class_groups = [groups[label][h] for h in sorted(groups[label])]  # sorted: seed alone decides
        rng.shuffle(class_groups)
        total = sum(len(g) for g in class_groups)
        needed = [name for name in SPLIT_NAMES if wanted[name] > 0]
        if len(class_groups) < len(needed):
            raise BadDataError(
                f"class {scan.class_names[label]!r} has only {len(class_groups)} distinct image(s); "
                f"the {'/'.join(needed)} split needs at least {len(needed)}"
            )
        counts = dict.fromkeys(SPLIT_NAMES, 0)
        # First one group into each split that must not be empty, then by largest deficit.
        for name, group in zip(needed[::-1], class_groups):
            splits[name].extend(group)
            counts[name] += len(group)
        for group in class_groups[len(needed):]:
            name = max(needed, key=lambda n: wanted[n] * total - counts[n])
            splits[name].extend(group)
            counts[name] += len(group)
    for name in SPLIT_NAMES:
        splits[name].sort(key=lambda s: str(s.path))
    return splits


def limit_per_class(samples: list[Sample], per_class: int, seed: int) -> list[Sample]:
    """At most `per_class` samples of each class, drawn with `seed`, in their original order.

    For "fewer training images" experiments: applied to the training split only, so a run
    on 20 images per class is tested on the same images as a run on all of them.
    """
    if per_class < 1:
        raise UsageError(f"--max-train-per-class must be at least 1, got {per_class}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        by_class[sample.label].append(i)
    rng = random.Random(seed)
    chosen = {i for indices in by_class.values() for i in (indices if len(indices) <= per_class else rng.sample(indices, per_class))}
    return [sample for i, sample in enumerate(samples) if i in chosen]


def manifest(scan: ScanResult, splits: dict[str, list[Sample]], *, seed: int, fractions: SplitFractions | None, roots: list[str]) -> dict:
    """The split as written into the run folder: enough to rebuild it exactly."""
    return {
        "data": roots,
        "seed": seed,
        "fractions": None if fractions is None else {"train": fractions.train, "val": fractions.val, "test": fractions.test},
        "presplit": scan.presplit,
        "class_names": scan.class_names,
        "counts": {name: {c: sum(1 for s in split if s.label == i) for i, c in enumerate(scan.class_names)} for name, split in splits.items()},
        "splits": {name: [[str(s.path), scan.class_names[s.label]] for s in split] for name, split in splits.items()},
        "skipped": [{"path": p, "reason": r} for p, r in scan.skipped],
        "duplicate_groups": scan.duplicate_groups,
        "label_conflicts_excluded": scan.conflicts,
    }
