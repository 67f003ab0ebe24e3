"""Diagrams: a replayed run drawn as a Mermaid sequence diagram, and a line-by-line
check
of the text this module generates."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from snippets.explorer.text import show

if TYPE_CHECKING:
    from snippets.explorer.search import Run


def _mermaid_text(text: str) -> str:
    """Message text Mermaid accepts: no semicolons, hashes, braces or angle brackets."""
    text = text.replace(";", ",").replace("->", "to")
    return " ".join(re.sub(r"[#{}<>]", "", text).split())


STORE_NAMES = {"cache": "Redis", "db": "Database"}


def draw(run: Run, labels: dict[str, str], final_state: bool, blocks: bool) -> str:
    names = list(run.returns)
    unknown = set(labels) - set(names)
    if unknown:
        raise ValueError(f"labels name no actor: {', '.join(sorted(unknown))}")
    ids = {name: f"a{i}" for i, name in enumerate(names)}
    lines = ["sequenceDiagram"]
    lines += [
        f"    participant {ids[n]} as {_mermaid_text(labels.get(n, n))}" for n in names
    ]
    # Redis and the database always; any other store (a replica, a second region's
    # Redis) as it first appears.
    stores = {"cache": "R", "db": "D"}
    for step in run.steps:
        stores.setdefault(step.target, f"S{len(stores) - 1}")
    lines += [f"    participant {id_} as {_mermaid_text(STORE_NAMES.get(store, store))}"
              for store, id_ in stores.items()]
    finishing: dict[int, list[str]] = {}
    for name in names:
        finishing.setdefault(run.returns.ended.get(name, -1), []).append(name)
    for name in finishing.get(-1, []):
        lines.append(
            f"    Note over {ids[name]}: {_mermaid_text(_returned(run.returns[name]))}"
        )
    for index, step in enumerate(run.steps):
        who, where = ids[step.actor], stores[step.target]
        reply = "--x" if step.failed else "-->>"
        if blocks and step.inner:
            end = "ROLLBACK" if step.failed else "COMMIT"
            lines.append("    critical BEGIN, one transaction: one step")
            for text, result in [*step.inner, (end, step.result)]:
                lines.append(f"    {who}->>{where}: {_mermaid_text(text)}")
                arrow = reply if text == end else "-->>"
                lines.append(f"    {where}{arrow}{who}: {_mermaid_text(result)}")
            lines.append("    end")
        else:
            lines.append(f"    {who}->>{where}: {_mermaid_text(step.op)}")
            lines.append(f"    {where}{reply}{who}: {_mermaid_text(step.result)}")
        for name in finishing.get(index, []):
            returned = _mermaid_text(_returned(run.returns[name]))
            lines.append(f"    Note over {ids[name]}: {returned}")
    if run.verdict is not None:
        lines.append(f"    Note over R,D: {_mermaid_text(run.verdict)}")
    elif final_state:
        lines.append(f"    Note over R,D: end: {_mermaid_text(run.final)}")
    return "\n".join(lines)


MESSAGE = re.compile(r"    (\w+)(->>|-->>|--x)(\w+): ([^;#{}<>]+)")
NOTE = re.compile(r"    Note over (\w+)(?:,(\w+))?: ([^;#{}<>]+)")
BLOCK = re.compile(r"    critical [^;#{}<>]+")
PARTICIPANT = re.compile(r"    participant (\w+) as ([^;#{}<>]+)")


def mermaid_problems(text: str) -> list[str]:
    """What is wrong with a diagram this module generated, checked line by line: the
    header, participants declared before use, and no character that breaks Mermaid."""
    lines = text.split("\n")
    problems = (
        []
        if lines[0] == "sequenceDiagram"
        else ["the first line is not sequenceDiagram"]
    )
    declared: set[str] = set()
    messages = depth = 0
    for number, line in enumerate(lines[1:], start=2):
        if match := PARTICIPANT.fullmatch(line):
            if messages:
                problems.append(
                    f"line {number}: a participant declared after a message"
                )
            declared.add(match[1])
            continue
        if line == "    end" or BLOCK.fullmatch(line):
            depth += 1 if line != "    end" else -1
            if depth < 0:
                problems.append(f"line {number}: an end without a block")
            continue
        match = MESSAGE.fullmatch(line) or NOTE.fullmatch(line)
        if match is None:
            problems.append(
                f"line {number}: not a participant, message or note: {line!r}"
            )
            continue
        messages += 1
        used = (
            {match[1], match[3]}
            if match.re is MESSAGE
            else {match[1], match[2] or match[1]}
        )
        if not used <= declared:
            problems.append(f"line {number}: undeclared participant in {line!r}")
    if depth:
        problems.append("a block is not closed with end")
    return problems


def _returned(value: Any) -> str:
    if isinstance(value, BaseException):
        return f"raised {type(value).__name__}"
    return "done" if value is None else f"returns {show(value)}"
