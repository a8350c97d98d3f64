"""The `own_process` marker (tests/own_process.py): marked tests run in a child pytest and are
reported where they stand, passed, failed or skipped, and the tests after them set up cleanly."""

from __future__ import annotations

import os

import pytest

from gclf_testutil import TESTS

pytest_plugins = ["pytester"]

FIRST = '''
import os, pytest

@pytest.fixture(scope="module")
def shared():
    return os.getpid()

def test_in_place(shared):
    assert os.environ.get("GCLF_TEST_OWN_PROCESS") is None

@pytest.mark.own_process
def test_passes_in_a_child():
    assert os.environ.get("GCLF_TEST_OWN_PROCESS") == "1"

@pytest.mark.own_process
def test_fails_in_a_child():
    assert 1 == 2, "the child's own failure"

@pytest.mark.own_process
def test_skips_in_a_child():
    pytest.skip("the child's own reason")
'''

SECOND = '''
def test_after_them():
    assert True
'''


def test_marked_tests_run_in_a_child_and_are_reported_in_place(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("GCLF_TEST_OWN_PROCESS", raising=False)
    pytester.makeconftest('pytest_plugins = ["own_process"]\n')
    pytester.makeini("[pytest]\nmarkers =\n    own_process: in a process of its own\n")
    pytester.makepyfile(test_a_first=FIRST, test_b_second=SECOND)

    result = pytester.runpytest_subprocess("-rA")

    result.assert_outcomes(passed=3, failed=1, skipped=1, errors=0)
    result.stdout.fnmatch_lines(["*the child's own failure*", "*the child's own reason*"])
