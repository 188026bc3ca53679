"""Every relative link in the README and docs/ leads somewhere: the file exists and an
`#anchor` names a heading of it (GitHub's rule for heading ids), images included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def heading_ids(text: str) -> set[str]:
    """GitHub's ids: lower case, punctuation but `-` and `_` dropped, spaces to `-`; a
    repeated heading gets `-1`, `-2`, ..."""
    ids: set[str] = set()
    for line in prose_lines(text):
        if match := re.match(r"#{1,6} (.*)", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            candidate, n = slug, 0
            while candidate in ids:
                n += 1
                candidate = f"{slug}-{n}"
            ids.add(candidate)
    return ids


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced and indented code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and not line.startswith("    "):
            lines.append(line)
    return lines


def test_heading_ids_follow_githubs_rule():
    ids = heading_ids("# A\n## The paper's protocol: Repeat First, FFM\n## Tape- vs x (y)\n"
                      "```\n# not a heading\n```\n## A\n")
    assert ids == {"a", "the-papers-protocol-repeat-first-ffm", "tape--vs-x-y", "a-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = page.read_text()
    broken = []
    for line in prose_lines(text):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{target}: no file {file.relative_to(ROOT)}")
            elif anchor and file.suffix == ".md" and anchor not in heading_ids(file.read_text()):
                broken.append(f"{target}: no heading with id {anchor!r}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)
