"""Material's script starts after the page's first frame, not before it.

Material's bundle sits at the end of each page as a script the parser stops for. It mounts
the header, the sidebars, the table of contents and search as it starts, reading the layout
as it goes, so on a long page it lays out the whole document in the same task, before the
first frame: 150-400 ms of main-thread work at a phone's speed, all of it between the reader
and the first words, and most of Lighthouse's blocking time on a phone.

Here the bundle is loaded by a few lines of script once the page has drawn a frame, as a task
of its own. Material starts on DOMContentLoaded; if that has passed when the bundle arrives,
the event is sent once more so that Material starts (deferred scripts, which run before the
event, have seen the first one). The `js` class, which Material sets as it starts, is set by a
line of script at the top of the page instead, so the first frame is already drawn as the
page will look (without JavaScript the page keeps `no-js`, and its no-script look).
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
