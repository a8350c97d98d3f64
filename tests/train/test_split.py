"""split_samples: stratified, seeded, about 80/10/10; pre-split folders honoured; fractions checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from gclf.runtime.errors import BadDataError, UsageError
from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.scan import SPLIT_NAMES, ImageStore, Sample, ScanResult, scan_folders
from gclf.train.split import SplitFractions, manifest, split_samples
from gclf_testutil import noise_bgr, write_image_file


def _scan_result(counts: dict[str, int]) -> ScanResult:
    """A scan of distinct files, without decoding anything (the split only needs labels and hashes)."""
    names = sorted(counts)
    samples = [
        Sample(Path(f"/data/{name}/{i:03d}.jpg"), label, f"{name}-{i}")
        for label, name in enumerate(names)
        for i in range(counts[name])
    ]
    return ScanResult(names, samples)


def _per_class(splits: dict[str, list[Sample]], scan: ScanResult) -> dict[str, dict[str, int]]:
    return {name: {c: sum(s.label == i for s in split) for i, c in enumerate(scan.class_names)} for name, split in splits.items()}


def _paths(splits: dict[str, list[Sample]]) -> dict[str, list[str]]:
    return {name: [str(s.path) for s in split] for name, split in splits.items()}


def test_split_is_stratified_80_10_10() -> None:
    scan = _scan_result({"a": 20, "b": 40, "c": 10})

    splits = split_samples(scan, SplitFractions(), seed=0)

    assert _per_class(splits, scan) == {
        "train": {"a": 16, "b": 32, "c": 8},
        "val": {"a": 2, "b": 4, "c": 1},
        "test": {"a": 2, "b": 4, "c": 1},
    }


@pytest.mark.parametrize("count", [7, 13, 29])
def test_split_counts_are_within_one_image_of_the_fractions_per_class(count: int) -> None:
    scan = _scan_result({"a": count, "b": count + 1})
    fractions = SplitFractions(0.7, 0.2, 0.1)

    splits = split_samples(scan, fractions, seed=3)

    per_class = _per_class(splits, scan)
    for cls, n in (("a", count), ("b", count + 1)):
        for name, share in zip(SPLIT_NAMES, (0.7, 0.2, 0.1)):
            assert per_class[name][cls] >= 1  # no split left without a class
            assert abs(per_class[name][cls] - share * n) <= 1, (cls, name, per_class)


def test_three_images_of_a_class_give_one_to_each_split() -> None:
    scan = _scan_result({"a": 3, "b": 30})

    per_class = _per_class(split_samples(scan, SplitFractions(), seed=0), scan)

    assert {name: counts["a"] for name, counts in per_class.items()} == {"train": 1, "val": 1, "test": 1}


def test_every_sample_lands_in_exactly_one_split() -> None:
    scan = _scan_result({"a": 17, "b": 23})

    splits = split_samples(scan, SplitFractions(), seed=5)

    everything = [p for paths in _paths(splits).values() for p in paths]
    assert sorted(everything) == sorted(str(s.path) for s in scan.samples)


def test_split_is_reproducible_for_a_seed_and_differs_for_another() -> None:
    scan = _scan_result({"a": 30, "b": 30})

    first = _paths(split_samples(scan, SplitFractions(), seed=11))
    again = _paths(split_samples(scan, SplitFractions(), seed=11))
    other = _paths(split_samples(scan, SplitFractions(), seed=12))

    assert first == again
    assert first["test"] != other["test"]
    assert _per_class(split_samples(scan, SplitFractions(), seed=12), scan) == _per_class(split_samples(scan, SplitFractions(), seed=11), scan)


def test_split_does_not_depend_on_the_order_files_were_found() -> None:
    scan = _scan_result({"a": 15, "b": 15})
    shuffled = ScanResult(scan.class_names, scan.samples[::-1])

    assert _paths(split_samples(scan, SplitFractions(), 4)) == _paths(split_samples(shuffled, SplitFractions(), 4))


def test_a_class_with_too_few_distinct_images_is_bad_data() -> None:
    scan = _scan_result({"a": 10, "tiny": 2})

    with pytest.raises(BadDataError, match="'tiny' has only 2 distinct image"):
        split_samples(scan, SplitFractions(), seed=0)
    # Without a test split, two images are enough.
    splits = split_samples(scan, SplitFractions(0.8, 0.2, 0.0), seed=0)
    assert splits["test"] == []


def _presplit(root: Path, layout: dict[str, dict[str, int]]) -> dict[str, set[Path]]:
    written: dict[str, set[Path]] = {}
    seed = 0
    for split, classes in layout.items():
        for cls, n in classes.items():
            for i in range(n):
                seed += 1
                written.setdefault(split, set()).add(write_image_file(root / split / cls / f"{i}.png", noise_bgr(seed)))
    return written


def test_pre_split_train_val_test_folders_are_honoured(tmp_path: Path) -> None:
    written = _presplit(tmp_path, {"train": {"a": 4, "b": 3}, "val": {"a": 1, "b": 2}, "test": {"a": 2, "b": 1}})

    scan = scan_folders([tmp_path], ImageStore(PreprocessSpec(input_height=16, input_width=16)))

    assert scan.presplit and scan.class_names == ["a", "b"]
    for seed in (0, 1):
        splits = split_samples(scan, SplitFractions(), seed)
        assert {name: {s.path for s in split} for name, split in splits.items()} == written
    m = manifest(scan, splits, seed=1, fractions=None, roots=[str(tmp_path)])
    assert m["presplit"] is True and m["fractions"] is None
    assert m["counts"] == {"train": {"a": 4, "b": 3}, "val": {"a": 1, "b": 2}, "test": {"a": 2, "b": 1}}


def test_a_pre_split_folder_without_val_is_bad_data(tmp_path: Path) -> None:
    _presplit(tmp_path, {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}})
    scan = scan_folders([tmp_path], ImageStore(PreprocessSpec(input_height=16, input_width=16)))

    with pytest.raises(BadDataError, match="val/"):
        split_samples(scan, SplitFractions(), seed=0)


def test_pre_split_and_folder_per_class_data_cannot_be_combined(tmp_path: Path) -> None:
    _presplit(tmp_path / "split", {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}})
    write_image_file(tmp_path / "plain" / "a" / "1.png", noise_bgr(100))
    write_image_file(tmp_path / "plain" / "b" / "1.png", noise_bgr(101))

    with pytest.raises(BadDataError, match="cannot combine"):
        scan_folders([tmp_path / "split", tmp_path / "plain"], ImageStore(PreprocessSpec(input_height=16, input_width=16)))


@pytest.mark.parametrize(
    "values, message",
    [
        ((0.5, 0.5, 0.5), "sum to 1"),
        ((0.8, 0.1, 0.05), "sum to 1"),
        ((0.9, 0.2, -0.1), ">= 0"),
        ((0.0, 0.5, 0.5), "training and a validation fraction"),
        ((0.9, 0.0, 0.1), "training and a validation fraction"),
    ],
)
def test_bad_split_fractions_are_refused(values: tuple[float, float, float], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        SplitFractions(*values)


@pytest.mark.parametrize("text", ["0.8,0.2", "0.8,0.1,0.05,0.05", "a,b,c", ""])
def test_split_text_must_be_three_numbers(text: str) -> None:
    with pytest.raises(UsageError, match="--split"):
        SplitFractions.parse(text)


def test_split_text_is_parsed() -> None:
    assert SplitFractions.parse("0.7, 0.2, 0.1") == SplitFractions(0.7, 0.2, 0.1)
