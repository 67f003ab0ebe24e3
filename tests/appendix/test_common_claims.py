"""Common claims, tested: every quote is the summary's own words, in the section it is
listed under; every evidence link leads to a heading (or an explicit id) that exists; every
verdict is one of the four kinds; no claim is listed twice; every section of the summary has
its claims; and the page's tables are the data, rendered.

Each check is a function that returns what it found wrong, so that the tests at the end can
feed it a broken claim and see it fail.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify, unique

from snippets.appendix.common_claims import (
    CLAIMS,
    PAGE,
    PAGE_NAMES,
    Claim,
    counts,
    markdown_table,
    page_table,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# The summary, word for word, kept beside this test so that it runs anywhere; and where the
# original lives in a full checkout of the project's sources, when it is there.
SUMMARY = Path(__file__).with_name("common-advice.md")
ORIGINAL = ROOT.parent / "shared" / "seed" / "cache-invalidation-patterns.md"
FRAGMENT = " … "  # joins the parts of a quote that leaves words out

Claims = dict[str, list[Claim]]


# --- the summary, as sections of plain text ------------------------------------------------

def normalise(text: str) -> str:
    """Text only: the summary's marks (❌ ✅ 🟥 🟩, Unicode "other symbols") dropped, and
    every run of whitespace made one space. Arrows (→) are text and stay."""
    text = "".join(c for c in text if unicodedata.category(c) != "So")
    return " ".join(text.split())


@cache
def summary_sections() -> list[tuple[int, str, str]]:
    """Each ``##`` and ``###`` section of the summary: (level, heading, normalised text of
    the heading and its body; a ``##`` section includes its ``###`` ones)."""
    text = re.sub(r"<!--.*?-->", "", SUMMARY.read_text(encoding="utf-8"), flags=re.S)
    lines = text.splitlines()
    headings = [(i, len(m[1]), m[2]) for i, line in enumerate(lines)
                if (m := re.match(r"(#{2,3}) (.+)", line))]
    sections = []
    for n, (start, level, heading) in enumerate(headings):
        end = next((i for i, lvl, _ in headings[n + 1:] if lvl <= level), len(lines))
        sections.append((level, normalise(heading), normalise("\n".join(lines[start:end]))))
    return sections


def top_sections() -> list[tuple[str, str]]:
    return [(heading, text) for level, heading, text in summary_sections() if level == 2]


def spans(quote: str, text: str) -> list[tuple[int, int]] | None:
    """Where each fragment of ``quote`` is in ``text``, in order; None if one is not."""
    found, at = [], 0
    for fragment in quote.split(FRAGMENT):
        start = text.find(normalise(fragment), at)
        if start < 0:
            return None
        at = start + len(normalise(fragment))
        found.append((start, at))
    return found


# --- the pages, as sets of anchors --------------------------------------------------------

INLINE_MARKUP = [
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),  # a link: its text
    (re.compile(r"<[^>]+>"), ""),  # an HTML tag
    (re.compile(r"[`*]"), ""),  # code and emphasis marks
]


def heading_id(text: str, taken: set[str]) -> str:
    """The id Python-Markdown's toc gives a heading: its own slugify on the heading's text,
    made unique on the page as toc does (``_1``, ``_2``)."""
    explicit = re.search(r"\{[^}]*#([\w-]+)[^}]*\}\s*$", text)
    if explicit:
        return explicit[1]
    for pattern, replacement in INLINE_MARKUP:
        text = pattern.sub(replacement, text)
    return unique(slugify(text.strip(), "-"), taken)


@cache
def anchors(page: str, docs: Path = DOCS) -> frozenset[str]:
    """Every id a link can point at on ``page`` (a path under ``docs``): each heading's,
    and each explicit ``id="..."`` (``<span id="...">``). Fenced code is not read."""
    path = docs / page
    if not path.is_file():
        return frozenset()
    found: set[str] = set()
    fence = None
    for line in path.read_text(encoding="utf-8").splitlines():
        marker = re.match(r"\s*(`{3,}|~{3,})", line)
        if fence:
            if marker and marker[1][0] == fence[0] and len(marker[1]) >= len(fence):
                fence = None
            continue
        if marker:
            fence = marker[1]
            continue
        if heading := re.match(r"\s*#{1,6}\s+(.+?)\s*#*\s*$", line):
            found.add(heading_id(heading[1], found))
        found.update(re.findall(r'\bid="([^"]+)"', line))
    return frozenset(found)


