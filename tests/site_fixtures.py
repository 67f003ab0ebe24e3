"""The built site, served on 127.0.0.1, and a Chromium to visit it: session fixtures shared
by tests/test_site.py and tests/test_stepper.py (tests/conftest.py makes them fixtures, once,
so one session runs one build, one server and one Chromium). See tests/test_site.py.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

# Chromium is launched as the build launches it to draw the diagrams: offline, on loopback.
from hooks.diagrams import CHROMIUM, LAUNCH_ARGS, LOCAL_HOST

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path(os.environ.get("SITE_TEST_CONFIG", ROOT / "mkdocs.yml")).resolve()
SOURCE = CONFIG.parent  # where docs/ and snippets/ of the site under test live
IN_CI = os.environ.get("CI", "").lower() == "true"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    # The snippet files as the site was built from them, for the copy-button test.
    shutil.copytree(SOURCE / "snippets", out.parent / "snippets-as-built")
    built = os.environ.get("SITE_DIR")  # `make test` builds once, strictly, and shares it
    if built:
        if not (Path(built) / "index.html").is_file():
            pytest.fail(f"SITE_DIR={built} holds no built site (no index.html)")
        shutil.copytree(built, out, dirs_exist_ok=True)
        return out
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # pymdownx.snippets resolves include paths from the working directory: the site's root.
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", str(CONFIG), "-d", str(out)],
        cwd=SOURCE, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def base_url(site_dir: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer((LOCAL_HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOCAL_HOST}:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true: the browser tests must run, but {reason}")
    pytest.skip(f"{reason}; to run the browser tests: apt-get install chromium (or set CHROMIUM=/path) "
                "and install requirements.lock (playwright)")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        _unavailable(f"Chromium was not found at {CHROMIUM}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


# --- one visit to one page, with everything it did recorded --------------------------------


@dataclass
class Visit:
    page: Any
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # console errors, page errors, failures

    def external_requests(self) -> list[str]:
        return [url for url in self.requests if not _is_local(url)]


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"data", "blob", "about"} or parts.hostname == LOCAL_HOST


@pytest.fixture
def open_page(browser: Any, base_url: str) -> Iterator[Any]:
    contexts: list[Any] = []

    def open_(path: str, *, scheme: str = "light", viewport: dict[str, int] = DESKTOP,
              rewrite: Callable[[str], str] | None = None, **options: Any) -> Visit:
        """Open the page; ``rewrite``, if given, changes its HTML before the browser reads it."""
        context = browser.new_context(
            color_scheme=scheme, viewport=viewport, service_workers="block", **options
        )
        contexts.append(context)
        if rewrite:
            context.route(base_url + path, lambda route: route.fulfill(
                response=(response := route.fetch()), body=rewrite(response.text())))
        page = context.new_page()
        visit = Visit(page)
        context.on("request", lambda request: visit.requests.append(request.url))
        context.on("requestfailed", lambda request: visit.problems.append(
            f"request failed: {request.url} ({request.failure})"))
        context.on("response", lambda response: response.status >= 400 and visit.problems.append(
            f"HTTP {response.status}: {response.url}"))
        page.on("console", lambda message: message.type == "error" and visit.problems.append(
            f"console error: {message.text}"))
        page.on("pageerror", lambda error: visit.problems.append(f"page error: {error}"))
        page.goto(base_url + path, wait_until="load")
        page.wait_for_load_state("networkidle")
        return visit

    yield open_
    for context in contexts:
        context.close()
