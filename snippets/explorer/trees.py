"""Schedule trees for the stepper: every prefix of every interleaving of a replayed
scenario, the step each actor would take next, and the stores after each step, as the
compact JSON that docs/assets/js/stepper.js reads (docs/assets/steppers/).

A page asks for one with ``<!-- stepper: snippets.module:function -->`` just before its
generated diagram; ``function()`` returns the ``Run`` that the diagram draws (a
``replay``), and the tree holds every other schedule of the same actors too.
``python -m snippets.explorer --trees`` rewrites the files (``--check`` compares)."""

from __future__ import annotations

import importlib
import itertools
import json
import pkgutil
import re
import sys
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

from snippets.backends import Database
from snippets.explorer.diagrams import STORE_NAMES
from snippets.explorer.pages import DOCS
from snippets.explorer.records import Returns, Scenario, Step
from snippets.explorer.runtime import _Run, check_actors, run_once
from snippets.explorer.text import cached_values

MAX_NODES = 20_000  # a tree the browser can still fetch quickly (a few hundred KB)
MARKER = re.compile(r"<!-- stepper: (?P<ref>[\w.]+:\w+)(?: (?P<argument>[\w/-]+))? -->")
PARTICIPANT = re.compile(r"^\s*participant a\d+ as (?P<label>.+)$", re.M)
TREES = DOCS / "assets" / "steppers"
TOKEN = re.compile(r"\b[0-9a-f]{16}\b")  # a lease's random token (secrets.token_hex(8))

Panels = tuple[tuple[str, tuple[str, ...]], ...]


def state_panels(cache: Any, db: Any) -> Panels:
    """What the stepper shows after a step: every key of each Redis, every row of each
    database, a panel per store (a world's replica or second region has its own)."""
    stores = {"cache": cache, "db": db}
    for world in (cache, db):
        if hasattr(world, "stores"):
            for name, store in world.stores().items():
                stores.setdefault(name, store)
    panels = []
    for name, store in stores.items():
        lines = (
            _rows(store)
            if isinstance(store, Database)
            else tuple(f"{key} = {value}" for key, value in cached_values(store))
        )
        panels.append((STORE_NAMES.get(name, name), lines or ("(empty)",)))
    return tuple(panels)


