"""Code blocks that are laid out and mounted only as they come into view, without a jump.

- **Their height before they are laid out.** site.css skips the layout of a code block
  until it nears the screen (content-visibility: auto), and the page reserves the height
  given here instead: Material's code metrics times the block's lines, in em of the
  block's font, so it holds on any screen. A guessed height would move the text below a
  block on the first screen as the page opens (Lighthouse counts it as layout shift).
- **An annotated block's list, hidden until its block is mounted.** Material mounts a code
  block when it comes into view (``content.lazy`` in mkdocs.yml): on load it then measures
  only the blocks on the screen. Until a block is mounted, its annotations' list shows
  below it as a plain ordered list; mounting hides it, and the text below would jump up
  while the reader scrolls. So the list gets a class here, and site.css hides it on screen
  once the theme's script runs. Without JavaScript, and in print, the list shows.
"""

from __future__ import annotations

import re

# Material's code blocks: code at 0.85em with a line height of 1.4, 0.772em of padding
# above and below it (in em of the code), and a file name bar, when there is one, of 2.525em.
LINE_EM = 0.85 * 1.4
PADDING_EM = 0.85 * 2 * 0.7720588235
FILENAME_EM = 2.525

BLOCK = re.compile(r'(?P<open><div class="language-[\w-]+ highlight")(?P<body>>'
                   r'(?P<filename><span class="filename">)?.*?<code>(?P<code>.*?)</code>)', re.S)
# A code block's end, then an ordered list: Material's place for a block's annotations.
BLOCK_THEN_LIST = re.compile(r"</code></pre></div>(\s*)<ol>")
# An annotation marker, "(1)" or "(1)!", inside a comment (Material looks in .c, .c1, .cm).
MARKER = re.compile(r'<span class="(?:c|c1|cm)">[^<]*\(\d+\)')


def block_height(code: str, filename: bool) -> float:
    """The height, in em, Material gives a block of this code (its HTML)."""
    lines = code.rstrip("\n").count("\n") + 1
    return lines * LINE_EM + PADDING_EM + (FILENAME_EM if filename else 0)


def on_page_content(html, page, **kwargs):
    def height(match: re.Match[str]) -> str:
        em = block_height(match["code"], match["filename"] is not None)
        return f'{match["open"]} style="--code-height: {em:.2f}em"{match["body"]}'

    def mark(match: re.Match[str]) -> str:
        block = html[html.rfind('<div class="language-', 0, match.start()):match.start()]
        if not MARKER.search(block):
            return match[0]  # an ordinary list after an ordinary block
        return f'</code></pre></div>{match[1]}<ol class="annotation-list">'

    html = BLOCK_THEN_LIST.sub(mark, html)
    return BLOCK.sub(height, html)
