"""The house mirrors the site: every page has its module and its tests, the kit never
depends on a page, imports form no circle, and every module runs as a script."""

from __future__ import annotations

import ast
import functools
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from snippets.explorer import search

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = ROOT / "snippets"
SECTIONS = ("patterns", "concurrency", "distributed", "fleet", "scaling", "appendix")
KIT = ("backends", "faults", "scenarios", "simulation", "explorer")


class _Loader(yaml.SafeLoader):
    """Reads mkdocs.yml without importing what its ``!!python/name`` and ``!ENV`` name."""


_Loader.add_multi_constructor("", lambda loader, suffix, node: None)


def nav_pages() -> list[str]:
    """Every Markdown page of the nav, as a path under docs/."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(config["nav"])
    return [page for page in found if page.endswith(".md") and "/" in page]


@functools.cache
def modules() -> list[str]:
    """Every module of snippets/, dotted (``snippets.patterns.cache_aside``)."""
    names = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
             for path in SNIPPETS.rglob("*.py")}
    return sorted(names - {"snippets"})


# --- the map: docs/<section>/<page>.md <-> snippets/<section>/<page>.py <-> tests/... ------

@pytest.mark.parametrize("page", nav_pages())
def test_every_page_has_its_module_and_its_tests(page):
    section, name = page.removesuffix(".md").split("/")
    assert section in SECTIONS, f"{page}: a page lives in one of {SECTIONS}"
    stem = name.replace("-", "_")
    assert (SNIPPETS / section / f"{stem}.py").is_file(), f"{page} has no snippets/{section}/{stem}.py"
    assert (ROOT / "tests" / section / f"test_{stem}.py").is_file(), (
        f"{page} has no tests/{section}/test_{stem}.py")


def test_every_section_module_has_its_page():
    pages = {page.removesuffix(".md").replace("-", "_") for page in nav_pages()}
    for section in SECTIONS:
        for path in (SNIPPETS / section).glob("*.py"):
            if path.stem != "__init__":
                assert f"{section}/{path.stem}" in pages, f"{path.relative_to(ROOT)} has no page"


def test_the_pages_name_only_modules_that_exist():
    import re
    known = set(modules())
    texts = [p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]]
    named = {m for text in texts for m in re.findall(r"\bsnippets(?:\.[a-z_]+)+", text)}
    # `snippets.x.y.name` may name a function: the longest prefix that is a module counts
    missing = [m for m in named if not any(m == k or m.startswith(k + ".") for k in known)]
    assert missing == []


# --- imports: the kit never needs a page, no circles, the explorer only where it is used --

def load_time_imports(module: str) -> set[str]:
    """The snippets modules that ``module`` imports when it loads (not inside functions)."""
    tree = ast.parse(source(module))
    found = set()
    for node in tree.body:  # top level only: an import inside a function runs when called
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("snippets"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in modules())
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("snippets"))
    return found - {module, "snippets"}  # `from snippets import x` counts as x


def test_the_kit_imports_no_page_module():
    for module in modules():
        if module.split(".")[1] in KIT:
            pages = {m for m in load_time_imports(module) if m.split(".")[1] in SECTIONS}
            assert pages == set(), f"{module} (the kit) imports page modules {pages}"


def test_no_import_circles():
    graph = {module: load_time_imports(module) for module in modules()}
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            module, path = stack.pop()
            for imported in graph.get(module, ()):
                assert imported != start, "import circle: " + " -> ".join([*path, imported])
                if imported not in seen:
                    seen.add(imported)
                    stack.append((imported, [*path, imported]))


def test_every_module_imports_on_its_own_and_loads_the_explorer_only_if_it_uses_it():
    """Each module is imported in a fresh interpreter, so a hidden circle or a missing
    import fails here; a page module that does not import the explorer does not load it."""
    probe = ("import importlib, json, sys\n"
             "result = {}\n"
             "for name in json.loads(sys.argv[1]):\n"
             "    before = set(sys.modules)\n"
             "    importlib.import_module(name)\n"
             "    result[name] = 'snippets.explorer' in sys.modules\n"
             "    for loaded in set(sys.modules) - before:\n"
             "        if loaded.startswith('snippets'):\n"
             "            del sys.modules[loaded]\n"
             "print(json.dumps(result))\n")
    names = modules()
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(names)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for module, loaded in json.loads(done.stdout).items():
        if loaded and not module.startswith("snippets.explorer"):
            assert "snippets.explorer" in source(module), (
                f"{module} loads the explorer at import, through another module, but never uses it")


def source(module: str) -> str:
    path = SNIPPETS.parent / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return path.read_text(encoding="utf-8")


# --- every module runs as a script -------------------------------------------------------

def runnable() -> list[str]:
    """The modules a reader runs with ``python -m``: the pages' modules and the explorer
    (whose ``__main__`` makes it runnable)."""
    found = []
    for module in modules():
        if module.endswith(".__main__"):
            found.append(module.removesuffix(".__main__"))  # python -m runs the package
        elif 'if __name__ == "__main__":' in source(module):
            found.append(module)
    return found


@pytest.mark.parametrize("module", runnable())
def test_every_module_runs_as_a_script_and_its_reductions_miss_nothing(
        module, monkeypatch, capsys):
    """``python -m`` each module, as a reader would. Every exploration it runs with a
    reduction (DPOR or sleep sets) in the default world is run again with every
    interleaving: the reduced one must reach exactly the same outcomes, and the same
    bad ones. (A custom world runs every step of every schedule, far slower; the
    reduction is the same code.)"""
    monkeypatch.delenv("REDIS_URL", raising=False)  # the embedded world, as a newcomer has it
    monkeypatch.setattr(sys, "argv", [module])
    monkeypatch.delitem(sys.modules, module, raising=False)  # run it fresh, as python -m does
    explorations = record_explorations(monkeypatch)
    runpy.run_module(module, run_name="__main__", alter_sys=False)
    monkeypatch.undo()  # stop recording: the checks below explore too
    printed = capsys.readouterr().out
    assert printed.strip(), f"python -m {module} printed nothing"
    for call in explorations:  # in the default world: custom ones run far slower
        if call["reduce"] is not False and call["make_cache"] is None:
            reduced, full = search.explore(**call), unreduced(call)
            assert set(reduced.outcomes) == set(full.outcomes)
            assert bad_outcomes(reduced) == bad_outcomes(full)
            if full.reduced:  # too many for every interleaving: sleep sets instead
                assert reduced.total == full.total  # one schedule per class, both ways


def unreduced(call: dict):
    """The same exploration with every interleaving; where that is too many to run in a
    test, with sleep sets: the other reduction, which also completes one schedule per
    class of equivalent schedules."""
    try:
        return search.explore(**{**call, "reduce": False, "max_schedules": FULL_LIMIT})
    except RuntimeError as error:
        if "more than" not in str(error):
            raise
        return search.explore(**{**call, "reduce": "sleep"})


FULL_LIMIT = 1_000  # schedules: a second or two with every interleaving


def record_explorations(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The arguments of every ``explore`` call from now on, read from its frame when it
    checks its actors (its first act)."""
    calls, check_actors = [], search.check_actors

    def recording(actors):
        caller = sys._getframe(1)
        if caller.f_code is search.explore.__code__:
            calls.append({name: caller.f_locals[name] for name in EXPLORE_ARGUMENTS})
        return check_actors(actors)

    monkeypatch.setattr(search, "check_actors", recording)
    return calls


EXPLORE_ARGUMENTS = ("actors", "setup", "check", "make_cache", "make_db", "describe",
                     "reduce", "max_schedules", "max_steps")


def bad_outcomes(result) -> set[str]:
    return {outcome for outcome, verdict in result.verdicts.items() if verdict is not None}
