"""The interleaving explorer: run ordinary pattern functions "concurrently", one cache
or database call at a time, through every interleaving, and replay any one exactly.

How it works, in the spirit of Loom and CHESS:

- Each actor (a plain function of a cache and a database) runs in a greenlet of its own,
  and only the scheduler decides who runs next, so every run is deterministic
  (``runtime``).
- The cache and the database are instrumented: every call (a Redis command, an EVAL, a
  MULTI/EXEC, one SQL statement, a whole DB transaction) is one atomic *step*, and
  before each step the actor waits until the scheduler lets it go (``instrument``).
- ``explore`` re-runs the actors from ``setup`` once per schedule and walks every choice
  depth first (``search``). Two steps that cannot affect each other (different keys, or
  two reads) commute (``footprints``), so by default schedules that differ only in the
  order of such steps are counted once (DPOR with sleep sets; ``reduction``). A run that
  shares its first steps with the last one replays them instead of sending them again
  (``memo``).
- ``replay`` runs one schedule again, records every step, and ``Run.mermaid`` draws it
  as a Mermaid sequence diagram (``diagrams``).

Run it: ``python -m snippets.explorer`` (a worked example), ``--bench`` (speed),
``--diagrams`` (rewrite the generated diagrams in docs/, ``--check`` to only compare).
"""

from snippets.explorer.diagrams import mermaid_problems
from snippets.explorer.footprints import (
    Footprint,
    dependent,
    redis_footprint,
    sql_footprint,
)
from snippets.explorer.records import Returns, Schedule, Step
from snippets.explorer.runtime import Actor, reusing
from snippets.explorer.search import Exploration, Run, explore, replay
from snippets.explorer.text import describe_state

__all__ = [
    "Actor",
    "Exploration",
    "Footprint",
    "Returns",
    "Run",
    "Schedule",
    "Step",
    "dependent",
    "describe_state",
    "explore",
    "mermaid_problems",
    "redis_footprint",
    "replay",
    "reusing",
    "sql_footprint",
]