def _rows(db: Database) -> tuple[str, ...]:
    """``users: id=1 name='old' version=1``, for every row of every table."""
    lines = []
    tables = db.conn.execute(
        "SELECT name FROM sqlite_master"
        " WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    for (table,) in tables:
        cursor = db.conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid')
        columns = [column[0] for column in cursor.description]
        for row in cursor:
            cells = " ".join(f"{c}={v!r}" for c, v in zip(columns, row, strict=True))
            lines.append(f"{table}: {cells}")
    return tuple(lines)


@dataclass
class _Node:
    state: Panels
    moves: dict[str, tuple[Step, _Node]] = field(default_factory=dict)
    live: list[str] = field(default_factory=list)
    verdict: str | None = None
    returns: dict[str, str] = field(default_factory=dict)


@dataclass
class _Walk:
    """One run of the scenario along ``prefix`` (then the first actor still live), with
    the state before its first step and after each one, and who could move where."""

    steps: list[Step]
    states: list[Panels]
    live: list[list[str]]
    returns: Returns
    verdict: str | None


def _walk(scenario: Scenario, prefix: Sequence[str]) -> _Walk:
    live_at: list[list[str]] = []
    states: list[Panels] = []
    cache, db = scenario.make_cache(), scenario.make_db()

    def choose(position: int, live: list[str], run: _Run) -> str:
        live_at.append(list(live))
        return prefix[position] if position < len(prefix) else live[0]

    def watch(run: _Run) -> None:
        # The states along the prefix are in the tree already: only new ones are read.
        new = len(run.chosen) >= len(prefix) or not prefix
        states.append(state_panels(cache, db) if new else ())

    taken = itertools.count(
        1
    )  # lease tokens, numbered: a prefix runs the same each time
    with mock.patch(
        "secrets.token_hex", lambda nbytes=8: f"{next(taken):0{2 * nbytes}x}"
    ):
        run = run_once(
            check_actors(scenario.actors),
            scenario.setup,
            cache,
            db,
            choose,
            max_steps=200,
            recording=True,
            watch=watch,
        )
    verdict = scenario.check(cache, db, run.returns) if scenario.check else None
    return _Walk(run.steps, states, live_at, run.returns, verdict)


def _returned(value: Any) -> str:
    if isinstance(value, BaseException):
        return (
            f"raised {type(value).__name__}: {value}"
            if str(value)
            else f"raised {type(value).__name__}"
        )
    return repr(value)


def build(scenario: Scenario) -> _Node:
    """Every schedule, as a tree: one run per leaf, each starting from scratch."""
    root: _Node | None = None
    pending: list[list[str]] = [[]]  # prefixes still to run, depth first
    nodes = 0
    while pending:
        prefix = pending.pop()
        walk = _walk(scenario, prefix)
        if root is None:
            root = _Node(walk.states[0])
        node = root
        for position, step in enumerate(walk.steps):
            node.live = walk.live[position]
            if step.actor not in node.moves:
                nodes += 1
                if nodes > MAX_NODES:
                    raise RuntimeError(
                        f"more than {MAX_NODES} nodes: a stepper needs a "
                        "smaller scenario (fewer or shorter actors)"
                    )
                node.moves[step.actor] = (step, _Node(walk.states[position + 1]))
                if position >= len(prefix):  # the others, from here, are still to run
                    taken = walk.steps[position].actor
                    chosen = [
                        taken_before.actor for taken_before in walk.steps[:position]
                    ]
                    pending.extend(
                        chosen + [other]
                        for other in reversed(node.live)
                        if other != taken
                    )
            node = node.moves[step.actor][1]
        node.verdict = walk.verdict
        node.returns = {name: _returned(value) for name, value in walk.returns.items()}
    assert root is not None
    return root


def _numbered_tokens(text: str, names: dict[str, str]) -> str:
    """A random lease token, as ``token1``, ``token2``: the same tree on every build."""
    return TOKEN.sub(
        lambda m: names.setdefault(m.group(), f"token{len(names) + 1}"), text
    )


@functools.cache
def lua_names() -> dict[str, str]:
    """Each Lua script of the snippets, by the name of its constant (``FILL``): a button
    reads ``EVAL FILL 2 user:1 ...``, not the script. Every module is imported, so the
    names do not depend on what the caller imported first."""
    import snippets

    for info in pkgutil.walk_packages(snippets.__path__, "snippets."):
        importlib.import_module(info.name)
    found: dict[str, set[str]] = {}
    loaded = [m for name, m in sys.modules.items() if name.startswith("snippets.")]
    for module in loaded:
        for name, value in vars(module).items():
            if isinstance(value, str) and "redis.call" in value and name.isupper():
                found.setdefault(value, set()).add(name)
    return {
        script: min(names, key=lambda n: (n.startswith("_"), len(n), n))
        for script, names in found.items()
    }


def _named_scripts(op: str) -> str:
    for script, name in lua_names().items():
        op = op.replace(f'"{script}"', name)
    return op


def to_json(
    root: _Node, ident: str, labels: dict[str, str], race: Sequence[str]
) -> str:
    """The tree as the stepper reads it (see docs/assets/js/stepper.js), deterministic:
    nodes in depth-first order, moves in actor order, each string once."""
    texts: dict[str, int] = {}
    states: dict[Panels, int] = {}
    state_list: list[Any] = []
    nodes: list[Any] = []
    actors = list(labels)
    totals = {"total": 0, "bad": 0}

    def text(value: str) -> int:
        return texts.setdefault(value, len(texts))

    def state(panels: Panels, tokens: dict[str, str]) -> int:
        panels = tuple(
            (name, tuple(_numbered_tokens(line, tokens) for line in lines))
            for name, lines in panels
        )
        if panels not in states:
            states[panels] = len(state_list)
            state_list.append(
                [[text(name), [text(line) for line in lines]] for name, lines in panels]
            )
        return states[panels]

    def add(node: _Node, tokens: dict[str, str]) -> int:
        index = len(nodes)
        nodes.append(None)
        if not node.moves:
            totals["total"] += 1
            totals["bad"] += node.verdict is not None
            nodes[index] = {
                "s": state(node.state, tokens),
                "v": None
                if node.verdict is None
                else text(_numbered_tokens(node.verdict, tokens)),
                "r": [
                    [actors.index(name), text(_numbered_tokens(value, tokens))]
                    for name, value in node.returns.items()
                ],
            }
            return index
        here = state(node.state, tokens)
        moves = []
        for name in [name for name in actors if name in node.moves]:
            step, child = node.moves[name]
            seen = dict(tokens)  # a branch numbers its own tokens from here
            op = text(_numbered_tokens(_named_scripts(step.op), seen))
            result = text(_numbered_tokens(step.result, seen))
            store = text(STORE_NAMES.get(step.target, step.target))
            moves.append(
                [
                    actors.index(name),
                    op,
                    result,
                    store,
                    add(child, seen),
                    int(step.failed),
                ]
            )
        nodes[index] = {"s": here, "m": moves}
        return index

    add(root, {})
    tree = {
        "version": 1,
        "id": ident,
        "actors": [{"name": name, "label": labels[name]} for name in actors],
        "race": list(race),
        **totals,
        "text": list(texts),
        "states": state_list,
        "nodes": nodes,
    }
    return json.dumps(tree, ensure_ascii=False, separators=(",", ":")) + "\n"


class Stepper(NamedTuple):
    """A stepper a page asks for: ``<!-- stepper: module:function argument -->``."""

    ref: str  # module:function, a function returning a replayed Run
    argument: str | None  # passed to the function, if given (a comparison cell)
    labels: list[str]  # the actors' names, from the diagram right after it, if any

    @property
    def id(self) -> str:
        """``snippets.fleet.warming:stale_add`` -> ``fleet.warming.stale_add``; an
        argument is appended: ``...cell_run-leases-two-writers``."""
        module, _, function = self.ref.partition(":")
        ident = f"{module.removeprefix('snippets.')}.{function}"
        return ident if self.argument is None else \
            f"{ident}-{self.argument.replace('/', '-')}"


def page_steppers(page: Path) -> list[Stepper]:
    """Each stepper a page asks for. Its actors are named as in the diagram right after
    the marker (the same names as the static race), else by the module's ``LABELS``."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in MARKER.finditer(text):
        fence = text.find("```mermaid", match.end())
        between = text[match.end():fence] if fence >= 0 else "x"
        right_after = re.fullmatch(r"\s*(<!-- diagram: [\w.:]+ -->\s*)?", between)
        end = text.find("```\n", fence + 10)
        labels = PARTICIPANT.findall(text[fence:end]) if right_after else []
        found.append(Stepper(match["ref"], match["argument"], labels))
    return found


def render(stepper: Stepper) -> str:
    """The JSON tree of a stepper."""
    module, _, function = stepper.ref.partition(":")
    made = getattr(importlib.import_module(module), function)
    run = made() if stepper.argument is None else made(stepper.argument)
    if getattr(run, "scenario", None) is None:
        raise TypeError(f"{stepper.ref} must return a Run made by replay(), "
                        f"got {type(run).__name__}")
    named = getattr(importlib.import_module(module), "LABELS", {})
    names = list(run.returns)
    labels = {name: stepper.labels[i] if i < len(stepper.labels)
              else named.get(name, name) for i, name in enumerate(names)}
    return to_json(build(run.scenario), stepper.id, labels, run.schedule)


def update_trees(pages: Sequence[Path], write: bool) -> list[str]:
    """Regenerate the tree of every stepper on the pages; return those that changed."""
    changed = []
    for page in pages:
        for stepper in page_steppers(page):
            path = TREES / f"{stepper.id}.json"
            fresh = render(stepper)
            if not path.exists() or path.read_text(encoding="utf-8") != fresh:
                changed.append(f"{page.name}: {stepper.id}")
                if write:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(fresh, encoding="utf-8")
    return changed
