"""`make audit`: how fast, heavy and accessible the site is, page by page.

1. Times `make build` and `make test` (skip with AUDIT_TIMES=0).
2. Builds the site for http://127.0.0.1:<port>/ (so its canonical links are its own) and
   serves it from a thread with gzip, as GitHub Pages serves it.
3. Runs Lighthouse (tools/audit/lighthouse.mjs, Debian's Chromium) on every page of the
   sitemap, mobile and desktop presets, and prints the scores and bytes transferred against
   the targets. Exit status 1 when a target is missed.

AUDIT_PAGES="/ patterns/cache-aside/" limits the run to those pages ("/" is the home page).
AUDIT_DETAIL=1 prints each run's longest main-thread tasks and costliest scripts;
AUDIT_LHR_DIR=/some/dir keeps every full Lighthouse report (JSON) there.
"""

from __future__ import annotations

import functools
import gzip
import io
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
COMPRESSIBLE = {".html", ".css", ".js", ".mjs", ".json", ".xml", ".svg", ".txt", ".map"}
HOME_BUDGET = 300 * 1024  # bytes transferred by the home page


class GzipHandler(http.server.SimpleHTTPRequestHandler):
    """Static files; text compressed with gzip when the client accepts it."""

    cache: dict[Path, bytes] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "max-age=600")  # what GitHub Pages sends
        super().end_headers()

    def send_head(self):  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            if not self.path.split("?")[0].endswith("/"):
                return super().send_head()  # the redirect to the slashed address
            path = path / "index.html"
        if (path.suffix not in COMPRESSIBLE or not path.is_file()
                or "gzip" not in self.headers.get("Accept-Encoding", "")):
            return super().send_head()
        body = self.cache.get(path)
        if body is None:
            body = self.cache[path] = gzip.compress(path.read_bytes(), 6)
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


def timed(command: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def main() -> int:
    times = {}
    if os.environ.get("AUDIT_TIMES", "1") != "0":
        for target in ("build", "test"):
            print(f"== timing make {target}", flush=True)
            times[target] = timed(["make", "--no-print-directory", target])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), None)  # type: ignore[arg-type]
    port = server.server_address[1]
    base = f"http://127.0.0.1:{port}/"
    site = Path(tempfile.mkdtemp(prefix="site-audit-"))
    print(f"== building the site for {base}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=ROOT, check=True, env={**os.environ, "SITE_URL": base, "NO_MKDOCS_2_WARNING": "1"},
    )
    server.RequestHandlerClass = functools.partial(GzipHandler, directory=str(site))  # type: ignore[assignment]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    sitemap = (site / "sitemap.xml").read_text(encoding="utf-8")
    pages = [url[len(base):] for url in re.findall(r"<loc>([^<]+)</loc>", sitemap)]
    if os.environ.get("AUDIT_PAGES"):
        asked = [page.lstrip("/") for page in os.environ["AUDIT_PAGES"].split()]  # "/": home
        unknown = [page or "/" for page in asked if page not in pages]
        if unknown:
            sys.exit(f"AUDIT_PAGES names pages the site does not have: {' '.join(unknown)}\n"
                     f"pages: / {' '.join(page for page in pages if page)}")
        pages = asked
    html = {p: (site / p / "index.html").read_text(encoding="utf-8") for p in pages}
    diagrams = {p: 'class="mermaid"' in html[p] for p in pages}  # drawn at build, or not
    steppers = {p: 'class="stepper"' in html[p] for p in pages}

    print(f"== Lighthouse on {len(pages)} pages x 2 presets (a few minutes)", flush=True)
    run = subprocess.run(
        ["node", str(HERE / "lighthouse.mjs"), *[base + p for p in pages]],
        cwd=HERE, capture_output=True, text=True,
        env={**os.environ, "CHROME_PATH": os.environ.get("CHROME_PATH", "/usr/bin/chromium")},
    )
    server.shutdown()
    if run.returncode != 0:
        print(run.stdout, run.stderr, sep="\n")
        return run.returncode
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]

    misses = []
    header = (f"{'page':<36} {'preset':<8} {'perf':>4} {'a11y':>4} {'b.p.':>4} {'SEO':>4} {'KiB':>6} "
              f"{'TBT':>7}  diagram stepper")
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        page = r["url"][len(base):] or "(home)"
        has_diagram = diagrams[r["url"][len(base):]]
        has_stepper = steppers[r["url"][len(base):]]
        # Every page, diagrams and steppers included: Mermaid and the stepper load lazily
        # and draw in small tasks, so they get no allowance.
        perf_target = 95 if r["preset"] == "desktop" else 90
        checks = [("accessibility", r["accessibility"] >= 100), ("best practices", r["bestPractices"] >= 100),
                  (f"performance >= {perf_target}", r["performance"] >= perf_target)]
        if page == "(home)":
            checks.append(("home under 300 KiB", r["bytes"] < HOME_BUDGET))
        missed = [name for name, ok in checks if not ok]
        mark = "  MISSES: " + ", ".join(missed) if missed else ""
        print(f"{page:<36} {r['preset']:<8} {r['performance']:>4} {r['accessibility']:>4} "
              f"{r['bestPractices']:>4} {r['seo']:>4} {r['bytes'] / 1024:>6.0f} "
              f"{r['metrics']['total-blocking-time'].replace(chr(160), ' '):>7}  "
              f"{'yes' if has_diagram else 'no':<7} {'yes' if has_stepper else 'no':<7}{mark}")
        if os.environ.get("AUDIT_DETAIL") == "1":
            for line in r.get("longTasks", []) + r.get("bootup", []):
                print(f"    {line.replace(base, '/')}")
        if r.get("runtimeError"):
            missed.append(f"runtime error: {r['runtimeError']}")
        if missed:
            failing = {k: v for k, v in r["failing"].items() if v}
            misses.append(f"{page} ({r['preset']}): {', '.join(missed)}; failing audits: {failing}; "
                          f"metrics: {r['metrics']}; long tasks: {r.get('longTasks')}")
    print()
    print("Targets: accessibility 100 and best practices 100 everywhere; performance >= 95 desktop and")
    print(">= 90 mobile on every page, diagrams and steppers included; home page under 300 KiB.")
    print("(AUDIT_DETAIL=1 lists each run's long tasks; AUDIT_LHR_DIR=dir keeps the full reports.)")
    for name, seconds in times.items():
        print(f"make {name}: {seconds:.1f} s")
    if misses:
        print("\nMissed:\n  " + "\n  ".join(misses))
        return 1
    print("Every target met.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
