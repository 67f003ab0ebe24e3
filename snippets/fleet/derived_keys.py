"""Derived and aggregate keys: a user's orders (by page), their count, the global top
ten. One order write changes all of them; which keys must it invalidate, and how?

- Listed keys: the write names every derived key and deletes them. It cannot name the
  keys it does not know (page 2, a filter, a sort order someone added last week).
- Tag sets: a fill adds its key to a Redis set per tag (``SADD``); the write reads the
  set (``SMEMBERS``) and deletes its members. The fill's ``SADD`` can come too late.
- Generation keys: the write bumps ``gen:user:1`` (``INCR``); derived keys embed the
  generation, so the old ones are never read again and expire by their TTL.
- The race of a list fill against an order write, replayed in the explorer, with and
  without each fix; the Redis commands and keys each scheme costs, counted.

Run it: ``python -m snippets.fleet.derived_keys``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from snippets.backends import (
    DEFAULT_TTL,
    Cache,
    Database,
    check_int,
    make_db,
    make_fake_cache,
)
from snippets.concurrency.fixes import no_wait
from snippets.explorer import Exploration, Run, explore, replay
from snippets.lease import lease_key, read_through

# --8<-- [end:imports]


# --8<-- [start:views]
ORDERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id      INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    total   INTEGER NOT NULL  -- in cents
)
"""
PAGE_SIZE = 5  # orders per page of "a user's orders", newest first


def create_orders(db: Database) -> None:
    db.execute(ORDERS_SCHEMA)


@dataclass(frozen=True)
class Order:
    id: int
    user_id: int
    total: int


@dataclass(frozen=True)
class View:
    """One derived value: its key, the tag it depends on, and the query behind it."""

    key: str
    tag: str  # "user:1": changes with user 1's orders; "orders": with any order
    sql: str
    params: tuple[int, ...] = ()


def orders_page(user_id: int, page: int = 1) -> View:
    check_int("page", page)
    return View(f"user:{user_id}:orders:p{page}", f"user:{user_id}",
                "SELECT id FROM orders WHERE user_id = ? ORDER BY id DESC "
                "LIMIT ? OFFSET ?", (user_id, PAGE_SIZE, (page - 1) * PAGE_SIZE))


def order_count(user_id: int) -> View:
    return View(f"user:{user_id}:orders:count", f"user:{user_id}",
                "SELECT COUNT(*) FROM orders WHERE user_id = ?", (user_id,))


def top_orders() -> View:
    return View("orders:top10", "orders",
                "SELECT id FROM orders ORDER BY total DESC, id LIMIT 10")


def load(db: Database, view: View) -> str:
    """The value as the cache holds it: ids (or the count) joined by commas."""
    return ",".join(str(row[0]) for row in db.query(view.sql, view.params))


def keys_for(order: Order) -> list[str]:
    """Every key a write of ``order`` changes, that the writer can name."""
    return [f"order:{order.id}",  # (1)!
            orders_page(order.user_id).key, order_count(order.user_id).key,
            top_orders().key]


def tags_for(order: Order) -> list[str]:
    return [f"user:{order.user_id}", "orders"]


def insert_order(db: Database, order: Order) -> None:
    db.execute("INSERT INTO orders (id, user_id, total) VALUES (?, ?, ?)",
               (order.id, order.user_id, order.total))
# --8<-- [end:views]


# --8<-- [start:listed]
def read(cache: Cache, db: Database, view: View, ttl: int = DEFAULT_TTL) -> str:
    """Cache-aside, for any view."""
    cached = cache.get(view.key)
    if cached is not None:
        return str(cached)
    value = load(db, view)
    cache.set(view.key, value, ex=ttl)
    return value


def place_order(cache: Cache, db: Database, order: Order) -> None:
    """INSERT, then delete every key the write can name, in one command."""
    insert_order(db, order)
    cache.delete(*keys_for(order))
# --8<-- [end:listed]


# --8<-- [start:leased]
def read_leased(cache: Cache, db: Database, view: View, ttl: int = DEFAULT_TTL, *,
                sleep: Callable[[float], object] = time.sleep) -> str | None:
    """The kit's lease read: one reader per key loads, and its fill is refused if a
    write deleted the lease since."""
    return read_through(cache, view.key, lambda: load(db, view), ttl, sleep=sleep)


def place_order_leased(cache: Cache, db: Database, order: Order) -> None:
    """INSERT, then delete every key the write can name, and its lease."""
    insert_order(db, order)
    keys = keys_for(order)
    cache.delete(*keys, *map(lease_key, keys))
# --8<-- [end:leased]


# --8<-- [start:tags]
def tag_key(tag: str) -> str:
    return f"tag:{tag}"


def read_tagged(cache: Cache, db: Database, view: View,
                ttl: int = DEFAULT_TTL) -> str:
    """Cache-aside, and the filled key is added to its tag's set."""
    cached = cache.get(view.key)
    if cached is not None:
        return str(cached)
    value = load(db, view)
    cache.set(view.key, value, ex=ttl)
    cache.sadd(tag_key(view.tag), view.key)  # (1)!
    return value


