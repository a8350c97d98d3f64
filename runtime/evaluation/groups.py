"""Which group each photo belongs to: from UTKFace's file names, or from a CSV file.

UTKFace names its files `AGE_GENDER_RACE_DATE...jpg` (gender 0 man, 1 woman; race 0 White,
1 Black, 2 Asian, 3 Indian, 4 Others): they give two groupings, race x gender and age band.
A CSV file gives one grouping of the user's own: rows `path,group`, a path relative to the
data folder (or absolute), an optional header row `path,group`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from gclf.runtime.errors import EXIT_BAD_DATA, GclfError

UTKFACE_RACES = ("White", "Black", "Asian", "Indian", "Others")  # race codes 0-4
UTKFACE_GENDERS = ("man", "woman")  # gender codes 0-1
# Age bands (inclusive lower bound, label): the last is open-ended. 0-17 is there for the
# full UTKFace set, which has children; gender labels for them are a different question.
AGE_BANDS = ((0, "0-17"), (18, "18-29"), (30, "30-44"), (45, "45-59"), (60, "60+"))
_UTKFACE_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_")
CSV_HEADER = ("path", "group")
_LISTED = 5  # bad rows or paths named in an error before "and N more"


class GroupsError(GclfError):
    """A groups file that cannot be used (bad rows, paths not in the data), or photos that
    carry no groups where they should; one sentence names them."""

    exit_code = EXIT_BAD_DATA


@dataclass(frozen=True)
class Grouping:
    """One way of dividing the photos: each photo's group, and the order to show groups in."""

    name: str  # e.g. "race x gender"
    of_path: Mapping[Path, str]  # photo (as listed) -> its group; photos not in it have none
    order: tuple[str, ...] = ()

    def groups_of(self, paths: Sequence[Path]) -> list[str | None]:
        return [self.of_path.get(p) for p in paths]


@dataclass(frozen=True)
class UtkFaceLabels:
    age: int
    gender: str  # "man" or "woman"
    race: str  # one of UTKFACE_RACES


def parse_utkface_name(name: str) -> UtkFaceLabels | None:
    """Age, gender and race from a UTKFace file name; None for a name that is not one."""
    match = _UTKFACE_NAME.match(name)
    if match is None:
        return None
    age, gender, race = (int(g) for g in match.groups())
    return UtkFaceLabels(age, UTKFACE_GENDERS[gender], UTKFACE_RACES[race])


def age_band(age: int) -> str:
    return next(label for low, label in reversed(AGE_BANDS) if age >= low)


def utkface_groupings(paths: Sequence[Path]) -> tuple[list[Grouping], list[Path]]:
    """(race x gender, age band) groupings of the photos, and the photos whose names are not
    UTKFace's (in no group; UTKFace itself has a few such names). Raises `GroupsError` if no
    name is."""
    race_gender: dict[Path, str] = {}
    ages: dict[Path, str] = {}
    unnamed = []
    for path in paths:
        labels = parse_utkface_name(path.name)
        if labels is None:
            unnamed.append(path)
            continue
        race_gender[path] = f"{labels.race} {labels.gender}"
        ages[path] = age_band(labels.age)
    if paths and not race_gender:
        raise GroupsError(
            f"none of the {len(paths)} photos has a UTKFace file name (AGE_GENDER_RACE_..., e.g. {paths[0].name} does not), "
            "so they cannot be grouped by race, gender and age"
        )
    order = tuple(f"{r} {g}" for r in UTKFACE_RACES for g in UTKFACE_GENDERS)
    return [
        Grouping("race x gender", race_gender, order),
        Grouping("age", ages, tuple(label for _, label in AGE_BANDS)),
    ], unnamed


def _listed(items: Sequence[str]) -> str:
    shown = "; ".join(items[:_LISTED])
    return shown + (f"; and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def csv_grouping(csv_path: Path, data_root: Path, paths: Sequence[Path]) -> Grouping:
    """The grouping a `path,group` CSV file gives the photos `paths` (listed under
    `data_root`). Every row must name one of those photos, once, with a non-empty group;
    otherwise `GroupsError` names the bad rows and unknown paths in one sentence. Photos the
    file does not name are in no group."""
    try:
        text = Path(csv_path).read_text(encoding="utf-8-sig")  # -sig: spreadsheet programs write a BOM
    except UnicodeDecodeError:
        raise GroupsError(f"{csv_path}: not a UTF-8 text file; a groups file is CSV rows of path,group") from None
    except OSError as exc:
        raise GroupsError(f"{csv_path}: cannot read ({exc.strerror or exc})") from None
    known = {p.resolve(): p for p in paths}
    of_path: dict[Path, str] = {}
    line_of: dict[Path, int] = {}
    bad: list[str] = []
    unknown: list[str] = []
    rows = list(csv.reader(text.splitlines()))
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not cells or cells == [""]:
            continue
        if number == 1 and tuple(c.lower() for c in cells) == CSV_HEADER:
            continue
        if len(cells) != 2:
            bad.append(f"line {number} has {len(cells)} column{'s' if len(cells) != 1 else ''}, not path,group")
            continue
        name, group = cells
        if not name or not group:
            bad.append(f"line {number} has an empty {'path' if not name else 'group'}")
            continue
        listed = Path(name) if Path(name).is_absolute() else data_root / name
        photo = known.get(listed.resolve())
        if photo is None:
            unknown.append(name)
            continue
        if photo in of_path and of_path[photo] != group:
            bad.append(f"line {number} puts {name} in {group!r}, line {line_of[photo]} in {of_path[photo]!r}")
            continue
        of_path[photo] = group
        line_of.setdefault(photo, number)
    problems = []
    if bad:
        problems.append(f"{len(bad)} bad row{'s' if len(bad) > 1 else ''} ({_listed(bad)})")
    if unknown:
        what = "paths that are not photos" if len(unknown) > 1 else "path that is not a photo"
        problems.append(f"{len(unknown)} {what} of {data_root} ({_listed(unknown)})")
    if problems:
        raise GroupsError(f"{csv_path}: " + " and ".join(problems))
    if not of_path:
        raise GroupsError(f"{csv_path}: no rows of path,group")
    order = tuple(dict.fromkeys(of_path.values()))  # the file's own order
    return Grouping(f"group ({Path(csv_path).name})", of_path, order)
