"""README.md and docs/: every relative link names a file that exists and, with an anchor, a heading of that file."""

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]*)\)")


def heading_anchors(path):
    """GitHub's anchors of a markdown file's headings (code blocks left out)."""
    anchors, fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            text = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_internal_link_resolves():
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file, _, anchor = target.partition("#")
            destination = (page.parent / file) if file else page
            if not destination.exists():
                broken.append(f"{page.name}: {target} (no file)")
            elif anchor and destination.suffix == ".md" and anchor not in heading_anchors(destination):
                broken.append(f"{page.name}: {target} (no heading)")
    assert broken == []


def test_the_front_page_stays_short_and_names_the_two_commands():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    assert "make demo" in readme and "make test" in readme
