"""The stepper's schedule trees (snippets/explorer/trees.py): every interleaving of a
race page's scenario, checked against explore() and replay(), and every tree on the
site up to date (a file of its own: pytest-xdist runs it beside test_explorer.py)."""

from __future__ import annotations

import json

from snippets.explorer import explore, replay
from snippets.explorer import pages as docs_tool


def _tree(run):
    from snippets.explorer import trees
    return json.loads(trees.to_json(trees.build(run.scenario), "test",
                                    {name: name for name in run.returns}, run.schedule))


def _leaves(tree, node=0, schedule=()):
    """(schedule, leaf) for every leaf of an exported tree, walking it as the widget does."""
    entry = tree["nodes"][node]
    if "m" in entry:
        for actor, _op, _result, _store, child, _failed in entry["m"]:
            yield from _leaves(tree, child, (*schedule, tree["actors"][actor]["name"]))
    else:
        yield schedule, entry


def test_a_tree_holds_every_interleaving_and_counts_its_bad_ones_as_explore_does():
    from snippets.concurrency.reader_race import reader_race, writer_and_reader
    from snippets.patterns.cache_aside import update_user
    from snippets.scenarios import cache_agrees_with_db, user_not_cached
    tree = _tree(reader_race())
    leaves = list(_leaves(tree))
    everything = explore(writer_and_reader(update_user), user_not_cached,
                         cache_agrees_with_db, reduce=False)
    bad = [schedule for schedule, leaf in leaves if leaf["v"] is not None]
    assert (tree["total"], tree["bad"]) == (len(leaves), len(bad))
    assert (tree["total"], tree["bad"]) == (everything.total, len(everything.bad)) == (10, 1)
    assert sorted(" ".join(schedule) for schedule in bad) == \
        sorted(str(schedule) for schedule in everything.bad)
    assert tree["race"] == ["R", "R", "W", "W", "R"]


def test_each_leaf_of_a_tree_is_what_replaying_its_schedule_gives():
    from snippets.concurrency.reader_race import reader_race
    from snippets.explorer.trees import state_panels
    run = reader_race()
    tree = _tree(run)
    text = tree["text"]
    for schedule, leaf in _leaves(tree):
        again = replay(run.scenario.actors, run.scenario.setup, " ".join(schedule),
                       check=run.scenario.check)
        assert (text[leaf["v"]] if leaf["v"] is not None else None) == again.verdict
        shown = [(text[name], tuple(text[line] for line in lines))
                 for name, lines in tree["states"][leaf["s"]]]
        assert shown == [(name, lines) for name, lines in state_panels(again.cache, again.db)]


def test_a_node_offers_the_next_step_of_every_actor_that_can_move():
    from snippets.concurrency.reader_race import reader_race
    tree = _tree(reader_race())
    text, start = tree["text"], tree["nodes"][0]
    offered = {tree["actors"][a]["name"]: (text[op], text[result], text[store])
               for a, op, result, store, _child, _failed in start["m"]}
    assert offered == {
        "R": ("GET user:1", "nil", "Redis"),
        "W": ('UPDATE users SET name = "new", version = version + 1 WHERE id = 1', "1",
              "Database")}
    panels = {text[name]: [text[line] for line in lines]
              for name, lines in tree["states"][start["s"]]}
    assert panels == {"Redis": ["(empty)"], "Database": ["users: id=1 name='old' version=1"]}


def test_a_tree_numbers_random_lease_tokens_so_every_build_writes_the_same_file():
    from snippets.explorer import trees
    from snippets.scaling.mutex import lease_run
    first = trees.to_json(trees.build(lease_run().scenario), "t", {"R": "R", "W": "W"}, ())
    second = trees.to_json(trees.build(lease_run().scenario), "t", {"R": "R", "W": "W"}, ())
    assert first == second
    assert "token1" in first and not trees.TOKEN.search(first)


def test_every_stepper_tree_in_the_docs_is_up_to_date_and_asked_for():
    from snippets.explorer import trees
    pages = sorted(docs_tool.DOCS.rglob("*.md"))
    assert trees.update_trees(pages, write=False) == [], (
        "run: python -m snippets.explorer --trees")
    asked = {stepper.id for page in pages for stepper in trees.page_steppers(page)}
    files = {path.stem for path in trees.TREES.glob("*.json")}
    assert files == asked, f"trees no page asks for: {sorted(files - asked)}"


def test_a_stepper_takes_the_labels_of_the_diagram_after_it():
    from snippets.explorer import trees
    page = docs_tool.DOCS / "concurrency" / "reader-race.md"
    [first, *_] = trees.page_steppers(page)
    assert first == ("snippets.concurrency.reader_race:reader_race", None, ["Reader", "Writer"])
    assert first.id == "concurrency.reader_race.reader_race"
    tree = json.loads((trees.TREES / "concurrency.reader_race.reader_race.json").read_text())
    assert tree["actors"] == [{"name": "R", "label": "Reader"}, {"name": "W", "label": "Writer"}]


def test_a_stepper_away_from_any_diagram_takes_the_modules_labels(tmp_path):
    from snippets.explorer import trees
    page = tmp_path / "page.md"
    page.write_text("<!-- stepper: snippets.concurrency.comparison:cell_run "
                    "leases/two-writers -->\n\nText.\n\n```mermaid\nsequenceDiagram\n"
                    "    participant a0 as Someone else\n```\n")
    [stepper] = trees.page_steppers(page)
    assert stepper == ("snippets.concurrency.comparison:cell_run", "leases/two-writers", [])
    assert stepper.id == "concurrency.comparison.cell_run-leases-two-writers"
    tree = json.loads(trees.render(stepper))
    assert [actor["label"] for actor in tree["actors"]] == ["Writer A", "Writer B"]
