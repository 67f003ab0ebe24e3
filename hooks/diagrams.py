"""Mermaid diagrams drawn at build time, so that a reader's browser runs no Mermaid at all.

Drawing a sequence diagram takes Mermaid 100-500 ms of main-thread time on a phone, and the
first screen of several pages holds one. After the build, each page that has a diagram is
opened in headless Chromium, where the site's own loader (assets/js/mermaid-lazy.js) hands
every SVG back instead of showing it. Each `<pre class="mermaid">` then becomes what
Material would have made of it in the browser, a `<div class="mermaid">` whose shadow root
holds the SVG, written as a declarative shadow root: the browser attaches it while it
parses the page, with no script (every browser released since February 2024 does). The SVG's colours are Material's CSS variables, which
reach into the shadow root, so one drawing serves the light and the dark scheme.

The drawings are kept in .cache/diagrams/, by the diagram's text and the versions of
Mermaid, Material and the loader: a rebuild draws only what changed. Without Chromium
(CHROMIUM=/path to choose it) the pages keep their sources and the browser draws them, as
before; with CI=true that fails the build instead. DIAGRAMS=browser skips this hook.
"""

from __future__ import annotations

import functools
import hashlib
import html
import http.server
import logging
import os
import re
import shutil
import threading
from pathlib import Path

from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.diagrams")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LOCAL_HOST = "127.0.0.1"
# Chromium, even headless, talks to Google's hosts in the background. These flags turn that
# off, and the resolver rule makes any name but 127.0.0.1 unresolvable, inside Chromium.
# The browser tests launch it the same way (tests/site_fixtures.py).
LAUNCH_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-dev-shm-usage",  # containers give /dev/shm 64 MB
    f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {LOCAL_HOST}",
]
SOURCE = re.compile(r'<pre class="mermaid"><code>(.*?)</code></pre>', re.DOTALL)
DRAW_TIMEOUT_MS = 120_000
LOADER = re.compile(r'<script src="[^"]*assets/js/mermaid-lazy\.js"></script>\n?')


VIEW_BOX = re.compile(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) ([\d.]+)"')


def drawn_diagram(svg: str, text: str) -> str:
    """The HTML that replaces a diagram's source: the SVG in a declarative shadow root, and
    the source beside it (not shown: a shadow host shows only its shadow root), which a
    browser test turns back into a source to check the browser's own drawing. The host
    holds the drawing's height, so the page can skip laying out a diagram far from the
    screen (site.css) without the page's length changing when it is laid out."""
    size = VIEW_BOX.search(svg)
    height = f' style="--diagram-height: {round(float(size[2]))}px"' if size else ""
    return (f'<div class="mermaid"{height}><template shadowrootmode="open">{svg}</template>'
            f'<script type="text/x-mermaid">{text}</script></div>')


def _cache_key(text: str, versions: str) -> str:
    return hashlib.sha256(f"{versions}\0{text}".encode()).hexdigest()


def _versions(site: Path) -> str:
    """What a drawing depends on besides its text: Mermaid, Material's bundle (its Mermaid
    settings and theme CSS) and the loader, each by the hash of its file."""
    files = [site / "assets/js/mermaid/mermaid.esm.min.mjs", site / "assets/js/mermaid-lazy.js",
             *sorted((site / "assets/javascripts").glob("bundle.*.min.js"))]
    return " ".join(hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in files if f.is_file())


