"""Keep the built site offline: no URL of another host in the JavaScript it serves.

Material's bundle carries two fallbacks that would fetch from a CDN: Mermaid, when a page
has a diagram but no `mermaid` global, and a ResizeObserver polyfill for browsers without
one. Neither runs here (mermaid2 adds the site's own loader, assets/js/mermaid-lazy.js, to
every page with a diagram, and every current browser has ResizeObserver), but a fallback to
another host must not even be possible. After the build, Mermaid's fallback is pointed at
that same loader and the polyfill's at an empty script.
"""

from __future__ import annotations

import re
from pathlib import Path

MERMAID_CDN = re.compile(r'"https://unpkg\.com/mermaid@[^"]*"')
# __md_scope is the site's root URL, set by Material in every page's <head>.
MERMAID_LOCAL = 'new URL("assets/js/mermaid-lazy.js",__md_scope).href'
POLYFILL_CDN = '"https://unpkg.com/resize-observer-polyfill"'
POLYFILL_NONE = '"data:text/javascript,"'


SOURCE_MAP_COMMENT = re.compile(r"\n?//# sourceMappingURL=\S+\s*$")


def on_post_build(config, **kwargs) -> None:
    scripts = Path(config["site_dir"], "assets", "javascripts")
    for script in scripts.rglob("*.min.js"):
        text = script.read_text(encoding="utf-8")
        text = MERMAID_CDN.sub(MERMAID_LOCAL, text).replace(POLYFILL_CDN, POLYFILL_NONE)
        # The source maps quote the original sources, CDN URLs included; only developer
        # tools fetch them, and the site does without.
        script.write_text(SOURCE_MAP_COMMENT.sub("\n", text), encoding="utf-8")
    for source_map in scripts.rglob("*.js.map"):
        source_map.unlink()
