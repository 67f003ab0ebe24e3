"""``python -m snippets.explorer``: the worked example; ``--bench [--old] [--full]``:
the speed figures;
``--diagrams [--check] [pages...]``: rewrite (or only compare) the generated diagrams;
``--transcripts [--check] [pages...]``: the same for each page's ``>>> main()``
output."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] = ()) -> None:
    if "--bench" in argv:
        from snippets.explorer.bench import bench

        bench(list(argv))
    elif "--diagrams" in argv:
        from snippets.explorer.pages import DOCS, update_diagrams

        named = [Path(arg) for arg in argv if not arg.startswith("--")]
        pages = named or sorted(DOCS.rglob("*.md"))
        changed = update_diagrams(pages, write="--check" not in argv)
        verb = "differs" if "--check" in argv else "rewritten"
        print(
            "\n".join(f"{verb}: {c}" for c in changed)
            or "every generated diagram is up to date"
        )
        if changed and "--check" in argv:
            raise SystemExit(1)
    elif "--transcripts" in argv:
        from snippets.explorer.pages import DOCS, update_transcripts

        named = [Path(arg) for arg in argv if not arg.startswith("--")]
        pages = named or sorted(
            page
            for section in ("patterns", "concurrency", "scaling")
            for page in (DOCS / section).glob("*.md")
        )
        changed = update_transcripts(pages, write="--check" not in argv)
        verb = "differs" if "--check" in argv else "rewritten"
        print(
            "\n".join(f"{verb}: {c}" for c in changed)
            or "every main() transcript is up to date"
        )
        if changed and "--check" in argv:
            raise SystemExit(1)
    else:
        from snippets.concurrency import explorer

        explorer.main()


if __name__ == "__main__":
    main(sys.argv[1:])
