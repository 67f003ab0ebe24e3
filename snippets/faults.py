"""Fault injection, shared by every page: one ``Crash``, one ``Faults`` counter that
crashes a process at a chosen step, and one ``Intercept`` that runs something just
before a call.

A failure is demonstrated by injecting it at an exact point, never by hoping a real one
happens: the same fault, at the same step, every run."""

from __future__ import annotations

# --8<-- [start:imports]
import re
from collections.abc import Callable, Iterable
from typing import Any
# --8<-- [end:imports]


# --8<-- [start:crash]
class Crash(BaseException):
    """The process dies here (think kill -9). A BaseException, so no
    ``except Exception`` in the code under test can swallow it."""


class Faults:
    """Numbers the calls to the wrapped objects as one sequence of steps, and crashes
    just before each step in ``crash_at``: the call at that step never happens. After
    ``kill()``, every later call crashes: a dead process sends nothing."""

    def __init__(self, crash_at: Iterable[int] = ()) -> None:
        self.crash_at = set(crash_at)
        for step in self.crash_at:
            if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
                raise ValueError(f"crash_at holds steps 1, 2, ..., got {step!r}")
        self.steps: list[str] = []    # every step reached, crashed or not
        self.crashed: list[str] = []  # the steps that crashed
        self.dead = False

    def wrap(self, target: Any, name: str, methods: Iterable[str] | None = None) -> Any:
        """``target``, its calls (or only the named ``methods``) counted as steps."""
        if isinstance(methods, str):
            raise TypeError(f"methods must be a list of names, got {methods!r}")
        names = None if methods is None else frozenset(methods)
        for method in names or ():
            if not callable(getattr(target, method, None)):
                raise ValueError(f"{type(target).__name__} has no method {method!r}")
        return _Counted(self, target, name, names)

    def kill(self) -> None:
        self.dead = True

    def step(self, label: str) -> None:
        self.steps.append(label)
        if self.dead or len(self.steps) in self.crash_at:
            self.crashed.append(label)
            raise Crash(f"crash at step {len(self.steps)}: before {label}")


class _Counted:
    def __init__(self, faults: Faults, target: Any, name: str,
                 methods: frozenset[str] | None) -> None:
        self._faults, self._target = faults, target
        self._name, self._methods = name, methods

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._target, attribute)
        counted_here = self._methods is None or attribute in self._methods
        if not callable(value) or not counted_here:
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._faults.step(f"{self._name}.{attribute}{_about(args, kwargs)}")
            return value(*args, **kwargs)
        return counted


_TABLE = re.compile(r"\b(?:UPDATE|INTO|FROM)\s+(\w+)")


def _about(args: tuple, kwargs: dict) -> str:
    """What a call is about, for the list of steps: SQL's verb and table, or the key
    (a script's first key, not its text)."""
    first = kwargs.get("key", args[0] if args else None)
    if isinstance(first, str) and "\n" in first and len(args) > 2:
        first = args[2]  # eval(script, numkeys, key, ...)
    if isinstance(first, bytes):
        first = first.decode()
    if isinstance(first, str) and (table := _TABLE.search(first)):
        return f" {first.split()[0]} {table.group(1)}"
    return f" {first}" if isinstance(first, str) else ""
# --8<-- [end:crash]


# --8<-- [start:intercept]
class Intercept:
    """A cache or DB whose next call to ``method`` first runs ``before()``.

    A hook that raises injects a failure; a hook that runs another writer
    injects an interleaving. Every other call passes straight through.
    """

    def __init__(self, inner: Any, method: str, before: Callable[[], object]):
        if not callable(getattr(inner, method, None)):
            kind = type(inner).__name__
            raise ValueError(f"{kind} has no method {method!r} to intercept")
        self.inner, self.method, self.before = inner, method, before
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method or self.fired:
            return attr

        def intercepted(*args: Any, **kwargs: Any) -> Any:
            self.fired = True  # once: the hook may itself call this method
            self.before()
            return attr(*args, **kwargs)

        return intercepted
# --8<-- [end:intercept]