def place_order_tagged(cache: Cache, db: Database, order: Order) -> None:
    """INSERT, then delete the order's key and every key its tags hold."""
    insert_order(db, order)
    members = [key for tag in tags_for(order) for key in cache.smembers(tag_key(tag))]
    cache.delete(f"order:{order.id}", *members)  # (2)!
# --8<-- [end:tags]


# --8<-- [start:tags-fixed]
def read_tagged_leased(cache: Cache, db: Database, view: View,
                       ttl: int = DEFAULT_TTL, *,
                       sleep: Callable[[float], object] = time.sleep) -> str | None:
    """The lease read; its load adds the key to the tag's set BEFORE the query."""
    def register_then_load() -> str:
        cache.sadd(tag_key(view.tag), view.key)  # (1)!
        return load(db, view)
    return read_through(cache, view.key, register_then_load, ttl, sleep=sleep)


def place_order_tagged_leased(cache: Cache, db: Database, order: Order) -> None:
    """INSERT, then delete every key the tags hold, and their leases."""
    insert_order(db, order)
    members = [str(key) for tag in tags_for(order)
               for key in cache.smembers(tag_key(tag))]
    keys = [f"order:{order.id}", *members]
    cache.delete(*keys, *map(lease_key, keys))
# --8<-- [end:tags-fixed]


# --8<-- [start:generations]
def gen_key(tag: str) -> str:
    return f"gen:{tag}"


def read_generation(cache: Cache, db: Database, view: View,
                    ttl: int = DEFAULT_TTL) -> str:
    """Cache-aside under the key of the tag's current generation."""
    generation = str(cache.get(gen_key(view.tag)) or 0)  # (1)!
    key = f"{view.key}:g{generation}"
    cached = cache.get(key)
    if cached is not None:
        return str(cached)
    value = load(db, view)
    cache.set(key, value, ex=ttl)  # (2)!
    return value


def place_order_generation(cache: Cache, db: Database, order: Order) -> None:
    """INSERT, delete the order's own key, and move each tag to a new generation."""
    insert_order(db, order)
    cache.delete(f"order:{order.id}")
    for tag in tags_for(order):
        cache.incr(gen_key(tag))  # (3)!
# --8<-- [end:generations]


@dataclass(frozen=True)
class Scheme:
    read: Callable[..., str | None]  # (cache, db, view)
    write: Callable[[Cache, Database, Order], None]
    leased: bool = False


SCHEMES: dict[str, Scheme] = {
    "listed keys": Scheme(read, place_order),
    "listed keys + lease": Scheme(read_leased, place_order_leased, leased=True),
    "tag sets": Scheme(read_tagged, place_order_tagged),
    "tag sets, SADD first + lease": Scheme(read_tagged_leased,
                                           place_order_tagged_leased, leased=True),
    "generation keys": Scheme(read_generation, place_order_generation),
}


def scheme(name: str) -> Scheme:
    if name not in SCHEMES:
        raise LookupError(f"no scheme named {name!r}; schemes: {', '.join(SCHEMES)}")
    return SCHEMES[name]


def read_now(name: str) -> Callable[[Cache, Database, View], str | None]:
    """The scheme's read, with the lease's wait replaced by no wait (the explorer
    tries every delay)."""
    chosen = scheme(name)
    if chosen.leased:
        return lambda cache, db, view: chosen.read(cache, db, view, sleep=no_wait)
    return chosen.read


# --- The race of a list fill against an order write, in the explorer -----------------
# --8<-- [start:race]
def one_order(cache: Cache, db: Database) -> None:
    """Before the race: user 1 has one order (id 1)."""
    create_orders(db)
    insert_order(db, Order(1, 1, 3000))


def fill_and_write(name: str) -> dict[str, Callable[[Cache, Database], Any]]:
    """L reads user 1's first page of orders; W places order 2 for user 1."""
    chosen, list_read = scheme(name), read_now(name)
    return {"W": lambda cache, db: chosen.write(cache, db, Order(2, 1, 4500)),
            "L": lambda cache, db: list_read(cache, db, orders_page(1))}


def list_is_current(name: str) -> Callable[[Cache, Database, object], str | None]:
    """The invariant: once both are done, the next read of the list returns what the
    database holds."""
    list_read = read_now(name)

    def check(cache: Cache, db: Database, returns: object) -> str | None:
        in_db, seen = load(db, orders_page(1)), list_read(cache, db, orders_page(1))
        return None if seen == in_db else \
            f"stale: the list reads {seen!r}, the DB says {in_db!r}"
    return check


def explore_race(name: str) -> Exploration:
    """Every interleaving of the list fill and the order write."""
    return explore(fill_and_write(name), one_order, list_is_current(name),
                   reduce=False)
# --8<-- [end:race]


