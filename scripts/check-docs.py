#!/usr/bin/env python3
"""Checks the links of the documentation: every relative link in README.md,
ARCHITECTURE.md, SECURITY.md, CHANGELOG.md, benches/RESULTS.md and the book
(docs/src) names a file that exists and, after `#`, a heading of that file;
every page of the book is in its SUMMARY.md, and every SUMMARY.md entry
exists. Prints each broken link and exits 1 if there is one."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """The ids GitHub and mdBook give a file's headings (both lower-case the
    text, drop punctuation but `-` and `_`, and turn spaces into `-`)."""
    found, fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
            continue
        match = re.match(r"^#{1,6} (.*)$", line)
        if match and not fence:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def links(path: Path):
    """(line, target) of every link outside code, links that wrap over two
    lines included."""
    kept, fence = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
            kept.append("")
            continue
        # Inline code holds examples, not links.
        kept.append("" if fence else re.sub(r"`[^`]*`", "", line))
    text = "\n".join(kept)
    flat = text.replace("\n", " ")
    for match in LINK.finditer(flat):
        yield text.count("\n", 0, match.start()) + 1, match.group(1)


def main() -> int:
    book = ROOT / "docs" / "src"
    files = [ROOT / n for n in ("README.md", "ARCHITECTURE.md", "SECURITY.md", "CHANGELOG.md")]
    files += [ROOT / "benches" / "RESULTS.md"]
    files += sorted(book.rglob("*.md"))
    broken = []
    for path in files:
        if not path.exists():
            broken.append(f"{path.relative_to(ROOT)}: missing")
            continue
        for number, target in links(path):
            if re.match(r"^[a-z]+:", target):
                continue
            name, _, anchor = target.partition("#")
            linked = (path.parent / name).resolve() if name else path
            where = f"{path.relative_to(ROOT)}:{number}: {target}"
            if not linked.exists():
                broken.append(f"{where}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{where}: no heading #{anchor} there")
    summary = book / "SUMMARY.md"
    listed = {(book / t).resolve() for _, t in links(summary)} if summary.exists() else set()
    for page in sorted(book.rglob("*.md")):
        if page.name != "SUMMARY.md" and page.resolve() not in listed:
            broken.append(f"{page.relative_to(ROOT)}: not in docs/src/SUMMARY.md")
    for line in broken:
        print(line)
    if broken:
        print(f"{len(broken)} broken link(s) in the documentation", file=sys.stderr)
        return 1
    print(f"documentation links: {len(files)} files checked, none broken")
    return 0


if __name__ == "__main__":
    sys.exit(main())
