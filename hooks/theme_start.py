"""Material's script starts after the page's first frame, not before it.

Material's bundle sat at the end of each page as a script the parser stops for. As it starts,
it mounts the header, the sidebars, the table of contents and search, and reads the layout
as it goes (the scroll offset, element sizes): on a page still being laid out, that lays out
the whole page inside the same task. It was the longest task of a page's load, and most of
what Lighthouse counted as blocking time on a phone.

Here the bundle is loaded by a few lines of script once the page has drawn a frame, as a task
of its own, so the page's layout is done before Material reads it. Material starts on
DOMContentLoaded; if that has passed when the bundle arrives, the event is sent once more so
that Material starts. (The site's own scripts are deferred: they run before the first event
and do not listen for it.) The `js` class, which Material sets as it starts, is set by a
line of script at the top of the page instead, so the first frame is already drawn as the
page will look; without JavaScript the page keeps `no-js`, and its no-script look.
"""

from __future__ import annotations

import re

from mkdocs.exceptions import PluginError

BUNDLE = re.compile(r'<script src="([^"]*assets/javascripts/bundle\.[0-9a-f]+\.min\.js)"></script>')
HEAD = "<head>"
JS_CLASS = '<script>document.documentElement.classList.replace("no-js", "js")</script>'

LOADER = """<script>
  (function () {
    var started = false;
    document.addEventListener("DOMContentLoaded", function () { started = true; }, { once: true });
    // A frame first, then a task of its own: the first frame does not wait for Material.
    requestAnimationFrame(function () {
      setTimeout(function () {
        var bundle = document.createElement("script");
        bundle.src = "%s";
        bundle.onload = function () {
          if (started) document.dispatchEvent(new Event("DOMContentLoaded"));
        };
        document.body.appendChild(bundle);
      });
    });
  })();
</script>"""


def on_post_page(output: str, page, **kwargs) -> str:
    found = BUNDLE.search(output)
    if not found or HEAD not in output:
        # A theme update that moved either would silently bring the blocking script back.
        raise PluginError(f"{page.file.src_uri}: Material's bundle or <head> not found")
    output = output[: found.start()] + LOADER % found.group(1) + output[found.end() :]
    return output.replace(HEAD, HEAD + JS_CLASS, 1)
