"""How long the explorer takes on every scenario a page explores.

    python tools/page_bench.py [SECTION ...]    # default: distributed

Runs each page module's ``main()`` of the given sections (as ``python -m`` would, on
fakeredis) and prints, for every exploration it makes: its actors, the reduction, the
schedules explored, the bad ones, and the seconds it took. The figures are the
explorer's own (``Exploration.seconds``), so printing them costs nothing extra.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snippets.explorer import search  # noqa: E402


def explorations_of(module: str) -> tuple[list[tuple[str, search.Exploration]], float]:
    """Every exploration ``module.main()`` makes, with its actors' names; and the
    seconds the whole ``main()`` took."""
    found: list[tuple[str, search.Exploration]] = []
    real_check, real_exploration = search.check_actors, search.Exploration
    names: list[str] = []

    def check_actors(actors):  # explore's first act: note who is explored
        names.append(" + ".join(actors))
        return real_check(actors)

    class Recorded(real_exploration):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            found.append((names[-1] if names else "?", self))

    search.check_actors, search.Exploration = check_actors, Recorded
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            importlib.import_module(module).main()
    finally:
        search.check_actors, search.Exploration = real_check, real_exploration
    return found, time.perf_counter() - started


def main(sections: list[str]) -> None:
    os.environ.pop("REDIS_URL", None)  # the embedded world, as a newcomer runs it
    for section in sections:
        for path in sorted((ROOT / "snippets" / section).glob("*.py")):
            if path.name == "__init__.py":
                continue
            module = f"snippets.{section}.{path.stem}"
            found, seconds = explorations_of(module)
            print(f"{module}: main() {seconds:.2f} s, {len(found)} explorations")
            for actors, result in found:
                print(f"  {actors:<40} {result.reduction:>5} {result.total:>6} schedules"
                      f" {len(result.bad):>5} bad {result.seconds:>7.3f} s")


if __name__ == "__main__":
    main(sys.argv[1:] or ["distributed"])
