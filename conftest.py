"""Sybil runs every Python block of every page (docs/**/*.md) and of README.md.

A page shows snippet sections through pymdownx.snippets (``--8<-- "snippets/x.py:read"``).
Sybil would see only that include line, so each page is first expanded with the same
preprocessor, configured as in mkdocs.yml: the tests run exactly the code the page shows,
and a missing file or section fails here as it fails the build.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import markdown
import pytest
from sybil import Sybil
from sybil.document import Document
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).parent
STARTED = pytest.StashKey["Server"]()  # the Redis this session started, if it did

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
    """Without ``REDIS_URL``, a Redis of the session's own if redis-server is installed
    (tests/engines.py; ``START_REDIS=0`` turns it off), started before pytest-xdist starts
    its workers, so they inherit the address. Under pytest-xdist, each worker gets a Redis
    database of its own: the tests empty theirs with FLUSHDB, which must not wipe a test
    running on the other worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if (worker is None and not os.environ.get("REDIS_URL")
            and os.environ.get("START_REDIS", "1") != "0" and shutil.which("redis-server")):
        from tests.engines import start_redis

        server = start_redis()
        config.stash[STARTED] = server
        os.environ["REDIS_URL"] = server.url
    url = os.environ.get("REDIS_URL")
    if worker and url:
        parts = urlsplit(url)
        base = int(parts.path.strip("/") or 0)
        number = (base + 1 + int(worker.removeprefix("gw"))) % 16  # 16 databases by default
        os.environ["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{number}"))


def pytest_unconfigure(config) -> None:
    server = config.stash.get(STARTED, None)
    if server is not None:
        os.environ.pop("REDIS_URL", None)
        note = server.stop()
        if note:
            print(f"\n{note}")
