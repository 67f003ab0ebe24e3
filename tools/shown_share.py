"""How much of snippets/ the pages show: lines inside included sections / all lines.

    python tools/shown_share.py [ROOT]      # per module, then the total
"""

import re
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
pages = "\n".join(p.read_text(encoding="utf-8") for p in (root / "docs").rglob("*.md"))
included = set(re.findall(r'--8<-- "([\w/.]+\.py):([\w-]+)"', pages))
shown_total = all_total = 0
for module in sorted((root / "snippets").rglob("*.py")):
    name = module.relative_to(root).as_posix()
    lines = module.read_text(encoding="utf-8").split("\n")
    shown, inside = 0, None
    for line in lines:
        if m := re.search(r"--8<-- \[start:([\w-]+)\]", line):
            inside = m[1]
        elif re.search(r"--8<-- \[end:", line):
            inside = None
        elif inside and (name, inside) in included:
            shown += 1
    shown_total, all_total = shown_total + shown, all_total + len(lines)
    print(f"{name:<45} {shown:>5} / {len(lines):>5}  {shown / len(lines):>4.0%}")
print(f"{'all of snippets/':<45} {shown_total:>5} / {all_total:>5}  {shown_total / all_total:>4.0%}")