# --- the checks: each returns what it found wrong -----------------------------------------

def every_claim(claims: Claims):
    for title, section in claims.items():
        for claim in section:
            yield title, claim


def broken_links(claims: Claims) -> list[str]:
    wrong = []
    for title, claim in every_claim(claims):
        if not claim.evidence and claim.verdict != "not checkable":
            wrong.append(f"{title}: {claim.quote!r} has no evidence")
        if len(set(claim.evidence)) != len(claim.evidence):
            wrong.append(f"{title}: {claim.quote!r} links one section twice")
        for link in claim.evidence:
            page, hash_, anchor = link.partition("#")
            if not (DOCS / page).is_file():
                wrong.append(f"{title}: {link}: no page docs/{page}")
            elif not hash_ or anchor not in anchors(page):
                wrong.append(f"{title}: {link}: docs/{page} has no heading or id {anchor!r}")
            elif page not in PAGE_NAMES:
                wrong.append(f"{title}: {link}: PAGE_NAMES has no name for {page}")
    return wrong


def misquoted(claims: Claims) -> list[str]:
    sections = top_sections()
    if len(sections) != len(claims):
        return [f"the summary has {len(sections)} sections, the claims {len(claims)}: "
                f"{[h for h, _ in sections]} against {list(claims)}"]
    wrong = []
    for (heading, text), (title, section) in zip(sections, claims.items(), strict=True):
        for claim in section:
            if spans(claim.quote, text) is None:
                wrong.append(f"{title}: {claim.quote!r} is not in the summary's "
                             f"section {heading!r}, word for word")
    return wrong


def bad_verdicts(claims: Claims) -> list[str]:
    wrong = []
    for title, claim in every_claim(claims):
        try:
            kind = claim.kind
        except ValueError as error:
            wrong.append(f"{title}: {claim.quote!r}: {error}")
            continue
        if kind == "holds only when" and not claim.verdict.removeprefix(kind).strip():
            wrong.append(f"{title}: {claim.quote!r}: holds only when what?")
        if not claim.why.strip():
            wrong.append(f"{title}: {claim.quote!r} does not say why")
    return wrong


def repeated(claims: Claims) -> list[str]:
    """The same words quoted twice within a section, even as parts of two longer quotes."""
    sections = dict(zip(claims, (text for _, text in top_sections()), strict=False))
    wrong = []
    for title, section in claims.items():
        taken: list[tuple[int, int, str]] = []
        for claim in section:
            for start, end in spans(claim.quote, sections.get(title, "")) or []:
                for other_start, other_end, other in taken:
                    if start < other_end and other_start < end:
                        wrong.append(f"{title}: {claim.quote!r} repeats words of {other!r}")
                taken.append((start, end, claim.quote))
    return wrong


def uncovered(claims: Claims) -> list[str]:
    """The summary's sections (``##`` and ``###``) with no claim quoted from them (a
    ``###`` section's claims are listed under its ``##`` section)."""
    wrong, titles, title = [], iter(claims), None
    for level, heading, text in summary_sections():
        if level == 2:
            title = next(titles, None)
        quoted = [normalise(fragment) for claim in claims.get(title or "", [])
                  for fragment in claim.quote.split(FRAGMENT)]
        if not any(fragment in text for fragment in quoted):
            wrong.append(heading)
    return wrong


# --- the data, checked ----------------------------------------------------------------------

def test_the_summary_is_where_the_quotes_come_from():
    headings = [heading for _, heading, _ in summary_sections()]
    assert headings[0] == "Overview" and len(top_sections()) == 12, headings


def test_the_copy_beside_this_test_is_the_summary_word_for_word():
    if not ORIGINAL.is_file():
        pytest.skip(f"the original is not in this checkout ({ORIGINAL})")

    def text(path: Path) -> str:
        return re.sub(r"<!--.*?-->\n", "", path.read_text(encoding="utf-8"), flags=re.S)
    assert text(SUMMARY) == text(ORIGINAL)


def test_every_evidence_link_leads_to_a_section_that_exists():
    assert broken_links(CLAIMS) == []


def test_every_quote_is_the_summarys_own_words_in_its_own_section():
    assert misquoted(CLAIMS) == []


def test_every_verdict_is_one_of_the_four_kinds_and_says_why():
    assert bad_verdicts(CLAIMS) == []


