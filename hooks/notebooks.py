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
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

CDN_MODULE = re.compile(r'<script type="module">(?:(?!</script>).)*?cdnjs(?:(?!</script>).)*</script>', re.S)
NO_ALT = 'alt="No description has been provided for this image"'
PAGE_LINK = re.compile(r'href="\.\./(?P<page>[\w/-]+)\.md(?P<anchor>#[\w-]*)?"')
EMPTY_SCRIPT = re.compile(r'<script src="">\s*</script>')
MATHJAX_CONFIG = re.compile(r'<script type="text/x-mathjax-config">.*?</script>', re.S)


def _is_notebook(page) -> bool:
    return page.file.src_uri.endswith(".ipynb")


def on_page_markdown(markdown, page, **kwargs):
    if _is_notebook(page):
        page.meta.setdefault("search", {"exclude": True})
    return markdown


def on_page_content(html, page, **kwargs):
    if not _is_notebook(page):
        return html
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
