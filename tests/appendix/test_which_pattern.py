"""Which pattern do I need: the summary table is what the code computes, each cost and
verdict the prose states is counted, and the chart parses, has no more than fifteen
boxes, and every box that names a page has a link under the chart."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from snippets.appendix import which_pattern
from snippets.appendix.which_pattern import (
    PAGE,
    THREATS,
    Cost,
    costs,
    holds_against,
    stale_under,
    summary_table,
)
from snippets.backends import Cache, make_db, make_fake_cache
from snippets.concurrency.comparison import BEYOND, SCENARIOS, STRATEGIES

ROOT = Path(__file__).resolve().parents[2]
TEXT = PAGE.read_text(encoding="utf-8")


# --- the table --------------------------------------------------------------------------

def test_the_page_shows_the_summary_the_code_computes():
    assert which_pattern.page_table() == summary_table()


def test_writing_an_up_to_date_page_changes_nothing(tmp_path):
    copy = tmp_path / PAGE.name
    copy.write_text(TEXT, encoding="utf-8")
    assert which_pattern.write_table(copy) is False
    assert copy.read_text(encoding="utf-8") == TEXT


def test_every_column_of_the_comparison_is_named_as_a_threat():
    assert list(THREATS) == [*SCENARIOS, *BEYOND]


def test_an_unknown_strategy_names_the_known_ones():
    with pytest.raises(LookupError, match="strategies: update-on-write"):
        costs("write-around", make_fake_cache(), make_db())


# --- the costs, on both backends ----------------------------------------------------------

def costs_on(cache: Cache) -> dict[str, dict[str, Cost]]:
    found = {}
    for strategy in STRATEGIES:
        cache.flushdb()
        found[strategy] = costs(strategy, cache, make_db())
    return found


def test_the_costs_are_the_same_on_every_backend(cache):
    assert costs_on(cache) == costs_on(make_fake_cache())


def test_a_hit_is_one_get_and_no_db_statement_in_every_strategy():
    assert {found["hit"] for found in costs_on(make_fake_cache()).values()} == {Cost(0, 1, 1)}


def test_a_lease_costs_one_round_trip_more_per_miss_and_nothing_more_per_write():
    found = costs_on(make_fake_cache())
    lease, plain = found["leases"], found["invalidate-on-write"]
    assert lease["miss"].trips == plain["miss"].trips + 1
    assert lease["miss"].db == plain["miss"].db
    assert lease["write"] == plain["write"] == Cost(1, 1, 1)


def test_versioned_sets_cost_the_most_per_write_and_leave_the_new_value_cached():
    found = costs_on(make_fake_cache())
    most = max(found, key=lambda s: (found[s]["write"].db, found[s]["write"].trips))
    assert most == "versioned-set"
    assert found["versioned-set"]["next read"] == found["versioned-set"]["hit"]


# --- the verdicts the prose reads off the table -------------------------------------------

def test_only_versioned_sets_hold_on_a_lagging_replica_or_an_old_snapshot():
    for threat in ("a lagging replica", "an old snapshot"):
        assert [s for s in STRATEGIES if threat in holds_against(s)] == ["versioned-set"]
    assert "an eviction mid-race" in stale_under("versioned-set")


def test_leases_hold_against_every_race_of_the_basic_model():
    assert holds_against("leases") == ["racing writers", "a reader's late fill",
                                       "an eviction mid-race", "two readers and a writer"]


def test_the_other_three_hold_against_nothing_invalidate_on_write_does_not():
    plain = set(holds_against("invalidate-on-write"))
    assert plain == {"racing writers"}
    for strategy in ("delete-first", "double-delete", "update-on-write"):
        assert set(holds_against(strategy)) <= plain


def test_nothing_holds_after_a_failover_that_loses_a_write():
    assert all("a Redis failover" in stale_under(s) for s in STRATEGIES)


def test_holds_and_stale_split_every_column():
    for strategy in STRATEGIES:
        assert sorted(holds_against(strategy) + stale_under(strategy)) == sorted(THREATS.values())


# --- the chart ----------------------------------------------------------------------------

NODE = re.compile(r'    (\w+)(\{"[^"{}\[\]]+"\}|\["[^"{}\[\]]+"\])')
EDGE = re.compile(r'    (\w+) (?:-- (?:"[^"]+"|[\w ]+) )?--> (\w+)')


def chart() -> str:
    [text] = re.findall(r"^```mermaid\n(.*?)^```$", TEXT, re.S | re.M)
    return text


def nodes(text: str) -> dict[str, tuple[str, str]]:
    """Each box: id -> ("question" or "page", label)."""
    return {m[1]: ("question" if m[2][0] == "{" else "page", m[2][2:-2])
            for m in NODE.finditer(text)}


def chart_problems(text: str) -> list[str]:
    """A flowchart in the subset this page uses: a TD header, then one box or one edge per
    line; every edge between declared boxes; every box declared once and reachable."""
    lines = text.rstrip("\n").split("\n")
    problems = [] if lines[0] == "flowchart TD" else ["the first line is not flowchart TD"]
    declared: list[str] = []
    edges: list[tuple[str, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        if node := NODE.fullmatch(line):
            declared.append(node[1])
        elif edge := EDGE.fullmatch(line):
            edges.append((edge[1], edge[2]))
        else:
            problems.append(f"line {number}: not a box or an edge: {line!r}")
    if len(set(declared)) != len(declared):
        problems.append("a box is declared twice")
    problems += [f"an edge to an undeclared box: {a} --> {b}" for a, b in edges
                 if not {a, b} <= set(declared)]
    reached, frontier = set(declared[:1]), declared[:1]
    while frontier:
        frontier = [b for a, b in edges if a in frontier and b not in reached]
        reached.update(frontier)
    problems += [f"{box} cannot be reached from the top" for box in declared
                 if box not in reached]
    return problems


def test_the_chart_is_a_short_flowchart_with_every_box_reachable():
    assert chart_problems(chart()) == []
    assert len(nodes(chart())) <= 15


def test_the_chart_checker_finds_what_breaks_a_chart():
    good = 'flowchart TD\n    a{"Q?"}\n    b["P"]\n    a -- yes --> b'
    assert chart_problems(good) == []
    assert chart_problems(good.replace("flowchart TD", "graph LR")) != []
    assert chart_problems(good + "\n    a --> c") != []  # undeclared
    assert chart_problems(good + '\n    c["Q"]') != []  # unreachable
    assert chart_problems(good.replace('["P"]', '["P (x)]')) != []  # a broken label


def test_every_page_box_has_one_item_with_links_under_the_chart_in_its_order():
    after = TEXT[TEXT.index("```\n", TEXT.index("```mermaid")):]
    items = re.findall(r"^- \*\*(.+?)\*\*: (.*?)(?=^- |^\n)", after, re.S | re.M)
    pages = [label for kind, label in nodes(chart()).values() if kind == "page"]
    assert [label for label, _ in items] == pages
    assert all(re.search(r"\]\(\.\./\w+/[\w-]+\.md", body) for _, body in items)


@pytest.mark.skipif(shutil.which("node") is None
                    or not (ROOT / "node_modules" / "mermaid").is_dir(),
                    reason="needs Node.js and node_modules (make installs them)")
def test_mermaid_itself_parses_the_chart(tmp_path):
    """Mermaid's own parser, in Node. Drawing needs a browser: the first step after the
    parse, sanitising the labels with DOMPurify, fails in Node without a DOM, so reaching
    it means the text parsed (the browser tests of the built site draw it)."""
    script = tmp_path / "parse.mjs"
    script.write_text(
        f"import mermaid from {str(ROOT / 'node_modules/mermaid/dist/mermaid.core.mjs')!r};\n"
        "import fs from 'fs';\n"
        "try { await mermaid.parse(fs.readFileSync(process.argv[2], 'utf8')); console.log('ok'); }\n"
        "catch (e) { console.log(e.message); }\n", encoding="utf-8")
    source = tmp_path / "chart.mmd"
    source.write_text(chart(), encoding="utf-8")
    done = subprocess.run(["node", str(script), str(source)], capture_output=True,
                          text=True, timeout=60)
    out = done.stdout.strip()
    assert out in ("ok", "DOMPurify.addHook is not a function"), out
    source.write_text(chart().replace('"}', '"', 1), encoding="utf-8")  # a box left open
    broken = subprocess.run(["node", str(script), str(source)], capture_output=True,
                            text=True, timeout=60)
    assert "Parse error" in broken.stdout


# --- the links ------------------------------------------------------------------------------

def heading_ids(page: Path) -> set[str]:
    return {slugify(re.sub(r"[`*]", "", m[1]), "-")
            for m in re.finditer(r"^#{1,6} (.+?)\s*$", page.read_text(encoding="utf-8"), re.M)}


def test_every_link_of_the_page_leads_to_a_page_and_a_heading_that_exist():
    for target, anchor in re.findall(r"\]\(([\w./-]+\.md)(?:#([\w-]+))?\)", TEXT):
        page = (PAGE.parent / target).resolve()
        assert page.is_file(), target
        if anchor:
            assert anchor in heading_ids(page), f"{target}#{anchor}"


def test_the_holds_when_box_links_where_the_model_breaks():
    box = TEXT[TEXT.index('!!! info "Holds when"'):TEXT.index('!!! example')]
    for page in ("../distributed/replica-lag.md", "../distributed/failover.md",
                 "../distributed/snapshots.md"):
        assert f"]({page})" in box


# --- the prose ------------------------------------------------------------------------------

def test_the_prose_counts_the_comparisons_strategies_and_scenarios():
    words = {6: "six", 7: "seven"}
    assert (f"runs {words[len(STRATEGIES)]} write strategies" in TEXT
            and f"in {words[len(THREATS)]} scenarios" in TEXT)


def test_the_common_advice_is_quoted_word_for_word():
    advice = " ".join(Path(__file__).with_name("common-advice.md").read_text(encoding="utf-8").split())
    [quote] = re.findall(r'ends its overview with "([^"]+)"', " ".join(TEXT.split()))
    assert quote in advice