def test_no_claim_is_listed_twice():
    assert repeated(CLAIMS) == []


def test_every_section_of_the_summary_has_its_claims():
    assert uncovered(CLAIMS) == []


def test_every_kind_of_verdict_is_used_and_counted():
    assert set(counts(CLAIMS)) == {"holds", "holds only when", "wrong", "not checkable"}
    assert sum(counts(CLAIMS).values()) == sum(len(s) for s in CLAIMS.values())


def test_the_page_shows_the_claims_as_rendered_from_the_data():
    shown = page_table(PAGE.read_text(encoding="utf-8"))
    assert shown == markdown_table(), (
        "the tables on docs/appendix/common-claims.md are not CLAIMS rendered: "
        "run python -m snippets.appendix.common_claims --write")


def test_the_page_has_a_row_per_claim_and_a_section_per_summary_section():
    shown = page_table(PAGE.read_text(encoding="utf-8"))
    rows = [line for line in shown.splitlines() if line.startswith("| “")]
    assert len(rows) == sum(len(s) for s in CLAIMS.values())
    assert re.findall(r"^## (.+)$", shown, re.M) == list(CLAIMS)


# --- the checks can fail: each is fed a broken claim -----------------------------------------

def with_claim(claim: Claim, section: str = "Cache-aside") -> Claims:
    return {title: [*claims, claim] if title == section else claims
            for title, claims in CLAIMS.items()}


def new_problems(check, claim: Claim) -> list[str]:
    """What ``check`` finds once ``claim`` is added, and not without it."""
    before = check(CLAIMS)
    return [problem for problem in check(with_claim(claim)) if problem not in before]


@pytest.mark.parametrize("link, problem", [
    ("concurrency/reader-race.md#the-race-step-by-stepp", "has no heading or id"),
    ("concurrency/reader-races.md#the-race-step-by-step", "no page"),
    ("concurrency/reader-race.md", "has no heading or id"),
])
def test_a_broken_link_is_found(link, problem):
    found = broken_links({"Cache-aside": [Claim("Pros: simple", "holds", "why", [link])]})
    assert len(found) == 1 and problem in found[0], found


def test_a_misquote_is_found_and_so_is_a_quote_from_another_section():
    assert len(new_problems(misquoted, Claim("Pros: simple and safe", "holds", "why"))) == 1
    # The words are the summary's, but from write-through, not cache-aside.
    assert len(new_problems(misquoted, Claim("no stale cache", "wrong", "why"))) == 1
    # Parts of a quote must come in the summary's order.
    assert len(new_problems(misquoted, Claim("flexible … Pros: simple", "holds", "why"))) == 1


@pytest.mark.parametrize("verdict", ["mostly", "holds only when ", "Holds", "right"])
def test_a_verdict_of_another_kind_is_found(verdict):
    assert len(new_problems(bad_verdicts, Claim("x", verdict, "why"))) == 1


def test_a_claim_listed_twice_is_found_even_inside_a_longer_quote():
    assert len(new_problems(repeated, Claim("Pros: simple", "holds", "why"))) == 1
    assert len(new_problems(repeated, Claim("simple, safe", "holds", "why"))) == 2


def test_a_section_without_claims_is_found():
    assert uncovered({**CLAIMS, "The key insight": []}) == ["8. Key Insight"]
    subsection = [c for c in CLAIMS["Update-on-write vs invalidate-on-write"]
                  if "Update-on-write" not in c.quote and "Request A" not in c.quote
                  and "update-on-write is unsafe" not in c.quote]
    assert uncovered({**CLAIMS, "Update-on-write vs invalidate-on-write": subsection}) == [
        "6.1 Update-on-write (RISKY under concurrency)"]


def test_anchors_are_computed_as_the_toc_computes_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n"
        "## The common advice's order: cache first, then the database fails\n"
        "### The flusher dies after the commit, before `XACK`\n"
        "## Each claim, checked\n## Each claim, checked\n"
        "## Named {#named}\n"
        "- one <span id=\"model-one-redis\"></span>Redis\n"
        "```python\n# not a heading\n```\n",
        encoding="utf-8")
    assert anchors("page.md", tmp_path) == {
        "title", "the-common-advices-order-cache-first-then-the-database-fails",
        "the-flusher-dies-after-the-commit-before-xack", "each-claim-checked",
        "each-claim-checked_1", "named", "model-one-redis"}
