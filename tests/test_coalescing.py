"""Request coalescing: each claim of docs/scaling/coalescing.md."""

from __future__ import annotations

import fakeredis
import pytest

from snippets import coalescing
from snippets.backends import make_db
from snippets.coalescing import LoadFailed, another_process, get_user_coalesced, miss_together
from snippets.mutex import Crash, CrashingDatabase, Process
from snippets.stampede import Load, SimCache, SimDatabase, Simulation, fakeredis_on, simulate


@pytest.fixture
def ada(db):
    db.add_user(1, "Ada")
    return db


@pytest.mark.parametrize("n", [1, 3, 8])
def test_processes_missing_at_once_cause_one_db_read(cache, ada, n):
    assert miss_together(cache, ada, n) == ["Ada"] * n
    assert ada.reads == 1
    assert cache.get("user:1") == "Ada" and cache.exists("loading:user:1") == 0


def test_another_process_shares_the_server_not_the_connection(cache):
    other = another_process(cache)
    cache.set("k", "v")
    assert other.get("k") == "v" and other is not cache
    other.close()


def test_a_hit_needs_no_lock_and_no_channel(cache, ada):
    cache.set("user:1", "Ada (cached)")
    assert get_user_coalesced(cache, ada, 1) == "Ada (cached)"
    assert ada.reads == 0 and cache.keys("loading:*") == []


def run_processes(n, leader_db=None, leader_dies=False, lock_ms=2000):
    """n simulated processes miss user:1 at t=0; the first becomes the leader.

    Returns (outcomes, db) where outcomes[i] is (value or exception name, finish time).
    """
    sim, server = Simulation(), fakeredis.FakeServer()
    db = make_db()
    db.add_user(1, "Ada")
    timed = SimDatabase(sim, db, latency=0.05, connections=10)
    outcomes = {}
    subscribers = []
    with fakeredis_on(sim.clock):
        for i in range(n):
            client = SimCache(sim, fakeredis.FakeRedis(server=server, decode_responses=True),
                              0.001, subscribers)
            cache, this_db = client, timed
            if i == 0 and leader_dies:
                cache = Process(client)
                this_db = CrashingDatabase(cache)
            elif i == 0 and leader_db is not None:
                this_db = leader_db(sim)

            def reader(i=i, cache=cache, this_db=this_db):
                try:
                    value = get_user_coalesced(cache, this_db, 1, lock_ms=lock_ms, clock=sim.clock)
                except (Crash, LoadFailed, RuntimeError) as error:
                    value = type(error).__name__
                outcomes[i] = (value, round(sim.clock(), 6))

            sim.spawn(reader, at=0.0)
        sim.run()
    return [outcomes[i] for i in range(n)], db


def test_followers_are_told_without_polling():
    outcomes, db = run_processes(5)
    assert db.reads == 1
    assert [value for value, _ in outcomes] == ["Ada"] * 5
    leader_done = outcomes[0][1]
    # GET, SUBSCRIBE, SET NX, GET, SELECT (50 ms), SET, EVAL (release), PUBLISH
    assert leader_done == pytest.approx(0.057)
    # a follower hears the PUBLISH half a round trip after it is sent (at 0.056)
    assert all(done == pytest.approx(0.0565) for _, done in outcomes[1:])


def test_followers_share_the_leaders_error():
    class Broken:
        def __init__(self, sim):
            self.sim = sim

        def query(self, sql, params=()):
            self.sim.sleep(0.05)
            raise RuntimeError("DB down")

    outcomes, db = run_processes(4, leader_db=Broken)
    assert [value for value, _ in outcomes] == ["RuntimeError"] + ["LoadFailed"] * 3
    assert db.reads == 0  # nobody retried on their own


def test_a_dead_leader_costs_its_lock_time_then_a_follower_takes_over():
    outcomes, db = run_processes(4, leader_dies=True, lock_ms=500)
    assert outcomes[0][0] == "Crash"
    assert [value for value, _ in outcomes[1:]] == ["Ada"] * 3
    assert db.reads == 1  # the dead leader's query never ran; the new leader's did
    assert all(done >= 0.5 for _, done in outcomes[1:])  # they waited for the lock to expire


def test_one_db_read_per_expiry_under_load():
    for n in (10, 100):
        assert simulate("coalescing", Load(readers=n)).db_reads == 1
    assert simulate("coalescing", Load(readers=100, processes=4)).db_reads == 1


@pytest.mark.parametrize("kw, message", [
    ({"ttl": 0}, "ttl must be a positive"),
    ({"lock_ms": -5}, "lock_ms must be a positive"),
])
def test_bad_options(cache, ada, kw, message):
    with pytest.raises(ValueError, match=message):
        get_user_coalesced(cache, ada, 1, **kw)
    assert ada.reads == 0 and cache.keys("*") == []


@pytest.mark.parametrize("bad", [0, -2, "3", True])
def test_bad_process_count(cache, ada, bad):
    with pytest.raises(ValueError, match="n must be a whole number of processes"):
        miss_together(cache, ada, bad)


def test_narration(capsys, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    coalescing.main()
    out = capsys.readouterr().out
    assert "['Ada', 'Ada', 'Ada']" in out and "DB reads: 1 " in out
