"""The README is a front door, read in minutes: short, and every local link leads somewhere.

The reference lives in docs/; a link that no longer resolves (a page renamed, a heading
reworded) is the README drifting from the docs.
"""

from __future__ import annotations

import re
from pathlib import Path
from gclf_testutil import REPO

README = REPO / "README.md"
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


def test_every_local_link_in_the_readme_resolves() -> None:
    text = README.read_text(encoding="utf-8")
    links = local_links(text)
    assert any(link.startswith("docs/") for link in links)  # the parser finds the docs links
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = (REPO / path) if path else README
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target.read_text(encoding="utf-8")):
            broken.append(f"{link}: no heading #{anchor} in {target.name}")
    assert broken == []


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    assert local_links("see [a](docs/a.md), [b](https://example.org/b) and [c](#c)") == ["docs/a.md", "#c"]
    assert "the-layers-studies--export" in _anchors("## The layers: studies > export\n")
