"""The README is a front door, read in minutes: short, and every local link leads somewhere.

The reference lives in docs/; a link that no longer resolves (a page renamed, a heading
reworded) is the README drifting from the docs, or one docs page from another.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gclf_testutil import REPO

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MAX_LINES = 250


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def local_links(markdown: str) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # not http:, mailto:, ...


def test_the_readme_is_at_most_250_lines() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"README.md has {lines} lines; the reference belongs in docs/"


def broken_links(page: Path) -> list[str]:
    """The local links of a Markdown page (relative to its folder) that lead nowhere."""
    broken = []
    for link in local_links(page.read_text(encoding="utf-8")):
        path, _, anchor = link.partition("#")
        target = (page.parent / path) if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target.read_text(encoding="utf-8")):
            broken.append(f"{link}: no heading #{anchor} in {target.name}")
    return broken


def test_every_local_link_in_the_readme_resolves() -> None:
    assert any(link.startswith("docs/") for link in local_links(README.read_text(encoding="utf-8")))  # the parser finds the docs links
    assert broken_links(README) == []


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_every_local_link_in_the_docs_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    assert local_links("see [a](docs/a.md), [b](https://example.org/b) and [c](#c)") == ["docs/a.md", "#c"]
    assert "the-layers-studies--export" in _anchors("## The layers: studies > export\n")
    (tmp_path / "b.md").write_text("# B\n\n## Speed\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md#speed) [gone](b.md#the-live-loop) [none](c.md) [here](#a)\n# A\n")
    assert broken_links(page) == ["b.md#the-live-loop: no heading #the-live-loop in b.md", "c.md: no such file"]


def test_the_changelog_describes_this_version() -> None:
    """The version changes when outputs change, and the changelog says how: its newest entry is
    the version pyproject.toml declares."""
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), flags=re.M)
    newest = re.search(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(encoding="utf-8"), flags=re.M)
    assert declared is not None and newest is not None
    assert newest.group(1) == declared.group(1)
