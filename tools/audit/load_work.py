"""How much main-thread work a page's load costs on a phone-sized screen, in Chromium.

Lighthouse's mobile score multiplies the machine's own task times by four, so on a
shared machine it moves by ten points or more between two identical runs. This counts
the work itself instead: Chromium's own totals (Performance.getMetrics) of task, style
and layout, and script time, 1.5 s after the load event, the median of REPS loads (5 by
default). Two builds side by side, loads alternating between them, show what a change
did.

    .venv/bin/python tools/audit/load_work.py SITE_DIR[,SITE_DIR...] [PAGE ...]

PAGE is a path under the site root ("" or "/" for the home page); by default the home
page and the pages of make audit's targets. Each site is served with gzip, as audit.py
serves it.
"""

from __future__ import annotations

import functools
import http.server
import os
import statistics
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from audit import GzipHandler  # noqa: E402  (tools/audit/audit.py)
from hooks.diagrams import CHROMIUM, LAUNCH_ARGS  # noqa: E402

PAGES = ["", "concurrency/reader-race/", "concurrency/comparison/",
         "concurrency/fixes/", "scaling/stampede/", "distributed/snapshots/"]
PHONE = {"viewport": {"width": 412, "height": 823}, "is_mobile": True,
         "has_touch": True, "device_scale_factor": 2.6}


def serve(site: str) -> str:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(GzipHandler, directory=site))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def load_work(browser, url: str) -> tuple[float, float, float]:
    """Task, style + layout, and script milliseconds of one load."""
    context = browser.new_context(**PHONE)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    page.goto(url, wait_until="load")
    page.wait_for_timeout(1500)  # what the page does right after its load counts too
    metrics = {metric["name"]: metric["value"]
               for metric in cdp.send("Performance.getMetrics")["metrics"]}
    context.close()
    return (metrics["TaskDuration"] * 1000,
            (metrics["RecalcStyleDuration"] + metrics["LayoutDuration"]) * 1000,
            metrics["ScriptDuration"] * 1000)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    sites = argv[0].split(",")
    missing = [site for site in sites if not Path(site, "index.html").is_file()]
    if missing:
        sys.exit(f"no built site (index.html) in: {' '.join(missing)}")
    pages = [page.lstrip("/") for page in argv[1:]] or PAGES
    reps = int(os.environ.get("REPS", "5"))
    bases = {site: serve(site) for site in sites}
    from playwright.sync_api import sync_playwright

    print(f"{'site':<20} {'page':<28} {'task ms':>8} {'style+layout':>13} "
          f"{'script':>7}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        for page in pages:
            loads: dict[str, list[tuple[float, float, float]]] = {s: [] for s in sites}
            for _ in range(reps):
                for site in sites:  # alternating, so a busy moment falls on both
                    loads[site].append(load_work(browser, bases[site] + page))
            for site in sites:
                task, layout, script = (statistics.median(column)
                                        for column in zip(*loads[site], strict=True))
                print(f"{Path(site).name:<20} {page or '/':<28} {task:8.0f} "
                      f"{layout:13.0f} {script:7.0f}")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])
