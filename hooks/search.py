"""What the search index keeps: the prose, the headings and the short examples, but not the
full source listings (a code block with a file name over it, a page's snippet shown whole).

Every page loads the index for its search box as it opens, and the listings were three
fifths of it: the home page came to 340 KB, past its 300 KB budget. A search for a
function still lands on its page, through the prose and the examples that use it.
"""

from __future__ import annotations

import re

# pymdownx.highlight writes a listing's file name (title=) as the block's first child.
LISTING = re.compile(r'<div class="(language-[\w-]+ highlight)"([^>]*)><span class="filename">')


def on_page_content(html, page, **kwargs):
    return LISTING.sub(r'<div class="\1"\2 data-search-exclude><span class="filename">', html)
