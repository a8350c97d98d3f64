"""scan_folders: classes from sub-folders, unusable files reported by name, duplicates and conflicts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gclf.runtime.errors import BadDataError
from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.scan import ImageStore, scan_folders
from gclf.train.split import SplitFractions, split_samples
from gclf_testutil import noise_bgr, write_image_file

SPEC = PreprocessSpec(input_height=16, input_width=16)


def _scan(*roots: Path, **kwargs):
    return scan_folders(list(roots), ImageStore(SPEC), **kwargs)


def _fill(folder: Path, count: int, seed: int, ext: str = ".png") -> list[Path]:
    return [write_image_file(folder / f"img{i:02d}{ext}", noise_bgr(seed * 1000 + i)) for i in range(count)]


def test_corrupt_and_non_image_files_are_skipped_by_name_and_not_fatal(tmp_path: Path) -> None:
    good = _fill(tmp_path / "a", 3, seed=1) + _fill(tmp_path / "b", 3, seed=2, ext=".jpg")
    text_as_png = tmp_path / "a" / "notes.png"
    text_as_png.write_text("not an image")
    empty = tmp_path / "b" / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "b" / "truncated.jpg"
    truncated.write_bytes(good[-1].read_bytes()[:100])
    (tmp_path / "a" / "README.txt").write_text("ignored: not an image extension")
    reported: list[tuple[str, str]] = []

    scan = _scan(tmp_path, on_skip=lambda path, reason: reported.append((path, reason)))

    assert scan.class_names == ["a", "b"]
    assert sorted(s.path for s in scan.samples) == sorted(good)
    assert sorted(p for p, _ in scan.skipped) == sorted(str(p) for p in (text_as_png, empty, truncated))
    assert reported == scan.skipped
    reasons = dict(scan.skipped)
    assert reasons[str(empty)] == "empty file"
    assert all(reason and not reason.startswith(str(tmp_path)) for reason in reasons.values())  # the path is not repeated


def test_images_in_nested_folders_count_for_their_class(tmp_path: Path) -> None:
    _fill(tmp_path / "a", 2, seed=1)
    nested = _fill(tmp_path / "a" / "2024" / "summer", 2, seed=2)
    _fill(tmp_path / "b", 2, seed=3)
    (tmp_path / ".hidden").mkdir()
    write_image_file(tmp_path / ".hidden" / "x.png", noise_bgr(99))

    scan = _scan(tmp_path)

    assert scan.class_names == ["a", "b"]
    assert scan.class_counts() == {"a": 4, "b": 2}
    assert {s.path for s in scan.samples} >= set(nested)


def test_a_single_class_is_bad_data(tmp_path: Path) -> None:
    _fill(tmp_path / "only", 4, seed=1)

    with pytest.raises(BadDataError, match="at least 2 classes"):
        _scan(tmp_path)


def test_a_class_whose_images_are_all_corrupt_is_bad_data(tmp_path: Path) -> None:
    _fill(tmp_path / "good", 3, seed=1)
    (tmp_path / "broken").mkdir()
    for i in range(2):
        (tmp_path / "broken" / f"{i}.jpg").write_bytes(b"\xff\xd8\xff garbage")

    with pytest.raises(BadDataError, match="broken"):
        _scan(tmp_path)


def test_exact_duplicates_are_kept_and_stay_in_one_split(tmp_path: Path) -> None:
    originals = _fill(tmp_path / "a", 12, seed=1)
    _fill(tmp_path / "b", 12, seed=2)
    copies = [tmp_path / "a" / "copy1.png", tmp_path / "a" / "sub" / "copy2.png"]
    for copy in copies:
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(originals[0], copy)
    group = {str(originals[0]), *map(str, copies)}

    scan = _scan(tmp_path)

    assert len(scan.samples) == 12 + 2 + 12  # the copies are kept
    assert [set(g) for g in scan.duplicate_groups] == [group]
    assert scan.conflicts == []
    for seed in range(8):
        splits = split_samples(scan, SplitFractions(), seed)
        holding = [name for name, samples in splits.items() if group & {str(s.path) for s in samples}]
        assert len(holding) == 1, (seed, holding)


def test_the_same_file_under_two_classes_is_excluded_and_reported(tmp_path: Path) -> None:
    _fill(tmp_path / "cats", 3, seed=1)
    _fill(tmp_path / "dogs", 3, seed=2)
    in_cats = write_image_file(tmp_path / "cats" / "ambiguous.png", noise_bgr(42))
    in_dogs = tmp_path / "dogs" / "ambiguous.png"
    shutil.copyfile(in_cats, in_dogs)

    scan = _scan(tmp_path)

    assert [sorted(g) for g in scan.conflicts] == [sorted([str(in_cats), str(in_dogs)])]
    paths = {s.path for s in scan.samples}
    assert in_cats not in paths and in_dogs not in paths
    assert scan.class_counts() == {"cats": 3, "dogs": 3}
    assert scan.duplicate_groups == []


def test_several_data_folders_are_combined(tmp_path: Path) -> None:
    _fill(tmp_path / "one" / "a", 2, seed=1)
    _fill(tmp_path / "two" / "a", 2, seed=2)
    _fill(tmp_path / "two" / "b", 3, seed=3)

    scan = _scan(tmp_path / "one", tmp_path / "two")

    assert scan.class_counts() == {"a": 4, "b": 3}


def test_a_class_folder_called_unsure_in_any_case_is_refused_even_presplit(tmp_path: Path) -> None:
    _fill(tmp_path / "flat" / "a", 2, seed=1)
    _fill(tmp_path / "flat" / "UNSURE", 2, seed=2)
    _fill(tmp_path / "split" / "train" / "a", 2, seed=3)
    _fill(tmp_path / "split" / "train" / "b", 2, seed=4)
    (tmp_path / "split" / "val" / "unsure").mkdir(parents=True)  # even empty: it would be a class

    for root in (tmp_path / "flat", tmp_path / "split"):
        with pytest.raises(BadDataError, match="'unsure' is reserved for answers below the confidence threshold"):
            _scan(root)
