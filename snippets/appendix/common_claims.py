"""Each claim of a widely repeated summary of cache invalidation patterns, quoted, with
its verdict and the page sections that test it: the data of the appendix page
"Common claims, tested".

Run it: ``python -m snippets.appendix.common_claims`` (``--table`` prints the page's
table, ``--write`` rewrites it in docs/appendix/common-claims.md).
"""

from __future__ import annotations

# --8<-- [start:imports]
from collections import Counter
from dataclasses import dataclass, field

# --8<-- [end:imports]
import sys  # for the docs machinery at the end, not shown
from pathlib import Path


# --8<-- [start:claim]
KINDS = ("holds", "holds only when", "wrong", "not checkable")


@dataclass(frozen=True)
class Claim:
    quote: str  # verbatim from the summary; " … " joins fragments quoted in order
    verdict: str  # "holds", "holds only when <condition>", "wrong", "not checkable"
    why: str
    evidence: list[str] = field(default_factory=list)  # "<page>.md#<anchor>"

    @property
    def kind(self) -> str:
        if self.verdict.startswith("holds only when "):
            return "holds only when"
        if self.verdict in ("holds", "wrong", "not checkable"):
            return self.verdict
        raise ValueError(f"not a verdict: {self.verdict!r}")


def counts(claims: dict[str, list[Claim]]) -> Counter[str]:
    """How many claims got each kind of verdict."""
    return Counter(claim.kind for section in claims.values() for claim in section)


# --8<-- [end:claim]


