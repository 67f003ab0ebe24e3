"""The stepper on the built site: a reader steps through the reader race in Chromium, and
what the widget shows is what the explorer's replay of the same schedule gives.

The site, its server and Chromium are the shared fixtures of tests/site_fixtures.py (a
strict build into a temporary directory, or SITE_DIR; loopback only; skipped outside CI without Chromium, failed
with CI=true). The contract the widget follows is the one between
docs/assets/js/stepper.js and the trees of snippets/explorer/trees.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from snippets.concurrency.reader_race import explore_reader, reader_race
from snippets.explorer.trees import state_panels
from snippets.patterns.cache_aside import update_user
from tests.site_fixtures import PHONE
from tests.test_site import _contrast

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
PAGE = "concurrency/reader-race/"
TREE_ID = "concurrency.reader_race.reader_race"
TREE = ROOT / "docs" / "assets" / "steppers" / f"{TREE_ID}.json"
STEPPER = f'div.stepper[data-stepper="{TREE_ID}"]'


def _tree() -> dict[str, Any]:
    return json.loads(TREE.read_text(encoding="utf-8"))


def _leaf(tree: dict[str, Any], schedule: list[str]) -> dict[str, Any]:
    """The JSON node a schedule ends at, followed move by move from the start."""
    names = [actor["name"] for actor in tree["actors"]]
    node = tree["nodes"][0]
    for name in schedule:
        move = next(m for m in node["m"] if m[0] == names.index(name))
        node = tree["nodes"][move[4]]
    assert "m" not in node, f"{schedule} does not end at a leaf"
    return node


def _stepper(open_page, fragment: str = "", *, scroll: bool = True, **options: Any):
    """The reader-race page, its stepper loaded (scrolled to, as a reader would)."""
    visit = open_page(PAGE + fragment, **options)
    root = visit.page.locator(STEPPER)
    assert root.count() == 1, f"no stepper {TREE_ID} on {PAGE}"
    if scroll:
        root.evaluate("el => el.scrollIntoView()")
    root.locator('[data-role="schedule"]').wait_for(state="attached", timeout=10_000)
    return visit, root


def _schedule(root) -> str:
    return root.locator('[data-role="schedule"]').text_content().strip()


def _take(root, schedule: list[str]) -> None:
    for name in schedule:
        root.locator(f'button[data-actor="{name}"]').click()


def _panel(root, name: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in root.locator(f'[data-panel="{name}"] li').all_text_contents())


def test_the_page_has_a_stepper_and_its_tree(site_dir):
    assert TREE.is_file(), f"{TREE} is missing: python -m snippets.explorer --trees"
    html = (site_dir / PAGE / "index.html").read_text(encoding="utf-8")
    assert f'data-stepper="{TREE_ID}"' in html
    assert "assets/js/stepper.js" in html and '<style id="stepper-css">' in html
    other = (site_dir / "concurrency" / "fixes" / "index.html").read_text(encoding="utf-8")
    if "data-stepper=" not in other:  # a page without a stepper loads none of it
        assert "stepper.js" not in other and "stepper-css" not in other


def test_clicking_the_race_ends_bad_exactly_as_the_replay_says(open_page):
    tree, run = _tree(), reader_race()
    race = tree["race"]
    assert race == list(run.schedule)
    # The tree counts what the explorer counts, and its leaf is the replay's end.
    exploration = explore_reader(update_user)
    assert (tree["bad"], tree["total"]) == (len(exploration.bad), exploration.total)
    leaf = _leaf(tree, race)
    assert run.verdict and tree["text"][leaf["v"]] == run.verdict
    panels = dict(state_panels(run.cache, run.db))

    visit, root = _stepper(open_page)
    assert f"{tree['bad']} bad of {tree['total']} schedules" in root.inner_text()
    _take(root, race)

    assert _schedule(root) == " ".join(race)
    verdict = root.locator('[data-role="verdict"]')
    assert verdict.get_attribute("data-verdict") == "bad"
    shown = verdict.inner_text()
    assert shown.startswith(f"Bad: {run.verdict}"), shown
    labels = {actor["name"]: actor["label"] for actor in tree["actors"]}
    for name, value in run.returns.items():
        assert f"{labels[name]} returned {value!r}" in shown
    assert _panel(root, "Redis") == panels["Redis"] == ("user:1 = 'old'",)
    assert _panel(root, "Database") == panels["Database"]
    assert "name='new'" in panels["Database"][0]
    assert root.locator('[data-role="lanes"] [data-step]').count() == len(race)
    live = root.locator('[aria-live="polite"]')
    assert f"Step {len(race)}:" in live.text_content()
    assert not visit.problems, visit.problems


@pytest.mark.parametrize("fragment", [
    "#schedule=R-R-W-W-R",
    f"#schedule=R-R-W-W-R&stepper={TREE_ID}",
])
def test_a_schedule_in_the_address_opens_that_state(open_page, fragment):
    run = reader_race()
    visit, root = _stepper(open_page, fragment, scroll=False)  # no scrolling, no click
    verdict = root.locator('[data-role="verdict"]')
    verdict.and_(root.locator("[data-verdict]")).wait_for(timeout=10_000)
    assert _schedule(root) == "R R W W R"
    assert verdict.get_attribute("data-verdict") == "bad"
    assert verdict.inner_text().startswith(f"Bad: {run.verdict}")
    assert not visit.problems, visit.problems


def test_a_schedule_that_does_not_fit_starts_from_the_beginning_and_says_so(open_page):
    visit, root = _stepper(open_page, "#schedule=R-W-X", scroll=False)
    assert _schedule(root) == ""
    assert root.locator('[data-role="verdict"]').get_attribute("data-verdict") is None
    assert "R W X" in root.inner_text() and "beginning" in root.inner_text()
    assert root.locator("button[data-actor]").count() == 2
    assert not visit.problems, visit.problems


def test_rewinding_to_a_step_then_choosing_another_actor_branches(open_page):
    visit, root = _stepper(open_page)
    _take(root, ["R", "R", "W", "W", "R"])
    root.locator('[data-step="1"] button').click()  # just after step 2 (index 1)
    assert _schedule(root) == "R R"
    assert root.locator("[data-step]").count() == 2
    assert root.locator('[data-role="verdict"]').get_attribute("data-verdict") is None
    assert _panel(root, "Redis") == ("(empty)",)
    _take(root, ["R"])  # the reader, where the writer went before
    assert _schedule(root) == "R R R"
    assert "SET user:1" in root.locator('[data-step="2"]').inner_text()
    assert visit.page.url.endswith("#schedule=R-R-R")
    _take(root, ["W", "W"])
    assert root.locator('[data-role="verdict"]').get_attribute("data-verdict") == "ok"
    assert _panel(root, "Redis") == ("(empty)",)
    assert not visit.problems, visit.problems


def test_show_me_the_race_reaches_the_bad_leaf(open_page):
    tree = _tree()
    visit, root = _stepper(open_page)
    _take(root, ["W"])  # from anywhere
    root.locator('button[data-role="race"]').click()
    assert _schedule(root) == " ".join(tree["race"])
    assert root.locator('[data-role="verdict"]').get_attribute("data-verdict") == "bad"
    assert not visit.problems, visit.problems


def test_share_puts_the_schedule_in_the_address_and_the_clipboard(open_page):
    visit, root = _stepper(open_page, permissions=["clipboard-read", "clipboard-write"])
    _take(root, ["R", "W"])
    root.locator('button[data-role="share"]').click()
    visit.page.wait_for_function("() => navigator.clipboard.readText().then(t => t.includes('#'))")
    copied = visit.page.evaluate("navigator.clipboard.readText()")
    assert copied == visit.page.url and copied.endswith(f"/{PAGE}#schedule=R-W")
    assert not visit.problems, visit.problems


def test_the_widget_fetches_only_its_tree_lazily_and_logs_no_error(open_page):
    # A short window: the stepper is well below it, so nothing is fetched up front.
    visit = open_page(PAGE, viewport={"width": 1280, "height": 300})
    page = visit.page
    before = list(visit.requests)
    assert not [url for url in before if "/assets/steppers/" in url], before
    root = page.locator(STEPPER)
    root.evaluate("el => el.scrollIntoView()")
    root.locator('[data-role="schedule"]').wait_for(state="attached", timeout=10_000)
    for role in ("race", "back", "restart", "random", "back", "share"):
        root.locator(f'button[data-role="{role}"]').click()
    page.wait_for_load_state("networkidle")
    # Only the tree. Meanwhile the lazy Mermaid loader fetches the diagram below it, and
    # Chromium itself asks for the favicon again when the address changes.
    after = [url for url in visit.requests[len(before):]
             if "/assets/js/mermaid" not in url and not url.endswith("/favicon.png")]
    site = visit.requests[0].removesuffix(PAGE)
    assert after == [f"{site}assets/steppers/{TREE_ID}.json"], after
    assert not visit.external_requests(), visit.external_requests()
    assert not visit.problems, visit.problems


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("schedule", [["R", "R", "W", "W", "R"], ["W", "W", "R", "R", "R"]])
def test_the_verdict_is_readable_in_both_schemes(open_page, scheme, schedule):
    visit, root = _stepper(open_page, scheme=scheme)
    _take(root, schedule)
    colors = root.locator('[data-role="verdict"] p').evaluate(
        "p => [getComputedStyle(p).color, getComputedStyle(p.parentElement).backgroundColor]")
    assert _contrast(*colors) >= 4.5, colors


def test_at_360_px_the_page_does_not_scroll_sideways(open_page):
    visit, root = _stepper(open_page, viewport=PHONE, is_mobile=True, has_touch=True)
    _take(root, ["R", "R", "W", "W", "R"])
    page = visit.page
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = root.locator('[data-role="lanes"]').evaluate(
        "el => ({right: el.getBoundingClientRect().right, overflow: getComputedStyle(el).overflowX})")
    assert box["right"] <= PHONE["width"] and box["overflow"] in {"auto", "scroll"}, box
    assert not visit.problems, visit.problems


def test_keys_take_steps_and_go_back(open_page):
    visit, root = _stepper(open_page)
    root.locator("button[data-actor]").first.focus()
    page = visit.page
    for key in ["1", "1", "2", "2", "1"]:  # the n-th actor that can move: R R W W R
        page.keyboard.press(key)
    assert _schedule(root) == "R R W W R"
    assert root.locator('[data-role="verdict"]').get_attribute("data-verdict") == "bad"
    assert root.evaluate("el => el.contains(document.activeElement)"), "focus left the stepper"
    page.keyboard.press("Backspace")
    page.keyboard.press("ArrowLeft")
    assert _schedule(root) == "R R W"
    root.locator('button[data-actor="R"]').focus()
    page.keyboard.press("Enter")
    assert _schedule(root) == "R R W R"
    assert not visit.problems, visit.problems


# The comparison table: every cell links to its stepper (or says why it has none).

def _cell_link(visit, strategy: str, column: int):
    table = visit.page.locator("article table", has_text="stampede + write")
    row = table.locator("tr").filter(has=visit.page.locator("td", has_text=strategy)).first
    return row.locator("td").nth(column).locator("a")  # column 0 names the strategy


@pytest.mark.parametrize(("strategy", "column", "scenario"), [
    ("leases", 5, "replica lag"),         # a bad cell, in the fourth tab of its section
    ("invalidate-on-write", 1, "two writers"),  # a cell with none bad: the start
])
def test_a_table_cell_opens_its_own_stepper_at_its_first_bad_schedule(
        open_page, strategy, column, scenario):
    from snippets.concurrency import comparison
    run = comparison.cell_run(f"{strategy}/{comparison.slug(scenario)}")
    found = comparison.cell_found(strategy, scenario)
    ident = comparison.stepper_id(strategy, scenario)
    visit = open_page("concurrency/comparison/")
    link = _cell_link(visit, strategy, column)
    # text_content, not inner_text: the table is laid out only near the screen (site.css),
    # and until then it has no rendered text.
    assert link.text_content() == f"{len(found.bad)} of {found.total}"
    link.click()
    root = visit.page.locator(f'div.stepper[data-stepper="{ident}"]')
    root.locator('[data-role="schedule"]').wait_for(timeout=10_000)
    assert root.is_visible(), "the cell's tab was not opened"
    if found.bad:
        assert _schedule(root) == str(found.bad[0]) == str(run.schedule)
        verdict = root.locator('[data-role="verdict"]')
        assert verdict.get_attribute("data-verdict") == "bad"
        assert verdict.inner_text().startswith(f"Bad: {run.verdict}")
    else:
        assert _schedule(root) == ""
        assert root.locator('[data-role="verdict"]').get_attribute("data-verdict") is None
        tree = json.loads((ROOT / "docs" / "assets" / "steppers" / f"{ident}.json").read_text())
        assert tree["bad"] == 0 and f"0 bad of {tree['total']} schedules" in root.inner_text()
    assert not visit.problems, visit.problems


def test_a_cell_too_big_for_a_stepper_leads_to_its_section_which_says_so(open_page):
    from snippets.concurrency import comparison
    assert not comparison.steppable("leases", "stampede + write")
    visit = open_page("concurrency/comparison/")
    link = _cell_link(visit, "leases", 4)
    assert link.get_attribute("href") == "#step-stampede-write"
    section = visit.page.locator("#step-stampede-write")
    assert section.count() == 1
    assert f"More than {comparison.STEPPER_LIMIT} interleavings" in \
        visit.page.locator("article").text_content()  # in the tab of that strategy
    assert not visit.problems, visit.problems
