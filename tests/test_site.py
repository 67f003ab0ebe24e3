"""The site as readers meet it: the built site, served on 127.0.0.1, in a real Chromium.

The site is built once per session (``mkdocs build --strict``) into a temporary directory and
served from a thread; ``SITE_DIR=site`` uses a site already built that way (``make test``
builds once and shares it with the final checks). Pages are discovered from mkdocs.yml's nav, so every page that is added
is covered without editing this file. Chromium is Debian's (/usr/bin/chromium), driven by the
playwright package; its host resolver answers NOTFOUND for every name but 127.0.0.1, so no
DNS lookup and no request can leave the machine, and the tests assert on the request log that
none was even attempted.

Outside CI, the tests skip (with the reason) when Chromium or playwright is missing; with
CI=true they fail instead. SITE_TEST_CONFIG=path/to/mkdocs.yml runs them against another
copy of the site (used to check, by hand, that a broken page makes them fail).
"""

from __future__ import annotations

import difflib
import doctest
import gzip
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.site_fixtures import (  # the site, its server and Chromium: shared fixtures
    CONFIG,
    DESKTOP,
    LOCAL_HOST,
    PHONE,
    Visit,
)

pytestmark = pytest.mark.browser

DIAGRAM_TIMEOUT_S = 20.0


# --- the pages, from the nav -------------------------------------------------------------


class _ConfigLoader(yaml.SafeLoader):
    """Reads mkdocs.yml without importing what its ``!!python/name`` and ``!ENV`` tags name."""


_ConfigLoader.add_multi_constructor("", lambda loader, suffix, node: None)


@dataclass(frozen=True)
class NavPage:
    title: str
    src: str  # path under docs/, as in the nav

    @property
    def url_path(self) -> str:
        """The page's address under the site root (mkdocs' directory URLs)."""
        stem = re.sub(r"\.(md|ipynb)$", "", self.src)
        if stem == "index":
            return ""
        if stem.endswith("/index"):
            stem = stem[: -len("/index")]
        return stem + "/"


def nav_pages(config: Path = CONFIG) -> list[NavPage]:
    nav = yaml.load(config.read_text(encoding="utf-8"), Loader=_ConfigLoader)["nav"]
    pages: list[NavPage] = []

    def walk(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, str):
                pages.append(NavPage(item, item))
                continue
            for title, value in item.items():
                if isinstance(value, list):
                    walk(value)
                elif not re.match(r"[a-z]+://", value):  # an external link is no page
                    pages.append(NavPage(title, value))

    walk(nav)
    return pages


PAGES = nav_pages()
PAGE_IDS = [page.src for page in PAGES]


# --- the built site, served ---------------------------------------------------------------


# --- Mermaid: count the SVGs inside the diagrams' shadow roots -----------------------------
# The build draws the diagrams (hooks/diagrams.py): each arrives as a <div class="mermaid">
# with a declarative shadow root. A diagram it could not draw (no Chromium) stays a
# <pre class="mermaid"> source, which Material draws in the browser into a closed one.

DRAWN = re.compile(r'<div class="mermaid"[^>]*><template shadowrootmode="open"><svg ')
UNDRAWN = re.compile(r'<pre class="mermaid">')


@dataclass
class PageDiagrams:
    total: int
    for_the_browser: int  # sources left for Mermaid to draw in the reader's browser


def _diagram_sources(site_dir: Path, page: NavPage) -> PageDiagrams:
    html = (site_dir / page.url_path / "index.html").read_text(encoding="utf-8")
    left = len(UNDRAWN.findall(html))
    return PageDiagrams(len(DRAWN.findall(html)) + left, left)


def _pierced_tree(page: Any) -> dict[str, Any]:
    cdp = page.context.new_cdp_session(page)
    try:
        return cdp.send("DOM.getDocument", {"depth": -1, "pierce": True})["root"]
    finally:
        cdp.detach()


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for key in ("children", "shadowRoots"):
        for child in node.get(key, []):
            yield from _walk(child)
    if "contentDocument" in node:
        yield from _walk(node["contentDocument"])


def _classes(node: dict[str, Any]) -> list[str]:
    attributes = node.get("attributes", [])
    pairs = dict(zip(attributes[::2], attributes[1::2], strict=False))
    return pairs.get("class", "").split()


@dataclass
class Diagrams:
    rendered: int  # <div class="mermaid"> hosts whose shadow root holds an <svg>
    texts: list[str]  # every text node of the page, shadow roots included