# The claims, under the summary's own sections, in its order. Each quote is checked
# against the summary, and each evidence link against the page it names, by
# tests/appendix/test_common_claims.py.
CLAIMS: dict[str, list[Claim]] = {
    "Overview": [
        Claim(
            "Cache invalidation ensures cached data stays consistent with the "
            "database in distributed systems.",
            "wrong",
            "Invalidation bounds how long the cache disagrees; it does not prevent it. "
            "Between a commit and its delete every reader gets the old value, and a "
            "reader's late fill or a lost delete stretches that to a whole TTL. What "
            "can be had is a cache that ends agreeing with the database after every "
            "write, in a stated model: a lease on every fill, one Redis, every read "
            "from the primary.",
            ["patterns/cache-aside.md#the-stale-window-shown",
             "concurrency/reader-race.md#the-race-step-by-step",
             "concurrency/production-pattern.md#where-it-breaks"],
        ),
        Claim(
            "In real production systems, the hardest problem is: handling "
            "concurrency and distributed timing while keeping cache consistent "
            "with DB.",
            "not checkable",
            "This ranks difficulty, and no code can check a ranking. What this site "
            "does show: every way they find for the cache to end wrong is an order of "
            "concurrent calls or a delay (racing writers, a reader's late fill, a "
            "lost or late event, a lagging replica).",
            ["concurrency/comparison.md#the-same-table-computed",
             "concurrency/explorer.md#the-model"],
        ),
        Claim(
            "Most systems use a combination of patterns, not a single approach.",
            "not checkable",
            "A statement about other people's systems, which no code here can check. "
            "The production pattern on this site is itself a combination: "
            "cache-aside, a lease on the fill, a TTL on every entry.",
            ["concurrency/production-pattern.md#the-production-paths"],
        ),
    ],
    "Cache-aside": [
        Claim(
            "Most Common Pattern … Where it is used: microservices systems, "
            "e-commerce platforms, social applications",
            "not checkable",
            "How widely and where a pattern is used is not something code can check.",
        ),
        Claim(
            "Application manages cache manually. Cache is a read-through "
            "optimization layer, DB is the source of truth.",
            "holds",
            "The read and write paths take the cache and the database as arguments; "
            "every write goes to the database only, and the cache holds only copies "
            "read from it. (Strictly, \"read-through\" names a cache that loads rows "
            "itself; here the application loads them.)",
            ["patterns/cache-aside.md#the-code",
             "patterns/cache-aside.md#each-claim-checked"],
        ),
        Claim(
            "Read flow: Client → Application → Cache → (miss) Database → Cache → "
            "Response",
            "holds",
            "A miss reads the database once and stores the row with a TTL; a hit "
            "does not touch the database.",
            ["patterns/cache-aside.md#reading-a-miss-then-hits",
             "patterns/cache-aside.md#each-claim-checked"],
        ),
        Claim(
            "Write flow: Client → Application → Database update → delete cache key",
            "holds",
            "Update first, then delete, is the better order: deleting first lets any "
            "reader that misses during the write cache the old row, and the explorer "
            "finds many more bad orders.",
            ["patterns/cache-aside.md#writing-update-the-database-then-delete-the-key",
             "concurrency/reader-race.md#deleting-first-makes-it-worse"],
        ),
        Claim(
            "Pros: simple",
            "holds",
            "Two functions of about a dozen lines each, shown and run on the page.",
            ["patterns/cache-aside.md#the-code"],
        ),
        Claim(
            "safe",
            "holds only when no reader's fill races a write and every delete arrives",
            "A delete never writes a wrong value. But a reader that read the row "
            "before a write and fills the key after its delete puts the old value "
            "back, and a delete lost after the commit leaves it: either way it stays "
            "until the TTL. A lease on the fill closes the first.",
            ["concurrency/reader-race.md#the-race-step-by-step",
             "concurrency/reader-race.md#a-delete-that-never-arrives",
             "concurrency/production-pattern.md#the-production-paths"],
        ),
        Claim(
            "easy to debug",
            "not checkable",
            "A judgment about people, which no code can check. The argument for it: "
            "a wrong entry is always a copy some reader loaded, and deleting the key "
            "always repairs it.",
            ["concurrency/comparison.md#debug-complexity"],
        ),
        Claim(
            "flexible",
            "not checkable",
            "Says nothing a test could check: any key and any TTL work, as they do "
            "for every pattern here.",
        ),
        Claim(
            "Cons: cache miss causes DB hit",
            "holds",
            "Exactly one database read per miss, none per hit. For a hot key it is "
            "more: every reader that misses before the refill reads the database (a "
            "stampede).",
            ["patterns/cache-aside.md#each-claim-checked",
             "concurrency/update-vs-invalidate.md#what-a-delete-costs"],
        ),
        Claim(
            "small stale window possible",
            "holds only when every delete arrives and no reader's fill races the "
            "write",
            "Then the window is one round trip, from the commit to the delete. A "
            "lost delete, or a reader's fill of the row it read before the write, "
            "keeps the old value until the TTL.",
            ["patterns/cache-aside.md#the-stale-window-shown",
             "concurrency/reader-race.md#the-race-step-by-step",
             "concurrency/reader-race.md#a-delete-that-never-arrives"],
        ),
    ],
    "Write-through": [
        Claim(
            "Write goes through cache first, then DB. … Flow: Client → Cache → "
            "Database",
            "wrong",
            "In this order a database write that fails has already reached the "
            "cache: readers are served a value the database never held, until the "
            "TTL. Write the database first.",
            ["patterns/write-through.md#what-goes-wrong-replayed"],
        ),
        Claim(
            "Pros: strong consistency",
            "wrong",
            "None of the designs shown gives it. Database first with plain sets, two "
            "writers whose "
            "sets arrive out of order leave the cache disagreeing until the TTL. "
            "With version-checked sets the cache ends agreeing with the database in "
            "every order explored, yet a copy that is gone still lets a reader's "
            "older fill in.",
            ["patterns/write-through.md#two-writers-whose-sets-arrive-out-of-order",
             "patterns/write-through.md#every-interleaving"],
        ),
        Claim(
            "no stale cache",
            "wrong",
            "A cache set that fails after the commit leaves the old copy until its "
            "TTL.",
            ["patterns/write-through.md#database-first-then-the-cache-set-fails"],
        ),
        Claim(
            "Cons: slower writes",
            "holds",
            "By one database statement per write (reading the new version), with the "
            "same single Redis round trip as cache-aside's delete.",
            ["patterns/write-through.md#the-cost-of-a-write-counted"],
        ),
        Claim(
            "higher cost",
            "holds only when counted per write",
            "Over a write and the read after it, write-through costs the same "
            "database statements as cache-aside and fewer Redis commands, because "
            "the read is a hit. What it adds is memory for copies nobody reads.",
            ["patterns/write-through.md#the-cost-of-a-write-counted"],
        ),
    ],
    "Write-behind": [
        Claim(
            "Write goes to cache first, DB updated asynchronously. … Flow: Client → "
            "Cache (ACK) → async Database",
            "not checkable",
            "A description of the pattern, not a claim about it. The page builds it "
            "twice: with the writes still to flush in process memory, and logged in "
            "a Redis stream.",
            ["patterns/write-behind.md#the-naive-version-the-queue-lives-in-the-process",
             "patterns/write-behind.md#the-durable-version-the-log-lives-in-redis"],
        ),
        Claim(
            "Pros: very fast writes",
            "holds",
            "A write sends no database statement at all, and one Redis round trip.",
            ["patterns/write-behind.md#each-claim-checked"],
        ),
        Claim(
            "high throughput",
            "holds only when writes repeat keys",
            "Coalescing the writes of one key into one statement is where the "
            "database gains. Writes to keys that never repeat take more statements "
            "than writing synchronously, though far fewer commits.",
            ["patterns/write-behind.md#coalescing-counted"],
        ),
        Claim(
            "Cons: risk of data loss",
            "holds only when the writes still to flush live in process memory, or in "
            "a Redis that can lose them",
            "In process memory, an acknowledged write is lost to one crash. Logged "
            "in a Redis stream and acknowledged after the database commit, none is "
            "lost when the flusher dies at any step, as long as Redis keeps the "
            "stream.",
            ["patterns/write-behind.md#the-naive-version-the-queue-lives-in-the-process",
             "patterns/write-behind.md#killed-at-every-step"],
        ),
        Claim(
            "complex recovery",
            "holds",
            "Recovery needs a consumer group, pending entries, claims of a dead "
            "flusher's work, an idempotent apply, and a dead-letter stream for "
            "writes the database refuses after they were acknowledged. Each is "
            "replayed.",
            ["patterns/write-behind.md#crashes-replayed",
             "patterns/write-behind.md#when-the-database-says-no"],
        ),
    ],
    "TTL-based invalidation": [
        Claim(
            "Cache expires automatically after time. … Example: user:123 → TTL = 5 "
            "minutes",
            "holds",
            "An entry stored with a TTL is gone once the TTL runs out, and the next "
            "read loads the row again.",
            ["patterns/ttl.md#reading-a-miss-hits-then-expiry",
             "patterns/ttl.md#what-redis-does-and-what-is-modelled"],
        ),
        Claim(
            "Pros: simple",
            "holds",
            "The write path needs no cache code at all. The one thing to add is "
            "jitter, so that keys stored together do not expire together.",
            ["patterns/ttl.md#writing-the-cache-is-not-told",
             "patterns/ttl.md#synchronized-expiry-and-jitter"],
        ),
        Claim(
            "safe fallback",
            "holds only when every write of the key carries a TTL",
            "A lost delete, a lost event or a reader's late fill is then stale for "
            "at most one TTL from when it was stored. One plain SET of the key, "
            "anywhere, clears the TTL, and the entry never expires.",
            ["patterns/ttl.md#the-safety-net-beneath-the-other-patterns",
             "patterns/ttl.md#what-redis-does-and-what-is-modelled"],
        ),
        Claim(
            "Cons: stale data until expiration",
            "holds",
            "Up to one whole TTL after the entry was stored, half of it on average.",
            ["patterns/ttl.md#the-stale-window-is-bounded-by-the-ttl"],
        ),
    ],
    "Event-driven invalidation": [
        Claim(
            "Database changes emit events to invalidate cache. … Service → Database "
            "update → Event (UserUpdated) → Cache Service",
            "holds only when the event is committed with the change",
            "In this flow the service publishes after its commit: if it dies in "
            "between, or "
            "the broker does not take the event, nothing deletes the key until its "
            "TTL. An outbox records the event in the same transaction as the change.",
            ["patterns/event-driven.md#event-loss-stale-until-the-ttl",
             "scaling/outbox.md#the-gap-update-the-database-then-publish"],
        ),
        Claim(
            "delete/update cache",
            "holds only when the consumer deletes",
            "Events delivered out of order leave an updating consumer holding an "
            "older value; deletes commute, so a deleting consumer ends right in "
            "every order.",
            ["patterns/event-driven.md#out-of-order-events-delete-is-safe-update-is-not"],
        ),
        Claim(
            "Pros: decoupled systems",
            "holds",
            "The writing service takes no cache at all: it knows its database and "
            "the broker.",
            ["patterns/event-driven.md#the-code"],
        ),
        Claim(
            "scalable",
            "holds only when the consumers keep up",
            "A key's stale window is the consumer's lag behind its event. A "
            "partitioned log adds consumers up to its number of partitions.",
            ["patterns/event-driven.md#event-delay-a-stale-window",
             "scaling/kafka-invalidation.md#consumer-lag-the-stale-window-is-the-lag"],
        ),
        Claim(
            "Cons: eventual consistency",
            "holds",
            "From the commit until the consumer's delete every reader gets the old "
            "value; that lag can be measured, and is the number to alert on.",
            ["patterns/event-driven.md#event-delay-a-stale-window"],
        ),
        Claim(
            "event delay or loss possible",
            "holds",
            "A late event leaves the key stale until it arrives; a lost one, until "
            "the TTL. An outbox removes the loss, not the delay.",
            ["patterns/event-driven.md#event-loss-stale-until-the-ttl",
             "scaling/outbox.md#what-goes-wrong-and-why-nothing-is-lost"],
        ),
    ],
    "Update-on-write vs invalidate-on-write": [
        Claim(
            "Update-on-write (RISKY under concurrency) … Problem: concurrent updates "
            "can cause race conditions between DB and cache.",
            "holds",
            "Two writers are enough: the explorer finds the orders in which the "
            "cache ends holding one writer's value and the database the other's.",
            ["concurrency/update-vs-invalidate.md#update-on-write-2-bad-schedules-out-of-6"],
        ),
        Claim(
            "Request A updates value = \"A\"; Request B updates value = \"B\". If "
            "execution order is mixed: DB = B, Cache = A",
            "holds",
            "Replayed: A updates, B updates and sets, then A's set lands last.",
            ["concurrency/update-vs-invalidate.md#update-on-write-2-bad-schedules-out-of-6"],
        ),
        Claim(
            "update-on-write is unsafe due to race conditions, out-of-order "
            "execution, distributed timing issues.",
            "holds only when two writes of a key can race and the set is not "
            "version-checked",
            "With one writer of the key, one atomic command, or a set that refuses "
            "an older version, a set on write is safe.",
            ["concurrency/update-vs-invalidate.md#update-on-write-2-bad-schedules-out-of-6",
             "concurrency/fixes.md#version-checked-sets",
             "concurrency/production-pattern.md#each-one-against-every-interleaving"],
        ),
        Claim(
            "Invalidate-on-write (SAFE pattern) … Do NOT update cache. Only delete "
            "it.",
            "holds only when the only concurrent requests are writers",
            "Deletes commute, so two writers never leave a wrong value. One reader "
            "is enough to break it: a reader that read the row before the write "
            "fills the key after the delete.",
            ["concurrency/update-vs-invalidate.md#invalidate-on-write-0-bad-out-of-6",
             "concurrency/reader-race.md#the-race-step-by-step"],
        ),
        Claim(
            "Why it is safe: only DELETE operations on cache; no stale value can be "
            "written.",
            "wrong",
            "A reader writes to the cache too, with the set that follows its miss, "
            "and that set can carry the row from before the write.",
            ["concurrency/reader-race.md#the-race-step-by-step"],
        ),
        Claim(
            "Read flow: Client → Redis (miss) → Database → Set cache. \"Always "
            "consistent with DB.\"",
            "wrong",
            "The old value can be put back after the delete and served until the "
            "TTL, even to a read that starts after the write finished. A lagging "
            "replica, or a read from a snapshot taken before the write, does the "
            "same with no race at all in the application.",
            ["concurrency/reader-race.md#the-race-step-by-step",
             "concurrency/reader-race.md#a-read-that-starts-after-the-write-still-sees-the-old-value",
             "concurrency/production-pattern.md#a-lagging-read-replica",
             "concurrency/production-pattern.md#a-snapshot-read"],
        ),
    ],
    "The comparison table": [
        Claim(
            "Cache operation | SET | DELETE",
            "holds",
            "That is the whole difference between the two write paths.",
            ["concurrency/update-vs-invalidate.md#the-two-write-paths"],
        ),
        Claim(
            "Race condition risk | High | Low",
            "holds only when \"low\" is read as lower, not none",
            "Update-on-write goes wrong with two writers and with a writer and a "
            "reader; invalidate-on-write only with the reader, and then stays wrong "
            "until the TTL.",
            ["concurrency/comparison.md#the-same-table-computed"],
        ),
        Claim(
            "Out-of-order updates | Dangerous | Harmless",
            "holds",
            "Two writers' sets out of order leave a wrong value; deletes commute, "
            "in any order. Events delivered out of order behave the same way.",
            ["concurrency/update-vs-invalidate.md#invalidate-on-write-0-bad-out-of-6",
             "patterns/event-driven.md#out-of-order-events-delete-is-safe-update-is-not"],
        ),
        Claim(
            "Cache correctness | Fragile | Reliable",
            "holds only when no reader's fill races a write",
            "With a writer and a reader, invalidate-on-write ends wrong too, and "
            "stays wrong until the TTL. A lease on the fill makes it reliable in the "
            "explored model.",
            ["concurrency/comparison.md#the-same-table-computed",
             "concurrency/production-pattern.md#the-production-paths"],
        ),
        Claim(
            "Debug complexity | High | Low",
            "not checkable",
            "A judgment about people, which no code can check; the case for it is "
            "argued in words.",
            ["concurrency/comparison.md#debug-complexity"],
        ),
    ],
    "The key insight": [
        Claim(
            "Cache is not the source of truth. DB = source of truth; Cache = "
            "disposable optimization layer.",
            "holds",
            "Every write goes to the database, and any key can be deleted at any "
            "time at the cost of reading the row again. On a hot key, every reader "
            "that misses at once pays that cost, unless a lease or a stampede cure "
            "makes one of them load for all.",
            ["patterns/cache-aside.md#each-claim-checked",
             "concurrency/update-vs-invalidate.md#what-a-delete-costs",
             "scaling/stampede.md#reproduced"],
        ),
        Claim(
            "Invalidate-on-write works because even if cache is wrong, it will be "
            "deleted anyway.",
            "wrong",
            "The delete happens once, when the write runs. A wrong value stored "
            "after it, by a reader's late fill, is never deleted: it stays until the "
            "TTL.",
            ["concurrency/reader-race.md#the-race-step-by-step"],
        ),
    ],
    "The production pattern": [
        Claim(
            "Most systems use",
            "not checkable",
            "A statement about other people's systems, which no code can check.",
        ),
        Claim(
            "WRITE: 1. Update Database 2. Delete Cache",
            "holds only when every delete arrives",
            "It is the better order: deleting first lets readers cache the old row "
            "for the whole write. A delete lost after the commit leaves the old "
            "value until the TTL; an outbox makes the delete reliable.",
            ["concurrency/reader-race.md#deleting-first-makes-it-worse",
             "concurrency/reader-race.md#a-delete-that-never-arrives",
             "scaling/outbox.md#the-outbox-one-transaction-then-a-relay"],
        ),
        Claim(
            "READ: Cache hit → return; Cache miss → DB → set cache",
            "holds only when the fill takes a lease and the miss reads the primary",
            "A plain set after a miss is the reader race. With a lease taken before "
            "the read and checked at the fill, no explored order leaves a wrong "
            "value, as long as every read goes to the primary and sees every commit "
            "before it: a lagging replica or an old snapshot puts the old row back.",
            ["concurrency/production-pattern.md#the-production-paths",
             "concurrency/production-pattern.md#where-it-breaks",
             "concurrency/production-pattern.md#a-lagging-read-replica",
             "concurrency/production-pattern.md#a-snapshot-read"],
        ),
    ],
    "Why update-on-write still exists": [
        Claim(
            "Used only in limited cases: simple data, low concurrency, ultra-fast "
            "read-after-write requirement.",
            "holds only when \"low concurrency\" means that no two writes of a key "
            "can race",
            "One other writer is enough for a race, whatever the rate. What makes a "
            "set on write safe is construction: the cache is the only copy, one "
            "writer writes the whole value, or the update is one atomic command.",
            ["concurrency/production-pattern.md#why-update-on-write-still-exists",
             "concurrency/production-pattern.md#each-one-against-every-interleaving"],
        ),
        Claim(
            "session storage",
            "holds only when a session is saved whole",
            "The session lives only in Redis, so no second copy can disagree with "
            "it. Two requests of one session that each change a different field and "
            "save lose one change.",
            ["concurrency/production-pattern.md#session-storage-the-cache-is-the-store"],
        ),
        Claim(
            "feature flags",
            "holds only when one writer writes the whole flag set",
            "Two admins flipping flags leave the cache and the database disagreeing "
            "in some orders; one admin, in none.",
            ["concurrency/production-pattern.md#feature-flags-one-writer-the-whole-state",
             "concurrency/production-pattern.md#each-one-against-every-interleaving"],
        ),
        Claim(
            "simple counters",
            "holds only when the update is one atomic command (INCR)",
            "GET then SET loses increments when two clients interleave; INCR never "
            "does.",
            ["concurrency/production-pattern.md#counters-one-atomic-command",
             "concurrency/production-pattern.md#each-one-against-every-interleaving"],
        ),
    ],
    "Further topics": [
        Claim(
            "Cache stampede problem",
            "holds",
            "When a hot key expires, every reader that misses before the refill "
            "reads the database: as many reads as readers.",
            ["scaling/stampede.md#reproduced", "scaling/stampede.md#the-benchmark"],
        ),
        Claim(
            "Mutex",
            "holds only when the lock holder lives and its load is shorter than the "
            "lock",
            "Then, as a stampede cure, one database read per expiry across "
            "processes. A holder that "
            "dies stalls the waiters for the lock time; a load that outlasts the "
            "lock lets a second loader in. Its fill must be the lease's: a plain SET "
            "reopens the reader race.",
            ["scaling/mutex.md#each-claim-checked",
             "scaling/mutex.md#a-write-during-the-load-the-fill-is-refused",
             "scaling/mutex.md#when-the-holder-dies",
             "scaling/mutex.md#why-the-token-and-why-in-one-step"],
        ),
        Claim(
            "singleflight",
            "holds only when counted per process",
            "As a stampede cure, one load per key in each process: several "
            "processes make one load each.",
            ["scaling/singleflight.md#each-claim-checked",
             "scaling/stampede.md#one-process-or-several"],
        ),
        Claim(
            "Request coalescing",
            "holds only when the leader lives",
            "As a stampede cure, one database read per expiry across processes, "
            "and the followers are "
            "told the result as soon as it exists. A dead leader makes them wait "
            "for its lock to expire.",
            ["scaling/coalescing.md#each-claim-checked"],
        ),
        Claim(
            "Kafka-based cache invalidation",
            "holds only when the consumer deletes before it commits its offset, "
            "the writer cannot die between its commit and the produce, and the "
            "topic is durable",
            "The log keeps an event until it is handled: a consumer that crashes "
            "before committing gets it again. Committing first loses it, and so "
            "does a writer that dies before producing (an outbox closes that gap). "
            "A partition keeps produce order, not commit order, so an update-style "
            "consumer can end stale; and 'kept' needs replication, "
            "min.insync.replicas and acks=all.",
            ["scaling/kafka-invalidation.md#delete-then-commit",
             "scaling/kafka-invalidation.md#produce-order-is-not-commit-order",
             "scaling/kafka-invalidation.md#the-consumer-crashes-before-the-commit-the-event-comes-back",
             "scaling/outbox.md#the-gap-update-the-database-then-publish"],
        ),
        Claim(
            "Outbox pattern for reliability",
            "holds only when the relay picks every unsent row",
            "No invalidation is lost to a crash at any step or any pair of steps; "
            "some are sent twice, which deletes make harmless. A relay that keeps a "
            "high-water mark of ids instead loses an event whose earlier id commits "
            "later. It makes invalidation "
            "reliable, not immediate, and a racing reader can still put the old "
            "value back.",
            ["scaling/outbox.md#a-crash-at-every-step-and-at-every-pair-of-steps",
             "scaling/outbox.md#a-later-id-commits-first",
             "scaling/outbox.md#what-the-outbox-does-not-fix"],
        ),
    ],
}


