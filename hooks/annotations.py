"""Code annotations whose list does not flash under the block (Material's content.lazy).

Material mounts a code block when it comes into view (the ``content.lazy`` feature in
mkdocs.yml): on load it then measures only the blocks on the screen, not all of them.
Until a block is mounted, its annotations' list shows below it as a plain ordered list;
mounting hides it, and the text below would jump up while the reader scrolls. So each
list that belongs to an annotated block gets a class here, and site.css hides it on
screen once the theme's script runs. Without JavaScript, and in print, the list shows.
"""

from __future__ import annotations

import re

# A code block's end, then an ordered list: Material's place for a block's annotations.
BLOCK_THEN_LIST = re.compile(r"</code></pre></div>(\s*)<ol>")
# An annotation marker, "(1)" or "(1)!", inside a comment (Material looks in .c, .c1, .cm).
MARKER = re.compile(r'<span class="(?:c|c1|cm)">[^<]*\(\d+\)')


def on_page_content(html, page, **kwargs):
    def mark(match: re.Match[str]) -> str:
        block = html[html.rfind('<div class="language-', 0, match.start()):match.start()]
        if not MARKER.search(block):
            return match[0]  # an ordinary list after an ordinary block
        return f'</code></pre></div>{match[1]}<ol class="annotation-list">'

    return BLOCK_THEN_LIST.sub(mark, html)
