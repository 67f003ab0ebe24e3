"""``python -m snippets.explorer``: the worked example; ``--bench [--old] [--full]``:
the speed figures; ``--diagrams [--check] [pages...]``: rewrite (or only compare) the
generated diagrams; ``--transcripts [--check] [pages...]``: the same for each page's
``>>> main()`` output; ``--trees [--check] [pages...]``: the same for the stepper's
schedule trees (docs/assets/steppers/); ``check READ WRITE [options]``: your own read
and write under the explorer (``snippets/explorer/check.py``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def rewrite(what: str, update: Callable[[Sequence[Path], bool], list[str]],
            pages: Sequence[Path], argv: Sequence[str]) -> None:
    """Rewrite the generated ``what`` on ``pages`` (``--check``: only compare, and exit
    with 1 if any differs)."""
    check = "--check" in argv
    changed = update(pages, not check)
    verb = "differs" if check else "rewritten"
    print("\n".join(f"{verb}: {c}" for c in changed) or f"every {what} is up to date")
    if changed and check:
        raise SystemExit(1)


def main(argv: Sequence[str] = ()) -> None:
    if argv[:1] == ["check"]:
        from snippets.explorer.check import main as check

        raise SystemExit(check(argv[1:]))
    from snippets.explorer.pages import DOCS, update_diagrams, update_transcripts

    named = [Path(arg) for arg in argv if not arg.startswith("--")]
    if "--bench" in argv:
        from snippets.explorer.bench import bench

        bench(list(argv))
    elif "--diagrams" in argv:
        rewrite("generated diagram", update_diagrams,
                named or sorted(DOCS.rglob("*.md")), argv)
    elif "--trees" in argv:
        from snippets.explorer.trees import update_trees

        rewrite("stepper tree", update_trees, named or sorted(DOCS.rglob("*.md")), argv)
    elif "--transcripts" in argv:
        sections = ("patterns", "concurrency", "distributed", "fleet", "scaling",
                    "appendix")
        pages = sorted(page for name in sections for page in (DOCS / name).glob("*.md"))
        rewrite("main() transcript", update_transcripts, named or pages, argv)
    else:
        from snippets.concurrency import explorer

        explorer.main()


if __name__ == "__main__":
    main(sys.argv[1:])