def main() -> None:
    total = sum(len(section) for section in CLAIMS.values())
    print(f"{total} claims of a widely repeated summary, in {len(CLAIMS)} sections:")
    found = counts(CLAIMS)
    for kind in KINDS:
        print(f"  {kind:<16} {found[kind]:>3}")


# --- docs machinery, not shown: the page's table is rendered from CLAIMS --------------

PAGE = Path(__file__).resolve().parents[2] / "docs" / "appendix" / "common-claims.md"
START = ("<!-- claims: rendered from snippets.appendix.common_claims, "
         "--write to update -->")
END = "<!-- end of claims -->"

# How a link names the page it leads to.
PAGE_NAMES = {
    "patterns/cache-aside.md": "Cache-aside",
    "patterns/write-through.md": "Write-through",
    "patterns/write-behind.md": "Write-behind",
    "patterns/ttl.md": "TTL expiry",
    "patterns/event-driven.md": "Event-driven invalidation",
    "concurrency/explorer.md": "The explorer",
    "concurrency/update-vs-invalidate.md": "Update vs invalidate",
    "concurrency/reader-race.md": "The reader race",
    "concurrency/fixes.md": "Fixes that hold",
    "concurrency/comparison.md": "Comparison table",
    "concurrency/production-pattern.md": "The production pattern",
    "scaling/stampede.md": "Cache stampede",
    "scaling/mutex.md": "Mutex lock",
    "scaling/singleflight.md": "Singleflight",
    "scaling/coalescing.md": "Request coalescing",
    "scaling/kafka-invalidation.md": "Kafka-based invalidation",
    "scaling/outbox.md": "Outbox pattern",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _verdict(claim: Claim) -> str:
    if claim.kind == "holds only when":
        condition = claim.verdict.removeprefix("holds only when ")
        return f"**holds only when** {_cell(condition)}."
    return f"**{claim.verdict}.**"


def _evidence(links: list[str]) -> str:
    pages: dict[str, list[str]] = {}
    for link in links:
        page, _, anchor = link.partition("#")
        words = anchor.replace("-", " ")
        pages.setdefault(page, []).append(f"[{words}](../{link})")
    return "; ".join(f"{PAGE_NAMES[page]}: {', '.join(found)}"
                     for page, found in pages.items())


def markdown_table(claims: dict[str, list[Claim]] = CLAIMS) -> str:
    """The page's tables: one per section of the summary, a row per claim."""
    out = [START]
    for title, section in claims.items():
        out += ["", f"## {title}", "", "| Common claim | Verdict |", "|---|---|"]
        for claim in section:
            verdict = f"{_verdict(claim)} {_cell(claim.why)}"
            if claim.evidence:
                verdict += f"<br>See {_evidence(claim.evidence)}."
            out.append(f"| “{_cell(claim.quote)}” | {verdict} |")
    return "\n".join([*out, "", END])


def page_table(text: str) -> str:
    """The rendered part of the page's text, markers included."""
    start, end = text.index(START), text.index(END) + len(END)
    return text[start:end]


def write_page() -> bool:
    """Rewrite the page's tables from CLAIMS; True if they changed."""
    text = PAGE.read_text(encoding="utf-8")
    new = text.replace(page_table(text), markdown_table())
    if new != text:
        PAGE.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    if "--table" in sys.argv[1:]:
        print(markdown_table())
    elif "--write" in sys.argv[1:]:
        print("rewritten" if write_page() else "unchanged", PAGE.name)
    else:
        main()
