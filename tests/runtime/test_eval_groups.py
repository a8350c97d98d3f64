"""Groups for a per-group evaluation: UTKFace's file names (race x gender, age band), and a
user's CSV file of path,group, whose bad rows and unknown paths are named in one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from gclf.runtime.errors import EXIT_BAD_DATA
from gclf.runtime.evaluation.groups import (
    AGE_BANDS,
    UTKFACE_GENDERS,
    UTKFACE_RACES,
    GroupsError,
    age_band,
    csv_grouping,
    parse_utkface_name,
    utkface_groupings,
)
from gclf.runtime.listing import list_images
from gclf_testutil import SHARED

UTKFACE_DEV = SHARED / "datasets" / "utkface-dev"


def test_utkface_names_give_age_gender_and_race() -> None:
    labels = parse_utkface_name("61_1_3_20170109150557335.jpg.chip.jpg")
    assert (labels.age, labels.gender, labels.race) == (61, "woman", "Indian")
    assert parse_utkface_name("18_0_0_x.jpg").race == "White" and parse_utkface_name("18_0_4_x.jpg").race == "Others"
    assert parse_utkface_name("30_0_1_x.jpg").gender == "man" and parse_utkface_name("30_0_2_x.jpg").race == "Asian"
    # UTKFace's own misnamed files (a missing field) and codes outside the documented ones have no labels.
    for name in ("39_1_20170116174525125.jpg.chip.jpg", "30_2_0_x.jpg", "30_0_5_x.jpg", "photo.jpg", "_1_0_x.jpg"):
        assert parse_utkface_name(name) is None, name


@pytest.mark.parametrize(("age", "band"), [(0, "0-17"), (17, "0-17"), (18, "18-29"), (29, "18-29"), (30, "30-44"), (44, "30-44"), (45, "45-59"), (59, "45-59"), (60, "60+"), (116, "60+")])
def test_age_bands(age: int, band: str) -> None:
    assert age_band(age) == band


def test_utkface_groupings_leave_unnamed_photos_out_and_refuse_a_set_without_any() -> None:
    paths = [Path("man/25_0_2_a.jpg"), Path("woman/70_1_1_b.jpg"), Path("woman/holiday.jpg")]
    (race_gender, ages), unnamed = utkface_groupings(paths)
    assert race_gender.groups_of(paths) == ["Asian man", "Black woman", None]
    assert ages.groups_of(paths) == ["18-29", "60+", None]
    assert unnamed == [Path("woman/holiday.jpg")]
    assert race_gender.order == tuple(f"{r} {g}" for r in UTKFACE_RACES for g in UTKFACE_GENDERS)
    assert ages.order == tuple(label for _, label in AGE_BANDS)
    with pytest.raises(GroupsError, match="none of the 2 photos has a UTKFace file name") as caught:
        utkface_groupings([Path("a/cat.jpg"), Path("b/dog.jpg")])
    assert caught.value.exit_code == EXIT_BAD_DATA


def _photos(root: Path) -> list[Path]:
    paths = [root / "cats" / "a.jpg", root / "cats" / "deep" / "b.jpg", root / "dogs" / "c.jpg"]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return paths


def test_csv_groups_relative_to_the_data_folder_with_an_optional_header(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "data")
    groups = tmp_path / "groups.csv"
    groups.write_text(f"path,group\ncats/a.jpg,indoor\n\n{paths[1]},outdoor\ncats/a.jpg,indoor\n", encoding="utf-8")
    grouping = csv_grouping(groups, tmp_path / "data", paths)
    assert grouping.groups_of(paths) == ["indoor", "outdoor", None]
    assert grouping.order == ("indoor", "outdoor")
    assert "groups.csv" in grouping.name


def test_csv_bad_rows_and_unknown_paths_are_named_in_one_sentence(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "data")
    groups = tmp_path / "groups.csv"
    groups.write_text(
        "cats/a.jpg,indoor\n"
        "cats/deep/b.jpg\n"  # one column
        "dogs/c.jpg,\n"  # empty group
        "cats/a.jpg,outdoor\n"  # a second, different group
        "birds/d.jpg,sky\n"  # not a photo of the set
        "dogs/c.jpg,x,y\n",  # three columns
        encoding="utf-8",
    )
    with pytest.raises(GroupsError) as caught:
        csv_grouping(groups, tmp_path / "data", paths)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(groups))
    assert "4 bad rows" in message
    for part in ("line 2 has 1 column,", "line 3 has an empty group", "line 4 puts cats/a.jpg in 'outdoor', line 1 in 'indoor'", "line 6 has 3 columns"):
        assert part in message
    assert "1 path that is not a photo of" in message and "birds/d.jpg" in message
    assert caught.value.exit_code == EXIT_BAD_DATA


def test_csv_that_is_not_text_or_is_empty(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "data")
    binary = tmp_path / "groups.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(GroupsError, match="not a UTF-8 text file"):
        csv_grouping(binary, tmp_path / "data", paths)
    binary.write_text("path,group\n", encoding="utf-8")
    with pytest.raises(GroupsError, match="no rows"):
        csv_grouping(binary, tmp_path / "data", paths)


@pytest.mark.realdata
@pytest.mark.skipif(not UTKFACE_DEV.is_dir(), reason=f"needs the UTKFace development set in {UTKFACE_DEV}")
def test_every_utkface_dev_photo_has_groups_that_agree_with_its_class_folder() -> None:
    paths = [p for folder in ("man", "woman") for p in list_images(UTKFACE_DEV / folder)]
    (race_gender, ages), unnamed = utkface_groupings(paths)
    assert unnamed == [] and len(paths) > 1000
    for path in paths:
        group = race_gender.of_path[path]
        assert group.endswith(" " + path.parent.name), (path, group)  # the name's gender is the folder's
        assert ages.of_path[path] != "0-17"  # the development set is adults only
    counts = {g: sum(1 for v in race_gender.of_path.values() if v == g) for g in race_gender.order}
    assert sum(counts.values()) == len(paths)
    assert all(counts[f"{race} {gender}"] > 0 for race in UTKFACE_RACES for gender in UTKFACE_GENDERS)
