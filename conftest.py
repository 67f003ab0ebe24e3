"""Sybil runs every Python block of every page (docs/**/*.md) and of README.md.

A page shows snippet sections through pymdownx.snippets (``--8<-- "snippets/x.py:read"``).
Sybil would see only that include line, so each page is first expanded with the same
preprocessor, configured as in mkdocs.yml: the tests run exactly the code the page shows,
and a missing file or section fails here as it fails the build.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import markdown
from sybil import Sybil
from sybil.document import Document
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).parent

# Fences a reader sees as Python: ```python, ```pycon, with or without attributes
# (title="...", hl_lines="..."). Sybil matches the info string exactly, so the test copy of
# the page is normalised to a bare ```python.
PYTHON_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?:python|pycon|py)\b[^\n]*$", re.M)


def expand_snippets(text: str) -> str:
    """Inline every ``--8<--`` include, as mkdocs does when it builds the page."""
    md = markdown.Markdown(
        extensions=["pymdownx.snippets"],
        extension_configs={"pymdownx.snippets": {"base_path": [str(ROOT)], "check_paths": True}},
    )
    return "\n".join(md.preprocessors["snippet"].run(text.split("\n")))


class ExpandedMarkdownDocument(Document):
    @classmethod
    def parse(cls, path: str, *parsers, encoding: str = "utf-8") -> Document:
        text = expand_snippets(Path(path).read_text(encoding=encoding))
        text = PYTHON_FENCE.sub(r"\g<indent>\g<fence>python", text)
        document = cls(text, path)
        for parser in parsers:
            for region in parser(document):
                document.add(region)
        return document


def _sybil(path: str, patterns: list[str]) -> Sybil:
    # Every module starts with `from __future__ import annotations`; the page's blocks are
    # compiled the same way, so a shown section's annotations name what the module has.
    return Sybil(
        parsers=[PythonCodeBlockParser(future_imports=["annotations"]), SkipParser()],
        path=path,
        patterns=patterns,
        document_types={".md": ExpandedMarkdownDocument},
    )


# `path="docs", patterns=["*.md"]` walks every subfolder; a "docs/**/*.md" pattern would
# silently skip files.
pytest_collect_file = (_sybil("docs", ["*.md"]) + _sybil(".", ["README.md"])).pytest()


def pytest_configure(config) -> None:
    """Under pytest-xdist, each worker gets a Redis database of its own: the tests empty
    theirs with FLUSHDB, which must not wipe a test running on the other worker."""
    worker, url = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("REDIS_URL")
    if worker and url:
        parts = urlsplit(url)
        base = int(parts.path.strip("/") or 0)
        number = (base + 1 + int(worker.removeprefix("gw"))) % 16  # 16 databases by default
        os.environ["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{number}"))
