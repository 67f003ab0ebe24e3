"""Docs machinery, not shown on a page: the generated diagrams and the ``main()``
transcripts on the pages are rewritten, or checked, from fresh runs."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

# Diagrams on the pages are generated: a fence right after
#     <!-- diagram: snippets.module:function -->
# holds exactly function().mermaid() (or function() if it returns text).
FENCE = re.compile(
    r"<!-- diagram: (?P<ref>[\w.]+:\w+) -->\n```mermaid\n(?P<body>.*?)\n?```", re.S
)  # an empty fence (a new diagram, to be generated) is one too
DOCS = Path(__file__).resolve().parents[2] / "docs"


def words(*paths: Path) -> str:
    """The files' text as one line of single spaces: a phrase matches however the
    page wraps it (how the tests read a page for a claim it must or must not make)."""
    return " ".join(" ".join(p.read_text(encoding="utf-8").split()) for p in paths)


def render(ref: str) -> str:
    """The diagram text for ``module:function``."""
    module, _, function = ref.partition(":")
    made = getattr(importlib.import_module(module), function)()
    return made if isinstance(made, str) else made.mermaid()


def page_diagrams(page: Path) -> list[tuple[str, str]]:
    """Each generated diagram on a page: (reference, text in the page)."""
    return [
        (m["ref"], m["body"]) for m in FENCE.finditer(page.read_text(encoding="utf-8"))
    ]


def update_diagrams(pages: Sequence[Path], write: bool) -> list[str]:
    """Regenerate every marked diagram; return the references whose text changed."""
    changed = []
    for page in pages:
        text = page.read_text(encoding="utf-8")

        def fresh(match: re.Match[str], page: Path = page) -> str:
            body = render(match["ref"])
            if body != match["body"]:
                changed.append(f"{page.name}: {match['ref']}")
            return f"<!-- diagram: {match['ref']} -->\n```mermaid\n{body}\n```"

        new = FENCE.sub(fresh, text)
        if write and new != text:
            page.write_text(new, encoding="utf-8")
    return changed


# A module's `main()` transcript is kept in one place: the page's "Run it yourself" box,
# where Sybil checks it. `python -m snippets.explorer --transcripts` rewrites it from a
# fresh run (`--check` only compares), on fakeredis, as a newcomer runs it.
PYCON = re.compile(
    r"^(?P<indent>[ \t]*)```pycon\n(?P<body>.*?)^(?P=indent)```", re.S | re.M
)


def page_module(page: Path) -> str:
    """``docs/patterns/cache-aside.md`` -> ``snippets.patterns.cache_aside``."""
    parts = page.with_suffix("").parts[-2:]  # section, page
    return "snippets." + ".".join(parts).replace("-", "_")


def transcript(module: str) -> list[str]:
    """What ``module.main()`` prints, line by line, on fakeredis."""
    saved = os.environ.pop("REDIS_URL", None)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            importlib.import_module(module).main()
    finally:
        if saved is not None:
            os.environ["REDIS_URL"] = saved
    return printed.getvalue().rstrip("\n").split("\n")


def update_transcripts(pages: Sequence[Path], write: bool) -> list[str]:
    """Rewrite the output of every ``>>> main()`` on the pages; return the pages that
    changed."""
    changed = []
    for page in pages:
        text = page.read_text(encoding="utf-8")

        def fresh(block: re.Match[str], page: Path = page) -> str:
            indent, lines = block["indent"], block["body"].split("\n")
            for i, line in enumerate(lines):
                if line.strip() == ">>> main()":
                    end = next(
                        (
                            j
                            for j in range(i + 1, len(lines))
                            if lines[j].lstrip().startswith(">>>")
                            or not lines[j].strip()
                        ),
                        len(lines),
                    )
                    output = [
                        indent + (out.rstrip() or "<BLANKLINE>")
                        for out in transcript(page_module(page))
                    ]
                    lines[i + 1 : end] = output
                    break
            return f"{indent}```pycon\n" + "\n".join(lines) + f"{indent}```"

        new = PYCON.sub(fresh, text)
        if new != text:
            changed.append(page.name)
            if write:
                page.write_text(new, encoding="utf-8")
    return changed
