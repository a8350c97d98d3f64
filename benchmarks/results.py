"""The benchmarks' results, one file per machine class, and the page generated from them.

    python -m benchmarks.results --write docs/measurements.md   # render the page
    python -m benchmarks.results --check docs/measurements.md   # exit 1 if the page is not what the files give

**Where.** `benchmarks/results/<machine>.json`, one file per machine class: the CPU class that
gclf.runtime.cpu_class detects (what decides onnxruntime's int8 arithmetic) plus the CPU
family from the model name, e.g. `avx2-epyc.json`, `avx512-vnni-epyc.json`,
`avx512-vnni-xeon.json`; figures measured on emulated CPUs name theirs (`arm-emulated-pi`).

**What.** Each file is a JSON list of records, one per figure, sorted by benchmark and figure:

    {"benchmark": "benchmarks.accuracy",            # the module (or gclf command) that measured it
     "figure": "the recommended recipe",            # what it is; unique per benchmark and machine
     "topic": "accuracy",                            # the page's section: a key of TOPICS
     "table": {"columns": ["data", "images", "fp32", ...], "rows": [["gender-faces test split", 230, "97.83%", ...]]},
     "values": {"training wall time (min)": 35},     # and/or a table: label -> value (units in the label or the value)
     "cpu": {"model": "AMD EPYC", "cores": 2, "class": "avx512-vnni"},
     "command": "python -m benchmarks.accuracy --recipe OUT",   # exact, with placeholders for local paths
     "commit": "c6ca8ca",                            # the commit measured ("-dirty": uncommitted changes beside it)
     "date": "2026-12-01",
     "conditions": {"model": "...", "init": "random", "data": "gender-faces, 80/10/10 split, seed 0", "threads": 2, "load": "1-2"},
     "reading": "what the figure shows, in a sentence or two (optional)"}

Every accuracy figure says its initialisation in `conditions["init"]` (random everywhere so
far: no ImageNet weights were available where these ran).

**How they get there.** A benchmark run with `--record` calls `record(...)`, which replaces
the record of the same benchmark and figure in this machine's file (or appends it), then
renders the page again. A record is replaced whole: the new run's figures, command, commit,
conditions; the old `reading` goes with it, since it described the old figures (write a new
one into the JSON by hand, then `--write` the page). Nothing is recorded without `--record`,
and never into benchmarks/results/ from a test. Figures that no benchmark writes (a gclf
command timed by hand) are records added to the JSON by hand, with the same fields.

**The page.** docs/measurements.md is `render(load())`: a section per topic, each figure with
its CPU, command, commit and conditions. tests/benchmarks/test_results.py checks that the
page is exactly that, at most 250 lines, with no issue number and no local path. History
(superseded figures, earlier runs) lives in the git log of the page and of these files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGE = REPO / "docs" / "measurements.md"
PAGE_NAME = "docs/measurements.md"
MAX_PAGE_LINES = 250

# The page's sections, in order: key -> heading. A record's `topic` is one of the keys.
TOPICS: dict[str, str] = {
    "study": "The study's findings, reproduced",
    "accuracy": "Accuracy of the recommended recipe",
    "faces": "Faces: detection and crops",
    "int8": "int8 against fp32, and across CPU classes",
    "speed": "Speed",
    "live": "The live loop",
    "tracks": "Tracks: one person, one answer",
    "serve": "The browser view",
    "hostile": "Hostile input and faults",
    "scale": "Large photo sets",
    "fleet": "A fleet over MQTT",
    "cameras": "Several cameras on one device",
}
# Topics whose figures are accuracies: their records must say the initialisation.
ACCURACY_TOPICS = frozenset({"study", "accuracy", "faces"})

REQUIRED = ("benchmark", "figure", "topic", "cpu", "command", "commit", "date", "conditions")
COMMIT = re.compile(r"^[0-9a-f]{7,40}(-dirty)?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Absolute paths of a development machine, and issue numbers: neither belongs on the page.
LOCAL_PATH = re.compile(r"(?<![\w.])/(work|root|home/|tmp|Users/|var/folders)\b")
ISSUE_NUMBER = re.compile(r"\bissues? #?\d+|(?<![\w&])#\d+\b", re.I)

Cell = str | int | float | bool | None
# The benchmarks' --record option.
RECORD_HELP = "Also write this run's figures into benchmarks/results/<this machine>.json and render docs/measurements.md again."


@dataclass(frozen=True)
class Table:
    """A small table: column names (units in brackets, "b1 (ms)") and rows of cells."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        rows = [list(r) for r in self.rows]
        bad = [r for r in rows if len(r) != len(self.columns)]
        if bad:
            raise ValueError(f"rows of {len(bad[0])} cells in a table of {len(self.columns)} columns: {bad[0]}")
        return {"columns": list(self.columns), "rows": rows}


