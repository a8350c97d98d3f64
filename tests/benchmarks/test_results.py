"""docs/measurements.md is generated from benchmarks/results/*.json, and stays a reference.

The page is what `python -m benchmarks.results --write docs/measurements.md` renders from the
committed result files, byte for byte (so nobody edits it by hand), at most 250 lines; every
figure names its CPU, command and commit (a commit of this repository where its history is
here); no issue number and no path of a development machine. `record()` replaces a figure
of the same benchmark on the same machine and keeps the others, and refuses to write the
committed results from a test.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks import results
from gclf_testutil import REPO

PAGE = REPO / "docs" / "measurements.md"


def test_the_page_is_what_the_result_files_render() -> None:
    rendered = results.render(results.load())
    assert PAGE.read_text(encoding="utf-8") == rendered, "run: python -m benchmarks.results --write docs/measurements.md"
    assert results.main(["--check", str(PAGE)]) == 0


def test_the_page_is_a_reference_of_at_most_250_lines() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= results.MAX_PAGE_LINES
    assert not results.ISSUE_NUMBER.search(text), results.ISSUE_NUMBER.search(text)
    assert not results.LOCAL_PATH.search(text), results.LOCAL_PATH.search(text)
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings and set(headings) <= set(results.TOPICS.values())


def test_every_figure_names_its_cpu_command_and_commit() -> None:
    records = results.load()
    assert len(records) >= 20 and len({r["machine"] for r in records}) >= 2
    for rec in records:
        assert results.problems(rec) == [], (rec["machine"], rec["figure"])
    text = PAGE.read_text(encoding="utf-8")
    figures = [line for line in text.splitlines() if line.startswith("**")]
    assert len(figures) == len(records)
    for line in figures:
        assert re.search(r"\*Measured by\* `[^`]+` \*on\* .+, \d+ cores", line), line
        assert re.search(r"commit [0-9a-f]{7,40}(-dirty)?, \d{4}-\d{2}-\d{2}", line), line


def test_each_figures_commit_is_in_this_repositorys_history() -> None:
    git = ["git", "-C", str(REPO)]
    try:
        shallow = subprocess.run([*git, "rev-parse", "--is-shallow-repository"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    if shallow == "true":
        pytest.skip("a shallow clone does not hold the history the figures name")
    for rec in results.load():
        commit = rec["commit"].removesuffix("-dirty")
        found = subprocess.run([*git, "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
        assert found.returncode == 0, f"{rec['machine']}: {rec['figure']!r} names commit {commit}, which this repository does not have"


def test_the_result_files_are_written_as_record_writes_them(tmp_path: Path) -> None:
    # Sorted by benchmark and figure, a table row on one line: a rerun's diff shows what moved.
    for path in sorted(results.RESULTS.glob("*.json")):
        results.write_file(tmp_path / path.name, json.loads(path.read_text(encoding="utf-8")))
        assert path.read_text(encoding="utf-8") == (tmp_path / path.name).read_text(encoding="utf-8"), f"{path.name}: rewrite it with results.write_file"


def _record(folder: Path, figure: str, value: float, **extra) -> Path:
    return results.record(
        "benchmarks.example", figure, topic="speed", conditions={"model": "generated", "threads": 1, "load": "0.1"},
        table=results.Table(["config", "rate (1/s)"], [["a", value]]), command="python -m benchmarks.example --record",
        cpu={"model": "Example CPU", "cores": 4, "class": "avx2"}, commit="abcdef0", date="2026-01-02",
        folder=folder, page=folder / "page.md", **extra,
    )


def test_record_replaces_a_figure_and_keeps_the_others(tmp_path: Path) -> None:
    path = _record(tmp_path, "first", 1.5)
    assert path.name == "avx2-example.json"  # the CPU class plus the family from the model name
    _record(tmp_path, "second", 2.0)
    _record(tmp_path, "first", 3.25, reading="faster now")
    records = results.load(tmp_path)
    assert [(r["figure"], r["table"]["rows"][0][1]) for r in records] == [("first", 3.25), ("second", 2.0)]
    assert records[0]["reading"] == "faster now" and "reading" not in records[1]
    page = (tmp_path / "page.md").read_text()
    assert page == results.render(records)
    assert "| a | 3.25 |" in page and "commit abcdef0, 2026-01-02" in page and "Example CPU, 4 cores, avx2 (`avx2-example`)" in page
    # Another machine class gets a file of its own.
    _record(tmp_path, "first", 9.0, machine="arm-dotprod-pi5")
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["arm-dotprod-pi5.json", "avx2-example.json"]


def test_record_refuses_a_figure_without_its_conditions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="initialisation"):
        results.record("benchmarks.example", "accuracy", topic="accuracy", conditions={"model": "m"}, values={"accuracy (%)": 50.0},
                       command="python -m benchmarks.example", cpu={"model": "Example CPU", "cores": 4}, commit="abcdef0",
                       date="2026-01-02", folder=tmp_path, page=None)
    with pytest.raises(ValueError, match="topic"):
        results.record("benchmarks.example", "x", topic="elsewhere", conditions={"load": "1"}, values={"x": 1},
                       command="python -m benchmarks.example", cpu={"model": "Example CPU", "cores": 4}, commit="abcdef0",
                       date="2026-01-02", folder=tmp_path, page=None)
    assert list(tmp_path.iterdir()) == []


def test_a_test_run_never_writes_the_committed_results() -> None:
    before = {p.name: p.read_bytes() for p in results.RESULTS.glob("*.json")}
    with pytest.raises(RuntimeError, match="test run"):
        results.record("benchmarks.example", "x", topic="speed", conditions={"load": "1"}, values={"x": 1})
    assert {p.name: p.read_bytes() for p in results.RESULTS.glob("*.json")} == before


def test_the_recorded_command_shows_no_local_path() -> None:
    shared = REPO.parent / "shared" / "datasets" / "gender-faces"
    argv = ["--model", "/opt/x/run-7/model.int8.onnx", f"--data={shared}", str(REPO / "benchmarks"), "--record", "--frames", "3"]
    command = results.this_command("benchmarks.example", argv)
    assert command == "python -m benchmarks.example --model run-7/model.int8.onnx --data=../shared/datasets/gender-faces benchmarks --frames 3"
    assert not results.LOCAL_PATH.search(command)


@pytest.mark.parametrize(("model_name", "family"), [
    ("Intel(R) Xeon(R) Processor", "xeon"), ("AMD EPYC 9454P 48-Core Processor", "epyc"), ("Raspberry Pi 5 Model B Rev 1.0", "pi5"),
    ("AMD Ryzen 7 5800X 8-Core Processor", "ryzen"), ("Cortex-A76", "cortex-a76"), ("Apple M2", "m2"),
])
def test_the_machine_class_names_the_cpu_family(model_name: str, family: str) -> None:
    assert results.cpu_family(model_name) == family
    assert results.machine_class("avx2", model_name) == f"avx2-{family}"
