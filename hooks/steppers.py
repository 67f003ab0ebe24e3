"""The stepper: ``<!-- stepper: snippets.module:function -->`` on a page becomes a
placeholder that docs/assets/js/stepper.js fills with the race's whole schedule tree
(docs/assets/steppers/<id>.json, written by ``python -m snippets.explorer --trees``).

Only a page with a stepper gets the widget's script and style sheet. A page whose tree
file is missing fails the build: the tree must be generated and committed with the page.
Without JavaScript the placeholder stays empty, and the generated diagram after it shows
the race.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.utils import get_relative_url

from snippets.explorer.trees import MARKER, Stepper  # the syntax and the file names

# The widget's style is written into the page (4 KB): a stylesheet of its own would be one
# more request that holds up the page's first paint.
ASSETS = ('<style id="stepper-css">\n{css}</style>\n'
          '<script src="{js}" defer></script>\n')


def on_page_markdown(markdown, page, config, **kwargs):
    docs = Path(config["docs_dir"])

    def placeholder(match: re.Match[str]) -> str:
        ident = Stepper(match["ref"], match["argument"], []).id
        tree = f"assets/steppers/{ident}.json"
        if not (docs / tree).is_file():
            raise PluginError(f"{page.file.src_uri}: no {tree} for its stepper: run "
                              "python -m snippets.explorer --trees")
        url = get_relative_url(tree, page.url)
        return (f'<div class="stepper" data-stepper="{ident}" data-tree="{url}" '
                f'role="group" aria-label="Step through this race yourself"></div>\n')

    markdown, count = MARKER.subn(placeholder, markdown)
    page.meta["steppers"] = count
    return markdown


def on_post_page(output, page, config, **kwargs):
    if not page.meta.get("steppers"):
        return output
    css = Path(config["docs_dir"], "assets", "css", "stepper.css").read_text(encoding="utf-8")
    assets = ASSETS.format(css=css, js=get_relative_url("assets/js/stepper.js", page.url))
    return output.replace("</head>", assets + "</head>", 1)