# --- where and what: this machine, this commit, this command ---------------------------------

_FAMILIES = ("xeon", "epyc", "ryzen", "threadripper", "core", "celeron", "pentium", "atom", "graviton", "ampere", "neoverse")


def cpu_family(model_name: str) -> str:
    """A short family name from a CPU's model name: "AMD EPYC 9454P" -> "epyc",
    "Raspberry Pi 5 Model B" -> "pi5", "Intel(R) Xeon(R) Processor" -> "xeon"."""
    words = re.sub(r"\((R|TM)\)", " ", model_name, flags=re.I).lower().split()
    pi = re.search(r"raspberry pi (\d+)", " ".join(words))
    if pi:
        return f"pi{pi.group(1)}"
    for word in words:
        if word in _FAMILIES:
            return word
        if re.fullmatch(r"m\d+", word) or word.startswith("cortex-"):
            return word
    rest = [w for w in words if w not in ("intel", "amd", "arm", "apple", "processor", "cpu")]
    return re.sub(r"[^a-z0-9]+", "-", rest[0]).strip("-") if rest else "unknown"


def machine_class(cpu_class: str | None = None, model_name: str | None = None) -> str:
    """This machine's results file name (no suffix): CPU class plus family, "avx512-vnni-xeon"."""
    from gclf.runtime.cpu_class import cpu_model_name, detect_cpu_class

    return f"{cpu_class or detect_cpu_class()}-{cpu_family(model_name or cpu_model_name())}"


def this_cpu() -> dict[str, Any]:
    from gclf.runtime.cpu_class import cpu_model_name, detect_cpu_class

    return {"model": cpu_model_name(), "cores": os.cpu_count(), "class": detect_cpu_class()}