def _diagrams(page: Any) -> Diagrams:
    rendered, texts = 0, []
    for node in _walk(_pierced_tree(page)):
        if node.get("nodeType") == 3:
            texts.append(node.get("nodeValue", ""))
        if node.get("nodeName") == "DIV" and "mermaid" in _classes(node):
            shadow = [n for root in node.get("shadowRoots", []) for n in _walk(root)]
            rendered += any(n.get("nodeName", "").lower() == "svg" for n in shadow)
    return Diagrams(rendered, texts)


def _wait_for_diagrams(page: Any, expected: int) -> Diagrams:
    deadline = time.monotonic() + DIAGRAM_TIMEOUT_S
    while True:
        diagrams = _diagrams(page)
        if diagrams.rendered >= expected or time.monotonic() > deadline:
            return diagrams
        page.wait_for_timeout(200)


# Material takes the class "mermaid" off a diagram's <pre> while it waits to draw it, so the
# source is found by its first word.
SCROLL_TO_FIRST_DIAGRAM = """() => {
    const source = [...document.querySelectorAll("article pre")].find(pre => !pre.closest("div.highlight")
        && /^\\s*(sequenceDiagram|flowchart|graph|classDiagram|stateDiagram|erDiagram|gantt|pie|timeline)\\b/
            .test(pre.textContent));
    if (source) source.scrollIntoView();
}"""


