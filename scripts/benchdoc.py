"""Writes one benchmark script's section into docs/benchmarks.md, between its own markers."""

from __future__ import annotations

from pathlib import Path

HEADER = "# hearth benchmarks\n\nEach section is written by the script it names; rerun it to refresh.\n"


def write_section(path: Path, name: str, body: str) -> str:
    """Replace (or append) the section marked `name`; return it as written."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else HEADER
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    return section