def _serve(site: Path) -> http.server.ThreadingHTTPServer:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        (LOCAL_HOST, 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# Mermaid numbers each participant's line and group from a counter it keeps across diagrams,
# so the numbers depend on what was drawn before. Renumbered from 0 in each SVG (nothing
# refers to them), a drawing is the same whatever the order.
COUNTED_IDS = re.compile(r'id="(actor|root-)(\d+)"')


def _renumbered(svg: str) -> str:
    numbers: dict[str, int] = {}
    return COUNTED_IDS.sub(
        lambda m: f'id="{m[1]}{numbers.setdefault(m[2], len(numbers))}"', svg)


DRAW_ALL = """async ([texts, prefix]) => {
    const svgs = [];
    for (const [i, text] of texts.entries()) svgs.push(await window.__mermaidBuild.draw(prefix + i, text));
    return svgs;
}"""


def _draw(site: Path, page_path: Path, texts: list[str]) -> dict[str, str]:
    """Each text's SVG. The page at ``page_path`` is opened and draws its own diagrams the way
    Material does, which hands Material's settings to Mermaid; the rest are drawn in that
    same page, so Mermaid loads once."""
    from playwright.sync_api import TimeoutError, sync_playwright

    server = _serve(site)
    url = f"http://{LOCAL_HOST}:{server.server_address[1]}/{page_path.relative_to(site).as_posix()}"
    own = [html.unescape(s) for s in SOURCE.findall(page_path.read_text(encoding="utf-8"))]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.add_init_script("window.__mermaidBuild = { drawn: [] };")
            page.goto(url)
            try:
                page.wait_for_function(f"window.__mermaidBuild.drawn.length >= {len(own)}",
                                       timeout=DRAW_TIMEOUT_MS)
            except TimeoutError:
                raise PluginError(f"{page_path.relative_to(site)}: its diagrams were not drawn "
                                  f"in {DRAW_TIMEOUT_MS // 1000} s") from None
            results = page.evaluate("window.__mermaidBuild.drawn")
            failed = [r["error"] for r in results if "error" in r]
            if failed:
                raise PluginError(f"{page_path.relative_to(site)}: Mermaid failed: {failed[0]}")
            # Mermaid puts the id it is given in the SVG; the shadow root scopes it, so one
            # fixed id keeps a drawing the same whichever page drew it.
            drawn = {own[r["index"]]: r["svg"].replace(r["id"], "diagram") for r in results}
            rest = [text for text in dict.fromkeys(texts) if text not in drawn]
            prefix = "__mermaid_build_"
            svgs = page.evaluate(DRAW_ALL, [rest, prefix])
            for i, (text, svg) in enumerate(zip(rest, svgs, strict=True)):
                drawn[text] = svg.replace(f"{prefix}{i}", "diagram")
            browser.close()
    finally:
        server.shutdown()
    return drawn


def on_post_build(config, **kwargs) -> None:
    if os.environ.get("DIAGRAMS") == "browser":
        return
    site = Path(config["site_dir"])
    cache = Path(config["config_file_path"]).parent / ".cache" / "diagrams"
    versions = _versions(site)
    pages = {path: [html.unescape(s) for s in SOURCE.findall(path.read_text(encoding="utf-8"))]
             for path in sorted(site.rglob("*.html"))}
    pages = {path: texts for path, texts in pages.items() if texts}

    def cached(text: str) -> Path:
        return cache / f"{_cache_key(text, versions)}.svg"

    missing = [t for texts in pages.values() for t in texts if not cached(t).is_file()]
    if missing:
        if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
            message = (f"Chromium was not found at {CHROMIUM}: {len(missing)} diagrams are "
                       f"left for the browser to draw")
            if os.environ.get("CI", "").lower() == "true":
                raise PluginError(message)
            log.info(message)
            return
        cache.mkdir(parents=True, exist_ok=True)
        for text, svg in _draw(site, next(iter(pages)), missing).items():
            cached(text).write_text(_renumbered(svg), encoding="utf-8")
        log.info(f"diagrams: drew {len(set(missing))} in Chromium")

    def drawing(match: re.Match[str]) -> str:
        svg = cached(html.unescape(match.group(1))).read_text(encoding="utf-8")
        return drawn_diagram(svg, match.group(1))

    for path in pages:
        page = SOURCE.sub(drawing, path.read_text(encoding="utf-8"))
        # The loader has nothing left to draw here, and as a plain script it would hold up the
        # page's first paint.
        page = LOADER.sub("", page)
        path.write_text(page, encoding="utf-8")
    # Drawings no page uses any more (an edited diagram, a new Mermaid) go.
    used = {cached(t).name for texts in pages.values() for t in texts}
    for old in cache.glob("*.svg"):
        if old.name not in used:
            old.unlink()