def this_commit(repo: Path = REPO) -> str:
    """The short commit checked out, "-dirty" when tracked files other than the results and
    the page differ from it (the figure then is not that commit's alone)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=7", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results", f":!{PAGE_NAME}")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if changed else commit


def local_path(text: str, repo: Path = REPO) -> str:
    """An absolute path as the page may show it: relative to the repository, ../shared/... for
    the shared data beside the checkout, else its last two parts (a run folder and its file)."""
    path = Path(text)
    if not path.is_absolute():
        return text
    for base, prefix in ((repo, ""), (repo.parent / "shared", "../shared/")):
        try:
            return prefix + str(path.relative_to(base)) if path != base else (prefix.rstrip("/") or ".")
        except ValueError:
            pass
    return str(Path(*path.parts[-2:])) if len(path.parts) > 2 else path.name


def this_command(module: str, argv: Sequence[str] | None = None) -> str:
    """`python -m MODULE ARGS` as this process was started, less --record, local paths made
    relative (`local_path`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    shown = []
    for arg in args:
        if arg == "--record":
            continue
        option, eq, value = arg.partition("=")
        if eq and option.startswith("--"):
            shown.append(f"{option}={local_path(value)}")
        else:
            shown.append(local_path(arg))
    return shlex.join(["python", "-m", module, *shown])


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def model_conditions(path: Path, metadata: Any) -> dict[str, str]:
    """"model" and "init" conditions from a gclf model's metadata (a ModelMetadata): its input,
    variant and the training summary gclf-export wrote into it."""
    t = metadata.training
    parts = [f"{metadata.spec.input_width} px {metadata.variant}", str(t.get("input_kind", "")).replace("_", " ")]
    if t.get("max_epochs"):
        parts.append(f"{t['max_epochs']} epochs, {t.get('optimizer', '')} learn rate {t.get('learn_rate')}, batch {t.get('batch_size')}".replace("  ", " "))
    if t.get("test_accuracy") is not None:
        parts.append(f"{100 * t['test_accuracy']:.1f}% on its test split ({t.get('test_images')} images)")
    return {"model": f"{Path(path).name}: " + ", ".join(p for p in parts if p), "init": t.get("init", "not recorded in the model")}


# --- the files ---------------------------------------------------------------------------------


def problems(rec: Mapping[str, Any]) -> list[str]:
    """What is missing or malformed in one record (empty: none)."""
    out = [f"no {k}" for k in REQUIRED if not rec.get(k)]
    if rec.get("topic") and rec["topic"] not in TOPICS:
        out.append(f"topic {rec['topic']!r} is none of {list(TOPICS)}")
    if not rec.get("table") and not rec.get("values"):
        out.append("neither a table nor values")
    table = rec.get("table")
    if table and any(len(r) != len(table["columns"]) for r in table["rows"]):
        out.append("a table row whose length is not the number of columns")
    cpu = rec.get("cpu") or {}
    if not cpu.get("model") or not cpu.get("cores"):
        out.append("a CPU without its model name or cores")
    if rec.get("commit") and not COMMIT.match(str(rec["commit"])):
        out.append(f"commit {rec['commit']!r} is not a commit")
    if rec.get("date") and not DATE.match(str(rec["date"])):
        out.append(f"date {rec['date']!r} is not YYYY-MM-DD")
    if rec.get("topic") in ACCURACY_TOPICS and "init" not in (rec.get("conditions") or {}):
        out.append("an accuracy figure that does not say its initialisation (conditions.init)")
    return out


def load(folder: Path = RESULTS) -> list[dict[str, Any]]:
    """Every record of every results file, each with its `machine` (the file's name)."""
    records = []
    for path in sorted(folder.glob("*.json")):
        for rec in json.loads(path.read_text(encoding="utf-8")):
            records.append({**rec, "machine": path.stem})
    return records


def _dump(value: Any, indent: int = 0) -> str:
    """JSON with a table row (a list of plain values) on one line: diffs show the row that changed."""
    pad = "  " * indent
    if isinstance(value, dict):
        items = [f'{pad}  {json.dumps(k, ensure_ascii=False)}: {_dump(v, indent + 1)}' for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}" if items else "{}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(f"{pad}  {_dump(v, indent + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)


def write_file(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    ordered = sorted(({k: v for k, v in r.items() if k != "machine"} for r in records), key=lambda r: (r["benchmark"], r["figure"]))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(_dump(ordered) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def record(
    benchmark: str,
    figure: str,
    *,
    topic: str,
    conditions: Mapping[str, Any],
    table: Table | None = None,
    values: Mapping[str, Cell] | None = None,
    reading: str | None = None,
    command: str | None = None,
    machine: str | None = None,
    cpu: Mapping[str, Any] | None = None,
    commit: str | None = None,
    date: str | None = None,
    folder: Path = RESULTS,
    page: Path | None = PAGE,
) -> Path:
    """Write one figure into its machine's results file (replacing the record of the same
    benchmark and figure), render the page again (unless `page` is None); returns the file.

    Defaults: this machine's class and CPU, the checked-out commit, today, and the command
    this process was started with (`this_command(benchmark)`). A load average is added to
    the conditions when they give none.
    """
    if "PYTEST_CURRENT_TEST" in os.environ and folder.resolve() == RESULTS.resolve():
        raise RuntimeError("a test run does not write the committed benchmark results")
    rec: dict[str, Any] = {"benchmark": benchmark, "figure": figure, "topic": topic}
    if table is not None:
        rec["table"] = table.as_json()
    if values:
        rec["values"] = dict(values)
    rec.update(
        cpu=dict(cpu or this_cpu()),
        command=command or this_command(benchmark),
        commit=commit or this_commit(),
        date=date or datetime.date.today().isoformat(),
        conditions={**conditions, **({} if "load" in conditions else {"load": f"{load_average()} at the end"})},
    )
    if reading:
        rec["reading"] = reading
    wrong = problems(rec)
    if wrong:
        raise ValueError(f"{benchmark}, {figure!r}: " + "; ".join(wrong))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{machine or machine_class(rec['cpu'].get('class'), rec['cpu']['model'])}.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    kept = [r for r in old if (r["benchmark"], r["figure"]) != (benchmark, figure)]
    write_file(path, [*kept, rec])
    print(f"recorded {benchmark}: {figure!r} in {local_path(str(path))}", file=sys.stderr)
    if page is not None:
        page.write_text(render(load(folder)), encoding="utf-8")
    return path


# --- the page ----------------------------------------------------------------------------------

HEADER = f"""# Measurements

Every figure gclf's documents quote, with the CPU it ran on, the command that measured it and
the commit it measured. Generated from the benchmarks' result files, `benchmarks/results/<machine>.json`
(one per machine class: the CPU class of `gclf.runtime.cpu_class` plus the CPU family), by
`python -m benchmarks.results --write {PAGE_NAME}`: do not edit this page by hand. A benchmark
run with `--record` replaces its figure in this machine's file and renders the page again;
`benchmarks/results.py` documents the format. Earlier and superseded figures are in the git log.

All accuracies are from random initialisation (no ImageNet weights were available), on the
shared data sets: gender-faces (2305 face photos, two classes; split 80/10/10 with the seed
given) and utkface-dev (2000 face photos of another source, never trained on). Speed figures
are the named CPU's under the load given, mostly shared 2-core virtual machines: read them as
ratios within one run, not as absolute claims; on your own CPU, `gclf-bench` is the measurement."""


def _cell(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return str(value)  # as recorded: 39.0 stays 39.0
    return str(value).replace("|", "\\|").replace("\n", " ")


def _value(label: str, value: Cell) -> str:
    """"CPU time (s)", 41.8 -> "CPU time: 41.8 s"; a label without a unit -> "label: value"."""
    unit = re.fullmatch(r"(.*) \(([^()]+)\)", label)
    if unit and not isinstance(value, str):
        name, u = unit.groups()
        return f"{name}: {_cell(value)}{'' if u == '%' else ' '}{u}"
    return f"{label}: {_cell(value)}"


def _cpu(rec: Mapping[str, Any]) -> str:
    cpu = rec["cpu"]
    cls = f", {cpu['class']}" if cpu.get("class") else ""
    return f"{cpu['model']}, {cpu['cores']} cores{cls}"


def render_record(rec: Mapping[str, Any]) -> list[str]:
    """A figure: one line with its name, values, reading and provenance, then its table."""
    line = f"**{rec['figure']}.**"
    if rec.get("values"):
        values = "; ".join(_value(k, v) for k, v in rec["values"].items())
        line += f" {values[:1].upper()}{values[1:]}."
    if rec.get("reading"):
        line += f" {rec['reading']}"
    conditions = "; ".join(f"{k}: {_cell(v)}" for k, v in rec["conditions"].items())
    line += f" *Measured by* `{rec['command']}` *on* {_cpu(rec)} (`{rec['machine']}`), commit {rec['commit']}, {rec['date']}; {conditions}."
    lines = [line, ""]
    table = rec.get("table")
    if table:
        lines.append("| " + " | ".join(_cell(c) for c in table["columns"]) + " |")
        lines.append("|" + "---|" * len(table["columns"]))
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
        lines.append("")
    return lines


def render(records: Iterable[Mapping[str, Any]]) -> str:
    """The page: the header, then a section per topic with its figures (by benchmark, figure, machine)."""
    records = list(records)
    wrong = [f"{r.get('machine')}: {r.get('benchmark')}, {r.get('figure')!r}: {'; '.join(p)}" for r in records if (p := problems(r))]
    if wrong:
        raise ValueError("malformed results:\n" + "\n".join(wrong))
    lines = [HEADER, ""]
    for topic, heading in TOPICS.items():
        mine = sorted((r for r in records if r["topic"] == topic), key=lambda r: (r["benchmark"], r["figure"].lower(), r["machine"]))
        if not mine:
            continue
        lines += [f"## {heading}", ""]
        for rec in mine:
            lines += render_record(rec)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--write", type=Path, metavar="PAGE", help="write the page here")
    what.add_argument("--check", type=Path, metavar="PAGE", help="exit 1 if PAGE is not what the result files give")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder of result files")
    args = parser.parse_args(argv)
    text = render(load(args.results))
    if args.write:
        args.write.write_text(text, encoding="utf-8")
        print(f"wrote {args.write}: {len(text.splitlines())} lines", file=sys.stderr)
    elif args.check:
        if args.check.read_text(encoding="utf-8") != text:
            print(f"{args.check} is not what {local_path(str(args.results))} gives: python -m benchmarks.results --write {args.check}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
