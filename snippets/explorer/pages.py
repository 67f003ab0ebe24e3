"""Docs machinery, not shown on a page: the generated diagrams on the pages are rewritten,
or checked, from fresh replays."""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from pathlib import Path

# Diagrams on the pages are generated: a fence right after
#     <!-- diagram: snippets.module:function -->
# holds exactly function().mermaid() (or function() if it returns text).
FENCE = re.compile(r"<!-- diagram: (?P<ref>[\w.]+:\w+) -->\n```mermaid\n(?P<body>.*?)\n```", re.S)
DOCS = Path(__file__).resolve().parents[2] / "docs"


def render(ref: str) -> str:
    """The diagram text for ``module:function``."""
    module, _, function = ref.partition(":")
    made = getattr(importlib.import_module(module), function)()
    return made if isinstance(made, str) else made.mermaid()


def page_diagrams(page: Path) -> list[tuple[str, str]]:
    """Each generated diagram on a page: (reference, text in the page)."""
    return [(m["ref"], m["body"]) for m in FENCE.finditer(page.read_text(encoding="utf-8"))]


def update_diagrams(pages: Sequence[Path], write: bool) -> list[str]:
    """Regenerate every marked diagram; return the references whose text changed."""
    changed = []
    for page in pages:
        text = page.read_text(encoding="utf-8")

        def fresh(match: re.Match[str]) -> str:
            body = render(match["ref"])
            if body != match["body"]:
                changed.append(f"{page.name}: {match['ref']}")
            return f"<!-- diagram: {match['ref']} -->\n```mermaid\n{body}\n```"

        new = FENCE.sub(fresh, text)
        if write and new != text:
            page.write_text(new, encoding="utf-8")
    return changed
