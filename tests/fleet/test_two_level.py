"""Two-level caches: the L1's fill and invalidation, the pub/sub listener (on fakeredis
and a real Redis), client tracking (a real Redis only), the races and the counts the
page states."""

from __future__ import annotations

import pytest
import redis

from snippets.backends import Database, FakeClock
from snippets.explorer import mermaid_problems
from snippets.fleet import two_level
from snippets.fleet.two_level import (
    CHANNEL,
    L1,
    SHARDED_CHANNEL,
    Listener,
    ShardedListener,
    Tracked,
    get_user,
    get_user_unguarded,
    update_user,
    update_user_sharded,
    workload,
)
from tests.conftest import real_redis_url

STALE = "stale: A reads 'old', the DB says 'new'"


# --- the L1 ----------------------------------------------------------------------------


def test_a_fill_replaces_only_its_own_placeholder():
    l1 = L1()
    first = l1.reserve("user:1")
    assert l1.get("user:1") is None  # a placeholder is a miss
    l1.invalidate("user:1")
    assert not l1.fill("user:1", first, "old")  # the invalidation came: dropped
    second, third = l1.reserve("user:1"), l1.reserve("user:1")
    assert not l1.fill("user:1", second, "x")  # another fill took the place
    assert l1.fill("user:1", third, "new") and l1.get("user:1") == "new"
    fourth = l1.reserve("user:2")
    assert l1.fill("user:2", fourth, None) and len(l1) == 1  # nothing to cache


def test_the_l1_expires_on_its_clock_and_refuses_bad_sizes():
    clock = FakeClock()
    l1 = L1(ttl=2.0, timer=clock)
    l1.put("user:1", "old")
    clock.advance(1.999)
    assert l1.get("user:1") == "old"
    clock.advance(0.001)
    assert l1.get("user:1") is None
    with pytest.raises(ValueError, match="maxsize must be a positive integer, got 0"):
        L1(maxsize=0)
    with pytest.raises(ValueError, match="ttl must be a number > 0, got -1"):
        L1(ttl=-1)


# --- pub/sub, on both backends ---------------------------------------------------------


def test_a_write_reaches_every_listening_l1(cache, ada: Database):
    l1s = [L1(), L1()]
    listeners = [Listener(cache, l1) for l1 in l1s]
    try:
        for l1 in l1s:
            assert get_user(l1, cache, ada, 1) == "Ada"
        assert update_user(cache, ada, 1, "Grace") == 2  # both subscribers reached
        for listener, l1 in zip(listeners, l1s, strict=True):
            message = listener.poll(timeout=2.0)
            assert message is not None and message["data"] == "user:1"
            assert l1.get("user:1") is None
        assert get_user(l1s[0], cache, ada, 1) == "Grace"
    finally:
        for listener in listeners:
            listener.close()


def test_a_reconnect_flushes_the_l1_only_when_asked(cache, ada: Database):
    for flush, left in ((True, None), (False, "Ada")):
        l1 = L1()
        listener = Listener(cache, l1, flush_on_connect=flush)
        try:
            get_user(l1, cache, ada, 1)
            listener.pubsub.connection.disconnect()
            cache.publish(CHANNEL, "user:9")  # nobody listens: lost
            for _ in range(3):  # the next polls reconnect and re-subscribe
                listener.poll(timeout=0.2)
            assert l1.get("user:1") == left
            assert cache.publish(CHANNEL, "user:1") == 1  # subscribed again
        finally:
            listener.close()
            cache.delete("user:1")


def test_a_sharded_write_reaches_a_sharded_listener(cache, ada: Database):
    """SPUBLISH and SSUBSCRIBE on one Redis (fakeredis, or a real one): one shard. On a
    Redis Cluster: tests/concurrency/test_production_pattern_on_cluster.py."""
    l1 = L1()
    listener = ShardedListener(cache, l1)
    try:
        assert get_user(l1, cache, ada, 1) == "Ada"
        assert update_user_sharded(cache, ada, 1, "Grace") == 1
        message = listener.poll(timeout=2.0)
        assert message is not None and message["type"] == "smessage"
        assert l1.get("user:1") is None
        assert get_user(l1, cache, ada, 1) == "Grace"
        assert cache.publish(SHARDED_CHANNEL, "user:1") == 0  # not the same channel
    finally:
        listener.close()


def test_a_sharded_listener_flushes_on_reconnect(cache, ada: Database):
    l1 = L1()
    listener = ShardedListener(cache, l1)
    try:
        get_user(l1, cache, ada, 1)
        listener.pubsub.connection.disconnect()
        update_user_sharded(cache, ada, 1, "Grace")  # nobody listens: lost
        for _ in range(3):  # the next polls reconnect and subscribe again
            listener.poll(timeout=0.2)
        assert l1.get("user:1") is None
        assert cache.spublish(SHARDED_CHANNEL, "user:1") == 1  # subscribed again
    finally:
        listener.close()


# --- the races -------------------------------------------------------------------------


def cell(scenario, read, flush):
    result = two_level.explore_l1(scenario, read, flush)
    return len(result.bad), result.total


def test_every_unguarded_bad_schedule_fills_after_the_message():
    result = two_level.explore_l1("fill vs message", get_user_unguarded, False)
    assert len(result.bad) == 3
    for schedule in result.bad:  # the read's last step (the L1 put) is after M
        names = list(schedule)
        assert names.index("M") < len(names) - 1 - names[::-1].index("A")


