"""Notebook pages (docs/notebooks/*.ipynb, rendered by mkdocs-jupyter) as light, offline pages.

- Out of the search index: their code and printed tables would flood the results; the
  pages they illustrate are where a search should land.
- mkdocs-jupyter's HTML carries scripts the pages never need and that point elsewhere: a
  Mermaid loader from cdnjs (for notebook diagrams, which these notebooks do not have) and
  a MathJax loader with an empty address (no notebook here has maths). They are removed,
  so the site names no other host and the browser is not asked to fetch "".
- Links to pages (``../patterns/ttl.md#anchor``) are rewritten to the pages' addresses,
  as mkdocs does for Markdown pages: mkdocs-jupyter leaves them as written, and the
  notebook's own page sits one folder deeper than its source.
- Each plot gets the text alternative written for it in its cell's metadata ("alt"), in
  place of nbconvert's "No description has been provided for this image". A plot without
  one fails the build.
- mkdocs-jupyter writes all of JupyterLab's style sheet into the page, 560 KB before the
  first paragraph: a phone takes seconds to read and apply it. Only the rules that can
  match the page are kept (a few percent); the page is static, no script adds classes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import tinycss2
from mkdocs.exceptions import PluginError

CDN_MODULE = re.compile(r'<script type="module">(?:(?!</script>).)*?cdnjs(?:(?!</script>).)*</script>', re.S)
NO_ALT = 'alt="No description has been provided for this image"'
PAGE_LINK = re.compile(r'href="\.\./(?P<page>[\w/-]+)\.md(?P<anchor>#[\w-]*)?"')
EMPTY_SCRIPT = re.compile(r'<script src="">\s*</script>')
MATHJAX_CONFIG = re.compile(r'<script type="text/x-mathjax-config">.*?</script>', re.S)
JUPYTER_STYLE = re.compile(r'(<style type="text/css">)(\s*@charset "UTF-8";\s*\.jupyter-wrapper.*?)(</style>)', re.S)
CLASS_ATTRIBUTE = re.compile(r'class="([^"]*)"')
CLASS_SELECTOR = re.compile(r"\.(-?[_a-zA-Z][\w-]*)")


def _is_notebook(page) -> bool:
    return page.file.src_uri.endswith(".ipynb")


def on_page_markdown(markdown, page, **kwargs):
    if _is_notebook(page):
        page.meta.setdefault("search", {"exclude": True})
    return markdown


def _selectors(prelude: list) -> list[str]:
    """A rule's selectors: its prelude split at the commas outside any :is(...) and such."""
    parts: list[list] = [[]]
    for token in prelude:
        if token.type == "literal" and token.value == ",":
            parts.append([])
        else:
            parts[-1].append(token)
    return [tinycss2.serialize(part).strip() for part in parts]


def _can_match(selector: str, classes: set[str]) -> bool:
    if "(" in selector:  # :is(.a, .b) needs only one of its classes: kept, to be safe
        return True
    return set(CLASS_SELECTOR.findall(selector)) <= classes


def prune_css(css: str, classes: set[str]) -> str:
    """The rules of ``css`` whose selectors name only classes in ``classes``."""
    kept = []
    for rule in tinycss2.parse_stylesheet(css, skip_whitespace=True, skip_comments=True):
        if rule.type == "qualified-rule":
            selectors = [s for s in _selectors(rule.prelude) if _can_match(s, classes)]
            if selectors:
                kept.append(f"{','.join(selectors)}{{{tinycss2.serialize(rule.content)}}}")
        elif rule.type == "at-rule" and rule.lower_at_keyword in ("media", "supports"):
            inner = prune_css(tinycss2.serialize(rule.content or []), classes)
            if inner:
                kept.append(f"@{rule.at_keyword}{tinycss2.serialize(rule.prelude)}{{{inner}}}")
        elif rule.type != "error":
            kept.append(rule.serialize())
    return "".join(kept)


def on_page_content(html, page, **kwargs):
    if not _is_notebook(page):
        return html
    classes = {name for value in CLASS_ATTRIBUTE.findall(html) for name in value.split()}
    html = JUPYTER_STYLE.sub(lambda m: m[1] + prune_css(m[2], classes) + m[3], html)
    for pattern in (CDN_MODULE, EMPTY_SCRIPT, MATHJAX_CONFIG):
        html = pattern.sub("", html)
    # docs/notebooks/x.ipynb is served at notebooks/x/: one more level up to the root
    html = PAGE_LINK.sub(lambda m: f'href="../../{m["page"]}/{m["anchor"] or ""}"', html)
    notebook = json.loads(Path(page.file.abs_src_path).read_text(encoding="utf-8"))
    alts = [cell["metadata"]["alt"] for cell in notebook["cells"] if "alt" in cell.get("metadata", {})]
    if html.count(NO_ALT) != len(alts):
        raise PluginError(f"{page.file.src_uri}: {html.count(NO_ALT)} plots, but {len(alts)} cells "
                          'with an "alt" text in their metadata: one per plot, in order')
    for alt in alts:
        escaped = alt.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
        html = html.replace(NO_ALT, f'alt="{escaped}"', 1)
    return html
