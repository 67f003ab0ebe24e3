"""A consistency checker: what it counts as consistent, late, sampled and traced; and
its grades of the comparison page's strategies under load in virtual time. The graded
runs are checked on fakeredis and on a real Redis (REDIS_URL): the same seeded run must
give the same report on both."""

from __future__ import annotations

import math

import pytest

from snippets.fleet.consistency_checker import (
    BENCH,
    ConsistencyChecker,
    Load,
    grade,
    percent,
    print_grades,
    run_graded,
)


def written_at_one_second(**options) -> ConsistencyChecker:
    checker = ConsistencyChecker(**options)
    checker.committed("user:1", "v1", at=0.0)
    checker.committed("user:1", "v2", at=1.0)
    return checker


# --- the checker ---------------------------------------------------------------------


def test_a_read_that_overlaps_the_write_may_return_either_value():
    checker = written_at_one_second()
    assert checker.observed("user:1", "v1", began=0.9, ended=1.1) == 0.0
    assert checker.observed("user:1", "v2", began=0.9, ended=1.1) == 0.0


def test_a_read_after_the_write_is_late_by_how_long_its_value_had_been_replaced():
    checker = written_at_one_second()
    assert checker.observed("user:1", "v1", began=1.25, ended=1.5) == 0.25
    assert checker.observed("user:1", "v2", began=1.25, ended=1.5) == 0.0
    report = checker.report()
    assert report.fraction() == 0.5
    assert report.fraction(within=0.25) == 1.0  # late by 0.25 s: within 0.25 s


def test_a_value_the_database_never_held_is_late_forever():
    checker = written_at_one_second()
    assert checker.observed("user:1", "v3", began=2.0, ended=2.0) == math.inf
    assert checker.report().fraction(within=10**9) == 0.0


def test_nines_are_minus_log10_of_the_stale_share():
    checker = written_at_one_second()
    for n in range(1000):
        served = "v1" if n == 0 else "v2"  # one stale read in a thousand
        checker.observed("user:1", served, began=2.0, ended=2.0)
    report = checker.report()
    assert report.nines() == pytest.approx(3.0)
    assert percent(report) == "99.90 %"
    assert report.nines(within=1.0) == math.inf  # late by 1 s exactly
    assert percent(report, within=1.0) == "100 %"


def test_only_reads_in_the_window_after_a_write_are_traced():
    checker = written_at_one_second(trace_window=0.01)
    checker.observed("user:1", "v1", began=0.995, ended=0.996)  # before the write
    checker.observed("user:1", "v1", began=1.005, ended=1.006)  # in the window
    checker.observed("user:1", "v2", began=1.02, ended=1.03)  # after it
    [trace] = checker.report().traces
    assert (trace.began, trace.served, trace.in_db) == (1.005, "v1", "v2")


def test_the_first_value_of_a_key_opens_no_trace_window():
    checker = written_at_one_second(trace_window=0.01)
    checker.observed("user:1", "v1", began=0.001, ended=0.002)
    assert checker.report().traces == ()


def test_a_sample_checks_some_reads_and_the_same_ones_for_the_same_seed():
    def checked(seed: int) -> list[float | None]:
        checker = written_at_one_second(sample=0.5, seed=seed)
        return [checker.observed("user:1", "v2", began=2.0, ended=2.0)
                for _ in range(200)]

    first = checked(seed=7)
    assert 50 < sum(got is not None for got in first) < 150
    assert checked(seed=7) == first


@pytest.mark.parametrize(("options", "error"), [
    ({"sample": 0}, ValueError),
    ({"sample": 1.5}, ValueError),
    ({"trace_window": 0}, ValueError),
])
def test_the_checker_refuses_bad_settings(options, error):
    with pytest.raises(error):
        ConsistencyChecker(**options)


def test_the_checker_refuses_reads_of_unknown_keys_and_commits_out_of_order():
    checker = written_at_one_second()
    with pytest.raises(LookupError, match="committed"):
        checker.observed("user:2", "x", began=0.0, ended=0.0)
    with pytest.raises(ValueError, match="before it begins"):
        checker.observed("user:1", "v1", began=1.0, ended=0.5)
    with pytest.raises(ValueError, match="in order"):
        checker.committed("user:1", "v3", at=0.5)


def test_no_checked_read_has_no_share():
    with pytest.raises(ValueError, match="no read"):
        ConsistencyChecker().report().fraction()


# --- the strategies, graded ------------------------------------------------------------


def test_every_read_of_the_load_is_checked_and_every_write_reaches_the_checker():
    report = grade("invalidate-on-write")
    assert report.checked == Load().reads == 1000
    assert report.writes > 0


@pytest.mark.parametrize("strategy", ["update-on-write", "invalidate-on-write",
                                      "delete-first", "leases", "versioned-set",
                                      "double-delete"])
def test_no_strategy_is_consistent_at_once(strategy):
    """Between the commit and the write's DEL or SET, the cache serves the old value."""
    assert grade(strategy).fraction() < 1


@pytest.mark.parametrize("strategy", ["leases", "versioned-set", "update-on-write"])
def test_these_strategies_are_consistent_within_10_ms_at_this_load(strategy):
    report = grade(strategy)
    assert report.fraction(within=0.01) == 1
    assert 0 < max(report.late) < 0.004  # the write's own window: under 4 ms


@pytest.mark.parametrize("strategy", ["invalidate-on-write", "delete-first"])
def test_these_leave_an_old_value_that_stays_past_10_ms(strategy):
    report = grade(strategy)
    assert report.fraction(within=0.01) < 1
    assert max(report.late) > 0.04  # until the key's next write


def test_double_delete_writes_far_less_because_its_writer_waits_for_the_second_delete():
    assert grade("double-delete").writes * 3 < grade("invalidate-on-write").writes


def test_the_trace_window_keeps_every_read_late_by_less_than_the_window_and_few_reads():
    report = grade("invalidate-on-write")
    traced_stale = sum(trace.late > 0 for trace in report.traces)
    assert traced_stale == sum(late <= 0.01 for late in report.late) > 0
    assert len(report.traces) < report.checked / 5


def test_a_seeded_run_is_the_same_on_fakeredis_and_on_a_real_redis(cache):
    for strategy in ("invalidate-on-write", "leases"):
        assert run_graded(strategy, Load(), client=cache) == grade(strategy)


def test_unknown_strategies_are_refused():
    with pytest.raises(LookupError, match="strategies"):
        run_graded("write-around", Load(readers=1, seconds=0.01))


def test_a_load_refuses_nonsense():
    with pytest.raises(ValueError, match="readers"):
        Load(readers=0)
    with pytest.raises(ValueError, match="seconds"):
        Load(seconds=-1.0)


def test_the_bench_grades_a_hundred_thousand_reads_and_prints_one_row_per_strategy(
        printed):
    assert BENCH.reads == 10**5
    lines = printed(print_grades, Load(readers=2, seconds=0.05), ("leases",))
    assert lines[0].split()[:3] == ["strategy", "reads", "writes"]
    assert lines[1].split()[:2] == ["leases", "10"]