def test_the_lost_messages_are_those_published_while_the_connection_was_down():
    result = two_level.explore_l1("connection drops", get_user, False)
    assert len(result.bad) == 4
    for schedule in result.bad:  # neither delivered before the drop, nor published
        names = list(schedule)  # after a reconnect
        x, m, published = names.index("X"), names.index("M"), 4 - names[::-1].index("W")
        assert not published < m < x and not x < m < published


def test_a_fill_that_read_redis_before_the_drop_lands_after_the_flush():
    """The flush empties the L1, and the fill that read "old" before the write lands
    after it; with the placeholder, the flush removed the placeholder too."""
    unguarded = two_level.replayed("both", get_user_unguarded, True,
                                   "A A A A W W W A X M A")
    guarded = two_level.replayed("both", get_user, True, "A A A A A W W W A X M A")
    assert unguarded.verdict == STALE and unguarded.returns["A"] == "old"
    assert guarded.verdict is None and guarded.returns["A"] == "old"


@pytest.mark.parametrize(("race", "verdict"), [
    (two_level.late_fill, STALE),
    (two_level.refused_fill, None),
    (two_level.lost_message, STALE),
])
def test_the_drawn_replays_end_as_the_page_says(race, verdict):
    run = race()
    assert run.verdict == verdict
    assert mermaid_problems(two_level.draw(run)) == []


def test_unknown_scenarios_and_worlds_are_clear_errors(db):
    with pytest.raises(LookupError, match="no scenario named 'x'; scenarios: fill vs"):
        two_level.actors("x", get_user)
    with pytest.raises(TypeError, match="a Fleet"):
        two_level.fleet(db)
    with pytest.raises(RuntimeError, match="not subscribed"):
        two_level.Fleet().listener  # noqa: B018


# --- counts ----------------------------------------------------------------------------


def test_the_l1_saves_redis_commands_but_not_database_reads():
    small = {"reads": 400, "keys": 20, "write_every": 25}
    alone = workload(False, False, **small)
    listening = workload(True, True, **small)
    ttl_only = workload(True, False, **small)
    assert listening.redis < alone.redis / 2 and listening.db == alone.db
    assert alone.stale == listening.stale == 0 < ttl_only.stale
    with pytest.raises(ValueError, match="reads must be a positive integer, got 0"):
        workload(True, True, reads=0)


def test_the_stale_window_ends_a_ttl_after_the_fill_not_the_write():
    seen = dict(two_level.stale_window(3.0, 1.0, 2.0, [2.0, 3.999, 4.0]))
    assert seen == {2.0: "old", 3.999: "old", 4.0: "new"}


# --- client tracking: a real Redis only ------------------------------------------------


@pytest.fixture
def url() -> str:
    """fakeredis has no CLIENT TRACKING: these run on the real Redis at REDIS_URL."""
    return real_redis_url()


@pytest.fixture
def other(url):
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_bcast_invalidates_every_key_under_the_prefix(url, other, ada):
    tracked = Tracked(url, L1())
    try:
        assert tracked.read(1, ada) == "Ada"
        tracked.poll(timeout=0.5)  # our own fill's invalidation
        assert tracked.read(1, ada) == "Ada" and tracked.l1.get("user:1") == "Ada"
        other.set("post:1", "x")  # outside the prefix: no news
        assert tracked.poll(timeout=0.3) == 0
        other.delete("user:1")  # any client's change, no PUBLISH
        assert tracked.poll(timeout=2.0) >= 1 and tracked.l1.get("user:1") is None
    finally:
        tracked.close()


def test_optin_tracks_only_what_was_read_after_caching_yes(url, other, ada):
    tracked = Tracked(url, L1(), prefixes=(), optin=True)
    try:
        tracked.data.get("user:2")  # not opted in: not tracked
        other.set("user:2", "x")
        assert tracked.poll(timeout=0.3) == 0
        assert tracked.read(1, ada) == "Ada"  # CLIENT CACHING YES, then GET user:1
        tracked.poll(timeout=0.5)  # our own fill's invalidation
        assert tracked.read(1, ada) == "Ada" and tracked.l1.get("user:1") == "Ada"
        other.delete("user:1")
        assert tracked.poll(timeout=2.0) == 1 and tracked.l1.get("user:1") is None
    finally:
        tracked.close()


def test_a_lost_invalidation_connection_flushes_the_l1(url, other, ada):
    tracked = Tracked(url, L1())
    try:
        tracked.read(1, ada)
        tracked.poll(timeout=0.5)
        tracked.read(1, ada)
        assert tracked.l1.get("user:1") == "Ada"
        [mine] = [c["id"] for c in other.client_list()
                  if "__redis__:invalidate" in str(c) or c.get("sub") == "1"]
        other.execute_command("CLIENT", "KILL", "ID", mine)
        other.delete("user:1")  # its invalidation has nowhere to go
        tracked.poll(timeout=1.0)
        assert tracked.l1.get("user:1") is None  # flushed on reconnect
        assert tracked.read(1, ada) == "Ada"
        other.delete("user:1")
        assert tracked.poll(timeout=2.0) >= 1  # tracking redirected to the new one
    finally:
        tracked.close()


def test_tracked_needs_one_mode():
    with pytest.raises(ValueError, match="prefixes .BCAST. or optin=True"):
        Tracked("redis://127.0.0.1:1/0", L1(), prefixes=("user:",), optin=True)
