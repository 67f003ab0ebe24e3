"""What a run leaves behind: the schedule, each step as it ran, and what each actor
returned."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class Schedule(tuple[str, ...]):
    """Who ran each step, in order: printed as ``A A B B A``."""

    def __str__(self) -> str:
        return " ".join(self)

    @classmethod
    def parse(cls, text: str | Sequence[str]) -> Schedule:
        if isinstance(text, str):
            return cls(text.split())
        if isinstance(text, Sequence) and all(isinstance(name, str) for name in text):
            return cls(text)
        raise TypeError(
            f"a schedule is a string like 'A A B' or a sequence of names, got {text!r}"
        )


@dataclass(frozen=True)
class Step:
    """One atomic call, as it ran: who, on what, the command and what came back."""

    actor: str
    target: str  # "cache", "db", or a store of the world's own ("DB replica")
    op: str  # e.g. 'GET user:1' or 'UPDATE users SET name = "B" WHERE id = 1'
    result: str  # e.g. 'nil', '"old"', '1 row', 'error ConnectionError'
    failed: bool = False
    inner: tuple[
        tuple[str, str], ...
    ] = ()  # a transaction's statements and their results

    def __str__(self) -> str:
        return f"{self.actor}: {self.op} -> {self.result}"


class Returns(dict[str, Any]):
    """What each actor returned (or the exception it raised), plus when it ran: the
    index of its first and last step, so a check can ask whether one finished before
    another began."""

    def __init__(self) -> None:
        super().__init__()
        self._began: dict[str, int] = {}
        self._ended: dict[str, int] = {}
        self.timing_read = False  # whether anyone has looked at began or ended

    @property
    def began(self) -> dict[str, int]:
        """actor -> the index of its first step."""
        self.timing_read = True
        return self._began

    @property
    def ended(self) -> dict[str, int]:
        """actor -> the index of its last step."""
        self.timing_read = True
        return self._ended

    def finished_before(self, first: str, second: str) -> bool:
        """True if every step of ``first`` ran before the first step of ``second``."""
        for name in (first, second):
            if name not in self:
                raise LookupError(f"no actor named {name!r}; actors: {', '.join(self)}")
        ended, began = self.ended.get(first, -1), self.began.get(second)
        return began is not None and ended < began


@dataclass(frozen=True)
class Scenario:
    """What ``replay`` ran, so that any other schedule of it can run too (the stepper's
    trees walk them all)."""

    actors: Mapping[str, Callable[..., Any]]
    setup: Callable[..., Any] | None
    check: Callable[..., Any] | None
    make_cache: Callable[[], Any]
    make_db: Callable[[], Any]