def _luminance(css_color: str) -> float:
    """Relative luminance (WCAG) of an ``rgb()``/``rgba()`` colour, alpha ignored."""
    channels = [float(c) / 255 for c in re.findall(r"[\d.]+", css_color)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@dataclass
class DiagramText:
    fill: str
    contrast: float  # against the page's background
    height: float  # CSS pixels, as drawn


def _diagram_texts(page: Any) -> list[DiagramText]:
    """The first message text of each drawn diagram: its colour and its drawn size."""
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    cdp = page.context.new_cdp_session(page)
    try:
        root = cdp.send("DOM.getDocument", {"depth": -1, "pierce": True})["root"]
        found = []
        for node in _walk(root):
            if node.get("nodeName") == "DIV" and "mermaid" in _classes(node):
                shadow = [n for r in node.get("shadowRoots", []) for n in _walk(r)]
                texts = [n for n in shadow if n.get("nodeName", "").lower() == "text"
                         and "messageText" in _classes(n)]
                if not texts:
                    continue
                target = cdp.send("DOM.resolveNode", {"nodeId": texts[0]["nodeId"]})["object"]
                fill = cdp.send("Runtime.callFunctionOn", {
                    "objectId": target["objectId"], "returnByValue": True,
                    "functionDeclaration": "function () { return getComputedStyle(this).fill; }",
                })["result"]["value"]
                box = cdp.send("Runtime.callFunctionOn", {
                    "objectId": target["objectId"], "returnByValue": True,
                    "functionDeclaration": "function () { return this.getBoundingClientRect().height; }",
                })["result"]["value"]
                found.append(DiagramText(fill, _contrast(fill, background), box))
        return found
    finally:
        cdp.detach()


LAY_OUT_EVERYTHING = "* { content-visibility: visible !important; }"
"""A style that lays out what site.css skips until it nears the screen, so every box is
measured as it is drawn."""


def _check_page(visit: Visit, expected: PageDiagrams) -> None:
    diagrams_expected = expected.total
    if expected.for_the_browser:
        # Mermaid loads when a diagram comes near the screen (docs/assets/js/mermaid-lazy.js).
        visit.page.evaluate(SCROLL_TO_FIRST_DIAGRAM)
    diagrams = _wait_for_diagrams(visit.page, diagrams_expected)
    errors = [t.strip() for t in diagrams.texts if "syntax error" in t.lower()]
    assert not errors, f"Mermaid drew an error: {errors}"
    assert diagrams.rendered == diagrams_expected, (
        f"{diagrams.rendered} of {diagrams_expected} Mermaid diagrams rendered to an SVG; "
        f"console and page errors: {visit.problems}")
    left = visit.page.locator("pre.mermaid").count()
    assert left == 0, f"{left} Mermaid source block(s) left unrendered"
    assert not visit.external_requests(), f"requests left {LOCAL_HOST}: {visit.external_requests()}"
    assert not visit.problems, "\n".join(visit.problems)
    # Readable in either scheme: message text against the page, at least WCAG AA's 4.5:1.
    faint = [(t.fill, round(t.contrast, 2)) for t in _diagram_texts(visit.page) if t.contrast < 4.5]
    assert not faint, f"diagram text too faint against the page (fill, contrast): {faint}"
    # Mermaid loads once where the browser has diagrams to draw, and never where the build
    # drew them all.
    mermaid_loads = [url for url in visit.requests if url.endswith("/mermaid.esm.min.mjs")]
    assert len(mermaid_loads) == (1 if expected.for_the_browser else 0), (
        f"Mermaid loaded {len(mermaid_loads)} times on a page with {diagrams_expected} "
        f"diagram(s), {expected.for_the_browser} left for the browser to draw")


# --- every nav page: clean, local, diagrams drawn, in light and in dark mode ----------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_loads_clean_and_renders_its_diagrams(open_page, site_dir, page, scheme):
    visit = open_page(page.url_path, scheme=scheme)
    expected_palette = "slate" if scheme == "dark" else "default"
    palette = visit.page.evaluate("document.body.getAttribute('data-md-color-scheme')")
    assert palette == expected_palette, f"the {scheme} palette was not applied"
    _check_page(visit, _diagram_sources(site_dir, page))


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_fits_a_phone(open_page, site_dir, page):
    visit = open_page(page.url_path, viewport=PHONE, is_mobile=True, has_touch=True)
    _check_page(visit, _diagram_sources(site_dir, page))
    visit.page.add_style_tag(content=LAY_OUT_EVERYTHING)
    overflow = visit.page.evaluate(
        """() => {
        const width = document.documentElement.clientWidth;
        const page = Math.max(document.documentElement.scrollWidth, document.body.scrollWidth);
        // Wide content must scroll inside itself: its box stays within the screen, and what
        // overflows the box can be scrolled to. (A table inside Material's scroll wrapper may
        // be wider than the screen: the wrapper is what must fit.)
        const boxes = [...document.querySelectorAll(
            "article .md-typeset__scrollwrap, article div.mermaid, article .highlight, article pre, article table"
        )].filter(e => !(e.tagName === "TABLE" && e.closest(".md-typeset__scrollwrap")));
        const name = e => e.tagName.toLowerCase() + "." + [...e.classList].join(".");
        const sticking = boxes.filter(e => e.getBoundingClientRect().right > width + 1).map(name);
        const unscrollable = boxes.filter(e => e.scrollWidth > e.clientWidth + 1
            && !["auto", "scroll"].includes(getComputedStyle(e).overflowX)).map(name);
        return {width, page, sticking, unscrollable};
    }"""
    )
    assert overflow["page"] <= overflow["width"], (
        f"the page scrolls sideways at {PHONE['width']}px: {overflow['page']}px wide")
    assert not overflow["sticking"], f"wider than the screen: {overflow['sticking']}"
    assert not overflow["unscrollable"], f"cut off, cannot scroll: {overflow['unscrollable']}"
    # A wide diagram scrolls rather than shrinking its text out of reach (mermaid-lazy.js).
    tiny = [round(t.height, 1) for t in _diagram_texts(visit.page) if t.height < 10]
    assert not tiny, f"diagram text drawn {tiny} px high on a phone: unreadable"


# --- nothing leaves 127.0.0.1, and the site asks for nothing that is not its own ------------


def test_chromium_resolves_no_name_but_the_local_address(open_page):
    """The resolver rule is in force: a lookup of any other name fails inside Chromium."""
    visit = open_page("")
    error = visit.page.evaluate(
        "fetch('http://example.com/').then(() => 'fetched', e => String(e))")
    assert error != "fetched"
    assert any("example.com" in p and "ERR_NAME_NOT_RESOLVED" in p for p in visit.problems), visit.problems


def test_built_pages_reference_no_other_host(site_dir):
    """No script, style, image or font of any page points to another host."""
    resource = re.compile(r'<(?:script|link|img|source|iframe)\b[^>]*?\b(?:src|href)="((?:https?:)?//[^"]+)"[^>]*>')
    found = {}
    for html in site_dir.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        for match in resource.finditer(text):
            tag = match.group(0)
            if re.search(r'rel="(?:canonical|alternate)"', tag):
                continue  # a link to the page's own published address, never fetched
            found.setdefault(str(html.relative_to(site_dir)), []).append(match.group(1))
    assert not found, f"pages reference other hosts: {found}"


def test_no_page_loads_mermaid_up_front(site_dir):
    """Mermaid is heavy: no page names it in a script tag. The lazy loader, which fetches it
    when a diagram nears the screen, is on exactly the pages that have a diagram left for
    the browser to draw (none, when the build drew them all)."""
    pages = {str(html.relative_to(site_dir)): html.read_text(encoding="utf-8")
             for html in site_dir.rglob("*.html")}
    eager = [name for name, text in pages.items()
             if re.search(r'<script[^>]+src="[^"]*mermaid[^"]*\.min\.js"', text)]
    assert not eager, f"pages load Mermaid up front: {eager}"
    with_loader = {name for name, text in pages.items() if "mermaid-lazy.js" in text}
    with_sources = {name for name, text in pages.items() if UNDRAWN.search(text)}
    assert with_loader == with_sources, (
        f"loader without sources: {sorted(with_loader - with_sources)}; "
        f"sources without loader: {sorted(with_sources - with_loader)}")


def test_the_build_draws_every_diagram(site_dir, browser):
    """With Chromium at hand (always in CI), no page leaves a diagram for the reader's
    browser to draw, and each drawing keeps its source beside it."""
    pages = {str(html.relative_to(site_dir)): html.read_text(encoding="utf-8")
             for html in site_dir.rglob("*.html")}
    left = {name: len(UNDRAWN.findall(text)) for name, text in pages.items() if UNDRAWN.search(text)}
    assert not left, f"diagrams left for the browser to draw: {left}"
    drawn = sum(len(DRAWN.findall(text)) for text in pages.values())
    sources = sum(text.count('<script type="text/x-mermaid">') for text in pages.values())
    assert drawn > 50 and sources == drawn, f"{drawn} diagrams drawn, {sources} sources kept"


DRAWING = re.compile(r'<div class="mermaid"[^>]*><template shadowrootmode="open">.*?</template>'
                     r'<script type="text/x-mermaid">(.*?)</script></div>', re.DOTALL)


def _as_built_without_chromium(html: str, loader: str) -> str:
    """The page as a build without Chromium leaves it: sources, and the loader that draws
    them (hooks/diagrams.py removes it from a page whose diagrams it drew)."""
    html = DRAWING.sub(lambda match: f'<pre class="mermaid"><code>{match.group(1)}</code></pre>',
                       html)
    return html.replace("</body>", f'<script src="{loader}"></script></body>', 1)


def test_a_browser_draws_the_diagrams_the_build_could_not(open_page, site_dir):
    """The path a build without Chromium leaves: the sources, drawn by Mermaid in the page
    (assets/js/mermaid-lazy.js), lazily, with nothing left undrawn."""
    page = next(page for page in PAGES if page.src == "concurrency/reader-race.md")
    expected = _diagram_sources(site_dir, page)
    visit = open_page(page.url_path, rewrite=lambda html: _as_built_without_chromium(
        html, "../../assets/js/mermaid-lazy.js"))
    _check_page(visit, PageDiagrams(expected.total, for_the_browser=expected.total))


def test_code_annotations_mount_in_view_named_and_without_a_jump(open_page):
    """Material mounts a code block's annotations as the block comes into view (content.lazy).
    Until then the annotations' list stays hidden (hooks/code.py, site.css), so the
    text below does not jump up when they mount; and assets/js/code.js names each marker,
    whose number only CSS draws, so a screen reader says "Annotation 1" (Lighthouse's
    link-name audit)."""
    visit = open_page("distributed/snapshots/")
    block = visit.page.locator("div.highlight:has(+ ol.annotation-list)").first
    items = block.locator("+ ol.annotation-list > li").count()
    assert items, "the page has no annotated code block"
    below = visit.page.locator("div.highlight:has(+ ol.annotation-list) + ol + *").first

    def list_shown() -> bool:
        return block.locator("+ ol").evaluate("ol => getComputedStyle(ol).display !== 'none'")

    assert block.locator(".md-annotation").count() == 0, "mounted before it came into view"
    assert not list_shown(), "the annotation list shows under a block not yet mounted"
    visit.page.add_style_tag(content=LAY_OUT_EVERYTHING)  # only the mounting can move the text below
    top_before = below.evaluate("e => e.offsetTop")
    block.scroll_into_view_if_needed()
    visit.page.wait_for_function(
        "n => document.querySelectorAll('a.md-annotation__index').length >= n", arg=items)
    assert not list_shown(), "the annotation list shows under a mounted block"
    assert below.evaluate("e => e.offsetTop") == top_before, "the text below the block moved"
    names = block.locator("a.md-annotation__index").evaluate_all(
        "links => links.map(link => link.getAttribute('aria-label'))")
    assert names == [f"Annotation {n}" for n in range(1, items + 1)], names
    assert not visit.problems, visit.problems


# Counts what Material starts: its search worker, and the DOMContentLoaded events it sees.
COUNT_STARTS = """window.__workers = 0;
const RealWorker = window.Worker;
window.Worker = function (...args) { window.__workers++; return new RealWorker(...args); };
window.__contentLoaded = 0;
document.addEventListener("DOMContentLoaded", () => window.__contentLoaded++);"""


@pytest.mark.parametrize("held", ["bundle", "deferred"], ids=["bundle-late", "bundle-early"])
def test_material_starts_after_the_page_is_read_and_once(browser, base_url, held):
    """hooks/theme_start.py: Material's bundle no longer stops the parser; the page is read,
    drawn and its DOMContentLoaded sent without it. Whenever the bundle arrives, Material
    starts once: one search worker, one copy button per block. The bundle's response (or a
    deferred script's, so that the bundle arrives before DOMContentLoaded) is held until the
    test lets it go."""
    context = browser.new_context(viewport=DESKTOP, service_workers="block")
    try:
        page = context.new_page()
        page.add_init_script(COUNT_STARTS)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        stalled: list[Any] = []
        pattern = re.compile(r".*/javascripts/bundle\.[0-9a-f]+\.min\.js$" if held == "bundle"
                             else r".*/assets/js/code\.js$")
        page.route(pattern, lambda route: stalled.append(route))
        page.goto(base_url + "scaling/mutex/", wait_until="commit")
        page.wait_for_function("document.readyState !== 'loading'")
        page.wait_for_function("requestAnimationFrame(() => window.__drawn = true) && window.__drawn")
        classes = page.evaluate("[...document.documentElement.classList]")
        assert "js" in classes and "no-js" not in classes, classes  # set at the top of the page
        if held == "bundle":  # the page was read and its event sent without Material
            page.wait_for_function("window.__contentLoaded === 1")
            assert page.evaluate("window.component$") is None
        else:  # Material has run, and waits for the event
            page.wait_for_function("window.component$ !== undefined")
            assert page.evaluate("window.__contentLoaded") == 0
        assert len(stalled) == 1, stalled
        stalled[0].continue_()
        page.wait_for_load_state("load")
        block = page.locator("article div.highlight").first
        block.scroll_into_view_if_needed()
        block.locator(COPY_BUTTON).first.wait_for(state="attached")
        page.wait_for_timeout(300)  # anything started twice would add a second button by now
        assert block.locator(COPY_BUTTON).count() == 1
        assert page.evaluate("window.__workers") == 1
        assert not problems, problems
    finally:
        context.close()


def test_no_page_waits_for_materials_script(site_dir):
    """No page holds Material's bundle as a script the parser stops for (hooks/theme_start.py);
    each loads it after its first frame."""
    blocking = re.compile(r'<script src="[^"]*/javascripts/bundle\.[0-9a-f]+\.min\.js">')
    pages = [site_dir / target.url_path / "index.html" for target in PAGES]
    assert len(pages) > 30
    texts = {str(path): path.read_text() for path in pages}
    assert not [path for path, text in texts.items() if blocking.search(text)]
    assert not [path for path, text in texts.items() if 'bundle.src = "' not in text]


def test_the_colour_toggle_follows_the_system_until_the_reader_chooses(open_page):
    """overrides/partials/javascripts/palette.html: the page starts in the system's scheme
    and follows it when it changes; once the reader clicks the toggle (or presses Enter on
    it), their choice holds, on this page and the next."""
    visit = open_page("patterns/cache-aside/", scheme="light")
    page = visit.page

    def scheme() -> tuple[str, str]:  # the body's scheme, and the page's for the browser
        return tuple(page.evaluate("""() => [document.body.getAttribute("data-md-color-scheme"),
                                            document.documentElement.style.colorScheme]"""))

    toggle = page.locator("form[data-md-palette] label:not([hidden])")
    assert scheme() == ("default", "light")
    assert toggle.count() == 1 and toggle.get_attribute("title") == "Switch to dark mode"
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("document.body.dataset.mdColorScheme === 'slate'")
    page.emulate_media(color_scheme="light")
    page.wait_for_function("document.body.dataset.mdColorScheme === 'default'")

    toggle.click()
    assert scheme() == ("slate", "dark")
    assert toggle.get_attribute("title") == "Switch to light mode"
    page.emulate_media(color_scheme="light")  # the reader's choice now wins
    page.goto(page.url.replace("cache-aside", "write-through"))
    assert scheme() == ("slate", "dark")

    page.locator("form[data-md-palette] input:checked").focus()
    page.keyboard.press("Enter")
    assert scheme() == ("default", "light")
    assert not visit.problems, visit.problems


def test_sidebar_links_are_big_enough_to_hit(open_page):
    """site.css: on a wide screen each sidebar link is at least 24 px high (WCAG 2.5.8,
    Lighthouse's target-size audit); Material draws them 18 px high, 9 px apart."""
    visit = open_page("fleet/deploys/", viewport={"width": 1400, "height": 900})
    heights = visit.page.eval_on_selector_all(
        ".md-sidebar a.md-nav__link",
        "links => links.filter(a => a.offsetParent).map(a => a.getBoundingClientRect().height)")
    assert len(heights) > 20, heights
    assert min(heights) >= 24, sorted(heights)[:5]


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_code_block_reserves_its_own_height_before_it_is_laid_out(open_page, viewport):
    """hooks/code.py gives each block the height Material will draw it at, which the page
    holds while the block is not laid out (site.css): so nothing below a block on the first
    screen moves as the page opens. Checked on every shown block of a page with short and
    long blocks, with and without a file name, and blocks inside admonitions."""
    visit = open_page("scaling/mutex/", viewport=viewport)
    visit.page.add_style_tag(content=LAY_OUT_EVERYTHING)
    blocks = visit.page.eval_on_selector_all("article div.highlight", """blocks => blocks
        .filter(block => block.offsetParent)
        .map(block => [block.style.getPropertyValue("--code-height"),
                       parseFloat(getComputedStyle(block).fontSize),
                       block.getBoundingClientRect().height])""")
    assert len(blocks) > 5
    off = [(reserved, height) for reserved, font, height in blocks
           if abs(float(reserved.removesuffix("em")) * font - height) > 1.5]
    assert not off, f"reserved vs drawn height: {off}"


def test_only_an_annotated_blocks_list_is_marked():
    """hooks/code.py marks the list after a block with an annotation marker, and no
    other list: a list marked by mistake would stay hidden for good."""
    from hooks.code import on_page_content

    def block(comment: str) -> str:
        return ('<div class="language-python highlight"><pre><code><span class="n">x</span>'
                f'  <span class="c1"># {comment}</span>\n</code></pre></div>\n')

    annotated = block("(1)!") + "<ol>\n<li>Why.</li>\n</ol>"
    ordinary = block("a (plain) comment") + "<ol>\n<li>A step.</li>\n</ol>"
    assert on_page_content(annotated, page=None).count('<ol class="annotation-list">') == 1
    assert '<ol>' in on_page_content(ordinary, page=None)
    # Each list is judged by its own block only.
    both = on_page_content(annotated + ordinary, page=None)
    assert both.count('<ol class="annotation-list">') == 1 and both.endswith("<ol>\n<li>A step.</li>\n</ol>")


# --- search finds each page by its name -----------------------------------------------------


def _search_index(site_dir: Path) -> dict[str, Any]:
    return json.loads((site_dir / "search" / "search_index.json").read_text(encoding="utf-8"))


def _indexed_pages(site_dir: Path) -> set[str]:
    return {doc["location"].split("#")[0] for doc in _search_index(site_dir)["docs"]}


def test_notebooks_stay_out_of_the_search_index(site_dir):
    """Their code and printed tables would flood the results (hooks/notebooks.py)."""
    indexed = _indexed_pages(site_dir)
    notebooks = [page for page in PAGES if page.src.endswith(".ipynb")]
    assert notebooks, "no notebook in the nav"
    assert not [page.src for page in notebooks if page.url_path in indexed]
    assert [page for page in PAGES if page.url_path in indexed], "the pages are not indexed"


def test_a_notebook_page_keeps_only_the_style_rules_that_can_match_it(site_dir):
    """hooks/notebooks.py: of JupyterLab's 560 KB style sheet, which mkdocs-jupyter writes
    into each notebook page, only the rules naming classes the page has are kept."""
    from hooks.notebooks import JUPYTER_STYLE, prune_css

    css = (".jupyter-wrapper{--x:1}.jp-Cell .gone{color:red}.jp-Cell,.gone{margin:0}"
           ":is(.gone, .jp-Cell) p{padding:0}@media print{.gone{x:1}.jp-Cell{y:2}}")
    assert prune_css(css, {"jupyter-wrapper", "jp-Cell"}) == (
        ".jupyter-wrapper{--x:1}.jp-Cell{margin:0}:is(.gone, .jp-Cell) p{padding:0}"
        "@media print{.jp-Cell{y:2}}")
    page = (site_dir / "notebooks" / "ttl" / "index.html").read_text(encoding="utf-8")
    jupyter = JUPYTER_STYLE.search(page)
    assert jupyter and len(jupyter[0]) < 200_000, len(jupyter[0]) if jupyter else None


def test_source_listings_stay_out_of_the_search_index_and_prose_stays_in(site_dir):
    """hooks/search.py: a block shown under a file name is left out of the index, the prose
    around it is not; the index every page loads stays small (the home page's budget)."""
    index = _search_index(site_dir)
    indexed = unescape("\n".join(doc["title"] + "\n" + doc["text"] for doc in index["docs"]
                                  if doc["location"].startswith("scaling/kafka-invalidation/")))
    page = (site_dir / "scaling" / "kafka-invalidation" / "index.html").read_text(encoding="utf-8")
    listings = re.findall(r'<span class="filename">[^<]*</span><pre>.*?</pre>', page, re.S)
    assert listings, "the page has no source listing"
    text = lambda fragment: unescape(re.sub(r"<[^>]+>", "", fragment))  # noqa: E731
    lines = [line.strip() for listing in listings for line in text(listing).splitlines()]
    # Lines of the listings that the page shows nowhere else (an example may repeat one).
    elsewhere = text(re.sub(r'<span class="filename">[^<]*</span><pre>.*?</pre>', "", page, flags=re.S))
    own = [line for line in lines if len(line) > 30 and line not in elsewhere]
    assert len(own) > 20 and not [line for line in own if line in indexed]
    assert "The stand-in keeps the client" in indexed, "the page's prose left the index"
    # The home page's 300 KB budget (make audit) holds the index, Material's script and
    # style sheet (about 60 KB) and the page; with the listings in, the index alone was 255 KB.
    packed = gzip.compress((site_dir / "search" / "search_index.json").read_bytes(), 6)
    assert len(packed) < 200 * 1024, f"the search index is {len(packed) // 1024} KB gzipped"


def test_search_finds_each_page_by_name(open_page):
    visit = open_page("")
    page = visit.page
    box = page.locator("input.md-search__input")
    box.click()
    misses = []
    for target in PAGES:
        if target.url_path == "" or target.src.endswith(".ipynb"):
            continue  # the home page, and the notebooks, which stay out of the index
        # Material searches on key events: fill, then press a key. Clearing first makes
        # sure the results read below are for this query, not the previous one.
        for query, shown in (("", "Type to start"), (target.title, "matching")):
            box.fill(query)
            box.press("End")
            page.wait_for_function(
                "shown => document.querySelector('.md-search-result__meta')?.textContent.includes(shown)",
                arg=shown, timeout=10_000,
            )
        hrefs = page.eval_on_selector_all(
            ".md-search-result__item", "items => items.map(li => li.querySelector('a').href)")
        top = [urlsplit(h).path.strip("/") for h in hrefs[:3]]
        if target.url_path.strip("/") not in top:
            misses.append(f"{target.title!r}: top results {top}")
    assert not misses, "search does not find:\n" + "\n".join(misses)
    assert not visit.problems, visit.problems


# --- the copy button copies what a reader can paste -----------------------------------------


def _snippet_sections(path: Path) -> dict[str, str]:
    """Every ``# --8<-- [start:x]`` .. ``[end:x]`` section of a snippet file, and the file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    marker = re.compile(r"--8<-- \[(start|end):([\w-]+)\]")
    sections: dict[str, str] = {"": "\n".join(line for line in lines if not marker.search(line))}
    for i, line in enumerate(lines):
        start = marker.search(line)
        if start and start.group(1) == "start":
            name = start.group(2)
            body = []
            for inner in lines[i + 1:]:
                end = marker.search(inner)
                if end and end.groups() == ("end", name):
                    break
                if not end:  # nested markers are not part of what the page shows
                    body.append(inner)
            sections[name] = "\n".join(body)
    return {name: _as_copied(text) for name, text in sections.items()}


# A code annotation's marker (``# (1)!``) is page furniture: Material's copy button leaves
# it out, and the blanks before it, which the test ignores at the end of every line.
ANNOTATION = re.compile(r"\s*# \(\d+\)!$")


def _as_copied(text: str) -> str:
    """``text`` as a copy button gives it: no annotation markers, no blanks at line ends."""
    return "\n".join(ANNOTATION.sub("", line).rstrip() for line in text.splitlines()).rstrip()


# A reader's click is a user gesture, and Chromium lets a gesture copy for 5 seconds only.
# Each click is its own call, so each has its own gesture: copying a whole page in one call
# outlived the gesture on a loaded machine, and every later copy failed.
BLOCKS = "article div.highlight"
COPY_BUTTON = "button.md-code__button[data-md-type='copy'], button.md-clipboard"
SHOW_BLOCK = """async ([blocks, copyButtonSelector, n]) => {
    const block = document.querySelectorAll(blocks)[n];
    const code = block.querySelector("pre > code");
    // A reader opens a collapsed admonition before copying from it (closed, its text
    // is not rendered, so there would be nothing to copy).
    for (let d = block.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
    // A reader opens the content tab that holds the block, too.
    const tab = block.closest(".tabbed-block");
    if (tab) {
        const index = [...tab.parentElement.children].indexOf(tab);
        const radio = tab.closest(".tabbed-set").querySelectorAll(":scope > input")[index];
        if (radio) radio.click();
    }
    // As a reader does: the block on screen, then the click. Material gives a block its
    // button as the block comes into view (content.lazy).
    block.scrollIntoView();
    const copyButton = () => block.querySelector(copyButtonSelector);
    for (let i = 0; i < 100 && !copyButton(); i++) await new Promise(r => setTimeout(r, 20));
    const title = block.querySelector(".filename");
    return {
        missing: !copyButton() || !code,
        language: [...block.classList].find(c => c.startsWith("language-")) || "",
        title: title ? title.textContent.trim() : "",
        shown: code ? code.textContent : "",
    };
}"""
CLICK_COPY = """async ([blocks, copyButtonSelector, n]) => {
    const block = document.querySelectorAll(blocks)[n];
    window.focus();
    await navigator.clipboard.writeText("\u2205");
    block.querySelector(copyButtonSelector).click();
    let copied = "\u2205";
    for (let i = 0; i < 100 && copied === "\u2205"; i++) {
        await new Promise(r => setTimeout(r, 20));
        copied = await navigator.clipboard.readText();
    }
    return copied;
}"""


def _copy_every_block(page: Any) -> list[dict[str, Any]]:
    blocks = []
    for n in range(page.evaluate(f"document.querySelectorAll({BLOCKS!r}).length")):
        block = page.evaluate(SHOW_BLOCK, [BLOCKS, COPY_BUTTON, n])
        if not block["missing"]:
            # If nothing came (a diagram drawn meanwhile can take the focus), a second and
            # third click.
            for _ in range(3):
                block["copied"] = page.evaluate(CLICK_COPY, [BLOCKS, COPY_BUTTON, n])
                if block["copied"] != "\u2205":
                    break
        blocks.append(block)
    return blocks


def _expected_copy(block: dict[str, str], site_dir: Path) -> str | set[str]:
    if block["language"] == "language-pycon":
        # What Python's own doctest parser reads as the source of each example.
        examples = doctest.DocTestParser().get_examples(block["shown"])
        return "".join(example.source for example in examples).rstrip()
    if block["title"].startswith("snippets/"):
        built_from = site_dir.parent / "snippets-as-built" / Path(block["title"]).relative_to("snippets")
        return set(_snippet_sections(built_from).values())
    return block["shown"].rstrip()


def _made_of_sections(copied: str, sections: set[str]) -> bool:
    """True if ``copied`` is one section of the file, or several, one after another with
    a blank line between them (a page shows a module's imports, then a section)."""
    if copied in sections:
        return True
    return any(copied.startswith(section + "\n\n")
               and _made_of_sections(copied[len(section):].lstrip("\n"), sections)
               for section in sections if section)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def test_copy_buttons_copy_what_a_reader_can_paste(open_page, site_dir):
    results = {"pycon": 0, "snippet": 0, "other": 0}
    wrong = []
    for target in PAGES:
        visit = open_page(target.url_path, permissions=["clipboard-read", "clipboard-write"])
        blocks = _copy_every_block(visit.page)
        if any(block.get("copied") == "\u2205" for block in blocks):
            # On a loaded machine a copy can fail to arrive at all (the clipboard keeps
            # the marker): the page is loaded once more and every block copied again. A
            # copy that arrives wrong fails at once.
            visit = open_page(target.url_path, permissions=["clipboard-read", "clipboard-write"])
            blocks = _copy_every_block(visit.page)
        for n, block in enumerate(blocks):
            where = f"{target.src} code block {n + 1} {block.get('title', '')}".strip()
            if block.get("missing"):
                wrong.append(f"{where}: no copy button")
                continue
            expected = _expected_copy(block, site_dir)
            copied = block["copied"]
            if isinstance(expected, set):
                copied = _as_copied(copied)
                ok, kind = _made_of_sections(copied, expected), "snippet"
            else:
                ok, kind = copied == expected, "pycon" if block["language"] == "language-pycon" else "other"
            results[kind] += 1
            if not ok:
                if kind == "snippet":
                    closest = max(expected, key=lambda t: difflib.SequenceMatcher(None, t, copied).ratio())
                    diff = "\n".join(list(difflib.unified_diff(
                        closest.splitlines(), copied.splitlines(), "section", "copied", lineterm=""))[:12])
                    wrong.append(f"{where}: copied text is no section of the file; closest:\n{diff}")
                else:
                    wrong.append(f"{where}: copied {_short(copied)!r}, expected {_short(expected)!r}")
            elif kind == "pycon":
                compile(copied, where, "exec")  # pastes into Python as it stands
        assert not visit.problems, visit.problems
    assert not wrong, "\n".join(wrong)
    # The model page has both kinds; if none were seen, the test checked nothing.
    assert results["pycon"] > 0 and results["snippet"] > 0, results