def print_races() -> None:
    for name in SCHEMES:
        result = explore_race(name)
        print(f"{name:<30} {len(result.bad)} bad of {result.total}")


LABELS = {"W": "Order write", "L": "List fill"}


def _replay(name: str, schedule: str) -> Run:
    return replay(fill_and_write(name), one_order, schedule,
                  check=list_is_current(name))


def stale_list() -> Run:
    """The fill reads the list, the write commits and deletes, the fill's SET lands
    after the DEL."""
    return _replay("listed keys", "L L W W L")


def stale_list_diagram() -> str:
    return stale_list().mermaid(LABELS)


def late_sadd() -> Run:
    """The fill sets the list before the write, but adds it to the tag after the
    write read the tag: the write did not know the key."""
    return _replay("tag sets", "L L L W W W W L")


def late_sadd_diagram() -> str:
    return late_sadd().mermaid(LABELS)


def old_generation() -> Run:
    """The order of the first race, under generation keys: the late fill writes the
    key of generation 0, which no one reads any more."""
    return _replay("generation keys", "L L L W W W W L")


def old_generation_diagram() -> str:
    return old_generation().mermaid(LABELS, final_state=True)


# --- The cost of each scheme, counted ------------------------------------------------
@contextmanager
def counting(cache: Cache) -> Iterator[Counter[str]]:
    """Count the commands sent through ``cache`` (and, under "keys", the keys DEL
    was asked to delete) while the block runs."""
    counts: Counter[str] = Counter()
    send = cache.execute_command

    def execute(*args: Any, **options: Any) -> Any:
        counts["commands"] += 1
        if str(args[0]).upper() == "DEL":
            counts["keys"] += len(args) - 1
        return send(*args, **options)

    cache.execute_command = execute  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        del cache.execute_command


@dataclass(frozen=True)
class Cost:
    scheme: str
    per_write: float  # Redis commands
    deleted_per_write: float  # keys a write's DEL names (leases included)
    per_hit: float  # Redis commands of a read that finds its value
    per_miss: float  # ... and of one that loads it from the DB and fills
    stale_reads: int  # reads that returned something the DB no longer says
    keys_left: int  # keys in Redis after the last write and its reads
    set_members: int  # members of the tag sets


def views_of(user_id: int, pages: int) -> list[View]:
    return [*(orders_page(user_id, page) for page in range(1, pages + 1)),
            order_count(user_id), top_orders()]


def measure(name: str, writes: int = 50, pages: int = 3,
            cache: Cache | None = None) -> Cost:
    """``writes`` orders for user 1, one by one; after each, every view (``pages``
    pages of the list, the count, the top ten) is read twice: a miss, then a hit."""
    check_int("writes", writes)
    check_int("pages", pages)
    chosen, cache, db = scheme(name), cache or make_fake_cache(), make_db()
    create_orders(db)
    totals: Counter[str] = Counter()
    stale = 0
    for n in range(1, writes + 1):
        with counting(cache) as counts:
            chosen.write(cache, db, Order(n, 1, (n * 37) % 100 * 100))
        totals.update({"write": counts["commands"], "deleted": counts["keys"]})
        for view in views_of(1, pages):
            for _ in range(2):
                reads_before = db.reads
                with counting(cache) as counts:
                    seen = chosen.read(cache, db, view)
                kind = "miss" if db.reads > reads_before else "hit"  # loaded, or not
                totals.update({kind: counts["commands"], f"{kind}es": 1})
                stale += seen != load(db, view)
    keys = list(cache.scan_iter("*"))
    members = sum(cache.scard(key) for key in keys if str(key).startswith("tag:"))
    return Cost(name, totals["write"] / writes, totals["deleted"] / writes,
                totals["hit"] / totals["hites"], totals["miss"] / totals["misses"],
                stale, len(keys), members)


def print_costs(writes: int = 50, pages: int = 3) -> None:
    """One row per scheme, for the workload of ``measure``: Redis commands per write,
    per hit and per miss; keys a write deletes; stale reads; keys left in Redis."""
    print(f"{'':<29}{'write':>6}{'hit':>5}{'miss':>5}{'deleted':>8}{'stale':>6}"
          f"{'keys left':>10}")
    for name in SCHEMES:
        cost = measure(name, writes, pages)
        print(f"{name:<29}{cost.per_write:>6g}{cost.per_hit:>5g}{cost.per_miss:>5g}"
              f"{cost.deleted_per_write:>8g}{cost.stale_reads:>6}{cost.keys_left:>10}")


def main() -> None:
    print("A list fill against an order write (every interleaving):")
    for name in SCHEMES:
        result = explore_race(name)
        print(f"  {name:<30} {len(result.bad)} bad of {result.total}")
    print("50 orders, each followed by reads of 5 views: stale reads, keys left")
    for name in SCHEMES:
        cost = measure(name)
        print(f"  {name:<30} {cost.stale_reads:>4} {cost.keys_left:>4}")


if __name__ == "__main__":
    main()
