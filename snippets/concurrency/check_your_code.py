"""Check your own code: a product catalogue's price cache, written as a service writes
it (a redis-py client, a sqlite3 connection), run under the explorer by
``python -m snippets.explorer check``.

- ``set_price`` deletes the key inside its ``with conn:`` block, before the COMMIT: a
  reader can refill the old price after the delete. 3 bad of 7 distinct schedules.
- Moving the delete after the block leaves the reader race: 2 bad of 7.
- Versioned sets (an EVAL that never replaces a newer version): 0 bad of 7, and 0 bad
  of 79 with two readers.

Run it: ``python -m snippets.concurrency.check_your_code``.
"""

from __future__ import annotations

# --8<-- [start:imports]
import sqlite3

import redis
# --8<-- [end:imports]

from snippets.explorer.check import Report, check_code

TTL = 3600  # seconds


# --8<-- [start:setup]
def one_product(r: redis.Redis, conn: sqlite3.Connection) -> None:
    """Product 1, green tea, costs 300 (cents); nothing is cached yet."""
    conn.execute("""CREATE TABLE products (
        id      INTEGER PRIMARY KEY,
        name    TEXT    NOT NULL,
        price   INTEGER NOT NULL,
        version INTEGER NOT NULL DEFAULT 1)""")
    conn.execute("INSERT INTO products (id, name, price) VALUES (1, 'green tea', 300)")
    conn.commit()
# --8<-- [end:setup]


# --8<-- [start:racy]
def get_price(r: redis.Redis, conn: sqlite3.Connection, product_id: int) -> int | None:
    """Cache-aside: the cached price, else the DB's, cached for an hour."""
    key = f"price:{product_id}"
    cached = r.get(key)
    if cached is not None:
        return int(cached)
    row = conn.execute("SELECT price FROM products WHERE id = ?",
                       (product_id,)).fetchone()
    if row is None:
        return None
    r.set(key, row[0], ex=TTL)
    return row[0]


def set_price(r: redis.Redis, conn: sqlite3.Connection, product_id: int,
              price: int) -> None:
    with conn:  # sqlite3 commits when the block ends
        conn.execute("UPDATE products SET price = ? WHERE id = ?", (price, product_id))
        r.delete(f"price:{product_id}")  # (1)!
# --8<-- [end:racy]


# --8<-- [start:after-commit]
def set_price_after_commit(r: redis.Redis, conn: sqlite3.Connection, product_id: int,
                           price: int) -> None:
    with conn:
        conn.execute("UPDATE products SET price = ? WHERE id = ?", (price, product_id))
    r.delete(f"price:{product_id}")  # after the COMMIT
# --8<-- [end:after-commit]


# --8<-- [start:fixed]
SET_IF_NEWER = """
local cached = redis.call('GET', KEYS[1])
if cached and tonumber(string.match(cached, '^%d+')) >= tonumber(ARGV[1]) then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'EX', ARGV[3])
return 1
"""  # (1)!


def get_price_versioned(r: redis.Redis, conn: sqlite3.Connection,
                        product_id: int) -> int | None:
    key = f"price:{product_id}"
    cached: str | None = r.get(key)  # type: ignore[assignment]  # "version:price"
    if cached is not None:
        return int(cached.split(":")[1])
    row = conn.execute("SELECT price, version FROM products WHERE id = ?",
                       (product_id,)).fetchone()
    if row is None:
        return None
    price, version = row
    r.eval(SET_IF_NEWER, 1, key, version, price, TTL)  # refused if a newer one is there
    return price


def set_price_versioned(r: redis.Redis, conn: sqlite3.Connection, product_id: int,
                        price: int) -> None:
    with conn:
        price, version = conn.execute(
            "UPDATE products SET price = ?, version = version + 1 WHERE id = ? "
            "RETURNING price, version", (price, product_id)).fetchone()  # (2)!
    r.eval(SET_IF_NEWER, 1, f"price:{product_id}", version, price, TTL)
# --8<-- [end:fixed]


# --8<-- [start:own-check]
def cache_matches_db(r: redis.Redis, conn: sqlite3.Connection,
                     returns: dict[str, object]) -> str | None:
    """Once everyone is done, product 1's price is not cached, or is the DB's."""
    cached: str | None = r.get("price:1")  # type: ignore[assignment]  # decoded
    [(price,)] = conn.execute("SELECT price FROM products WHERE id = 1").fetchall()
    if cached is not None and int(cached) != price:
        return f"the cache says {cached}, the DB {price}"
    return None
# --8<-- [end:own-check]


VARIANTS = {
    "DEL inside the transaction": (get_price, set_price),
    "DEL after the commit": (get_price, set_price_after_commit),
    "versioned sets": (get_price_versioned, set_price_versioned),
}


def checked(variant: str, readers: int = 1) -> Report:
    """One variant explored: W sets product 1's price to 450 while R reads it."""
    read, write = VARIANTS[variant]
    return check_code(read, write, one_product, read_args=(1,), write_args=(1, 450),
                      readers=readers)


def stale_refill() -> str:
    """The first bad schedule of the racy version, drawn."""
    report = checked("DEL inside the transaction")
    return report.replays[0].mermaid(report.labels)


def main() -> None:
    for variant in VARIANTS:
        report = checked(variant)
        found = report.exploration
        print(f"{variant}: {report.bad} bad of {found.total} distinct schedules")
        for run in report.replays:
            print(f"    e.g. {run.schedule}: {run.verdict}")


if __name__ == "__main__":
    main()
