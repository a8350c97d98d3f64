"""Tests marked `own_process` run in a Python process of their own, never in the main test process.

Why: once OpenVINO has run in a process, its thread pool (oneTBB) stays, and a later fork in
that process (a training DataLoader's workers) or a GC pass can kill the whole process with
SIGSEGV some of the time; one such crash ends the whole test run with no report. No gclf command
trains and runs OpenVINO in one process, so the product is not exposed; the test run is. So the
tests that load OpenVINO (and only those) run together, one child `pytest` per test module, and
their outcomes are reported here as if they had run in place. `openvino_stays_out` fails any
other test that loads OpenVINO into the main process, naming the marker to add.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _pytest.reports import TestReport

CHILD_ENV = "GCLF_TEST_OWN_PROCESS"  # set in the child: there the marked tests run in place
CHILD_TIMEOUT_S = 1200
_outcomes: dict[str, tuple[str, str, float]] = {}  # nodeid -> (outcome, text, seconds)


def in_child() -> bool:
    return os.environ.get(CHILD_ENV) == "1"


def _junit_key(nodeid: str) -> tuple[str, str]:
    """(classname, name) as pytest's JUnit XML writes a test: the module path dotted, then its
    classes, and the test's name with its parameters."""
    module, *rest = nodeid.split("::")
    return ".".join([module.removesuffix(".py").replace("/", "."), *rest[:-1]]), rest[-1]


def _run_children(items: list[pytest.Item], config: pytest.Config) -> None:
    """Run `items` (one module's marked tests) in one child pytest and record each outcome."""
    base = config._tmp_path_factory.mktemp("own-process")  # the child's own --basetemp inside ours
    xml = base / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", f"--basetemp={base / 'tmp'}", *(i.nodeid for i in items)]
    try:
        proc = subprocess.run(command, cwd=config.rootpath, env={**os.environ, CHILD_ENV: "1"}, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        output = f"the child test process ran past {CHILD_TIMEOUT_S} s\n{exc.stdout or ''}"
    found = _read_junit(xml) if xml.exists() else {}
    for item in items:
        _outcomes[item.nodeid] = found.get(_junit_key(item.nodeid), ("failed", f"no result from the child test process; its output:\n{output[-6000:]}", 0.0))


def _read_junit(xml: Path) -> dict[tuple[str, str], tuple[str, str, float]]:
    results = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, text = "failed", f"{child.get('message', '')}\n{child.text or ''}"
            elif child.tag == "skipped":
                outcome, text = "skipped", child.get("message", "")
        results[(case.get("classname", ""), case.get("name", ""))] = (outcome, text, float(case.get("time", 0)))
    return results


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    if item.get_closest_marker("own_process") is None or in_child():
        return None
    if item.nodeid not in _outcomes:
        module = item.nodeid.split("::")[0]
        _run_children([i for i in item.session.items if i.nodeid.split("::")[0] == module and i.get_closest_marker("own_process")], item.config)
    outcome, text, seconds = _outcomes[item.nodeid]
    longrepr: object = None
    if outcome == "failed":
        longrepr = text
    elif outcome == "skipped":
        path, line, _ = item.location
        longrepr = (str(path), (line or 0) + 1, text.removeprefix("Skipped: "))
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    report = TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, outcome, longrepr, "call", duration=seconds)
    item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    # What the protocol's teardown would do: close the modules and classes the next test does
    # not share (their fixtures were set up by the test before this one).
    item.session._setupstate.teardown_exact(nextitem)
    return True


@pytest.fixture(autouse=True)
def openvino_stays_out(request: pytest.FixtureRequest):
    """A test that loads OpenVINO into the main test process fails, saying which marker it needs."""
    loaded_before = sys.modules.get("openvino") is not None
    yield
    if not in_child() and not loaded_before and sys.modules.get("openvino") is not None:
        pytest.fail("this test loaded OpenVINO into the main test process: mark it @pytest.mark.own_process (tests/own_process.py says why)")
