"""Catching orchestration code that takes another path on resume.

A step key is a path (`wf/agent/turn-2/model`); each prefix is a *scope*. The
children of one scope are asked for by one sequential thread (a workflow's
function, an agent's loop), except below a gather, whose branches ask
concurrently. On resume, code that asks for a step the journal knows nothing
about has, if it is deterministic, reached the place where the run stopped, and
has asked again for every child of that scope that it asked for before. So a
journaled child of the same scope that was never asked for means that the code
went another way (a step named from `random` or the clock, a member picked at
random): the new step is refused before it runs.

Where that cannot be told, the check stays silent:

- below a gather, unless a key claimed inside one branch owns the scope;
- in a task the engine did not start (a user's own `asyncio.gather`): its
  siblings may not have started yet;
- in a scope where a step that had failed runs again: its new outcome may
  rightly send the code elsewhere.

A `ctx.step` function may ask for steps of its own scope (`ctx.run` of an agent
without a key, say). So a replayed step passes over the children journaled
before it completed, and a new one is compared with completed steps of its
scope only, not with what it may be about to ask for itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any, NamedTuple

from orchestrion import keys
from orchestrion.engine.journal import Entry, StepStatus
from orchestrion.errors import DeterminismError


class Thread(NamedTuple):
    """A task that runs sequential orchestration code, and the scope its steps sit under."""

    task: asyncio.Task[Any] | None
    scope: str


THREAD: ContextVar[Thread | None] = ContextVar("orchestrion_thread", default=None)
"""Set by the engine for a run's task and for each branch of a gather it starts."""


class Journaled(NamedTuple):
    seq: int
    key: str


class Divergence:
    """Where the journal's steps sit, and which of them this execution asked for."""

    __slots__ = ("_forks", "_open", "_redone", "_replay", "_touched", "_under", "waiting")

    def __init__(self, entries: Iterable[Entry], replay: Mapping[str, Entry]) -> None:
        self._replay = replay
        """The latest entry of every journaled key."""
        self._under: set[str] = set()
        """Every journaled key and each of its scopes."""
        self._open: dict[str, dict[str, Journaled]] = {}
        """Per scope, its children with journaled steps that no claim has reached
        yet, each with its first journaled step, in journal order."""
        self._touched: set[str] = set()
        """Every claimed key and each of its scopes."""
        self._redone: set[str] = set()
        """Scopes of the steps that had failed and ran again."""
        self._forks: dict[str, int] = {}
        """Scopes with a gather running, and how many."""
        for e in entries:  # in journal order
            child = e.key
            while child not in self._under:
                self._under.add(child)
                scope = keys.parent(child)
                if scope is None:
                    break
                self._open.setdefault(scope, {})[child] = Journaled(e.seq, e.key)
                child = scope
        self.waiting = bool(self._open)
        """Whether journaled steps are left that no claim has reached (an attribute,
        not a property: read at every claim; `_open` only shrinks, and each place
        that empties a scope of it sets this again)."""

    def forked(self, scope: str, change: int) -> None:
        """A gather of steps under `scope` starts (+1) or ends (-1)."""
        count = self._forks.get(scope, 0) + change
        if count:
            self._forks[scope] = count
        else:
            del self._forks[scope]

    def asked(
        self, key: str, claimed: Mapping[str, str], run_id: str, *, nests: bool = False
    ) -> None:
        """`key` is claimed; `nests`: it is a `ctx.step`, whose function may claim
        more. Raise `DeterminismError` if it is a new step off the journal's path."""
        path = keys.unmarked(key)
        entry = self._replay.get(key)
        if entry is None:
            if not keys.is_scope_marker(key) and key not in self._under:  # a new step, not a scope
                self._check(key, claimed, run_id, nests)
        elif entry.status is StepStatus.FAILED:
            self._mark(self._redone, path)
        elif nests and entry.status is StepStatus.COMPLETED:
            self._passed(path, entry.seq)
        self._reach(path)

    def skipped(self, scope: str, *, besides: str | None = None) -> None:
        """The journaled steps under `scope` (but not those under `besides`) will not be
        asked for, and rightly: a replayed decision made them moot (an agent gave up)."""

        def inside(key: str, top: str | None) -> bool:
            return top is not None and keys.is_within(key, top)

        for level in [s for s in self._open if inside(s, scope) and not inside(s, besides)]:
            children = self._open[level]
            for child in [c for c in children if not inside(c, besides)]:
                del children[child]
            if not children:
                del self._open[level]
        self.waiting = bool(self._open)

    def _check(self, key: str, claimed: Mapping[str, str], run_id: str, nests: bool) -> None:
        scope = key
        while scope not in self._under:  # the deepest scope the journal has steps under
            above = keys.parent(scope)
            if above is None:
                return
            scope = above
        children = self._open.get(scope)
        if not children or scope in self._redone or not self._sequential(scope, key, claimed):
            return
        # What a new `ctx.step`'s own function may yet ask for sits beside it: compare
        # it with completed steps of its scope only.
        nests = nests and scope == keys.parent(key)
        first = next((j for c, j in children.items() if not nests or self._completed(c)), None)
        if first is None:
            return
        raise DeterminismError(
            f"Run {run_id} took another path on resume: it asks for step {key!r}, which its "
            f"journal does not have, while {first.key!r}, journaled in the same scope "
            f"{scope!r}, was never asked for. Nothing ran for {key!r}. The code decides "
            "differently from the run that started it (random, the clock, uuids, an outside "
            "call): take such values from ctx.now(), ctx.random() or ctx.uuid(), which are "
            "journaled, and name steps and pick members from journaled data only. To change "
            f"the course of this run on purpose, fork it: `orchestrion fork {run_id} --at "
            f"{first.key}`."
        )

    def _completed(self, child: str) -> bool:
        """Whether `child` is itself a completed step (not only the scope of some)."""
        entry = self._replay.get(child)
        return entry is not None and entry.status is StepStatus.COMPLETED

    def _sequential(self, scope: str, key: str, claimed: Mapping[str, str]) -> bool:
        """Whether one sequential thread, the current task's, asks for the children of `scope`."""
        thread = THREAD.get()
        if thread is None or thread.task is not asyncio.current_task():
            return False  # concurrency the engine did not start
        if thread.scope and not keys.is_below(key, thread.scope):
            return False  # a branch stepping outside its gather's scope
        for fork in self._forks:
            if not keys.is_within(scope, fork):
                continue
            # Below a gather, `scope` is one branch's own only if a key that branch
            # claimed lies between them (its `ctx.run` scope, its tool call, its step).
            owner = scope
            while (
                len(owner) > len(fork)
                and owner not in claimed
                and keys.scope_marker(owner) not in claimed
            ):
                owner = keys.parent(owner) or ""
            if len(owner) <= len(fork):
                return False
        return True

    def _passed(self, path: str, seq: int) -> None:
        """A replayed `ctx.step` at `path`, completed at `seq`, did not run its function:
        the children of its scope journaled before then may be what that function asked for."""
        scope = keys.parent(path)
        children = self._open.get(scope) if scope is not None else None
        if scope is None or not children:
            return
        stale = []
        for child, first in children.items():  # in journal order
            if first.seq >= seq:
                break
            stale.append(child)
        for child in stale:
            del children[child]
        if not children:
            del self._open[scope]
            self.waiting = bool(self._open)

    def _reach(self, path: str) -> None:
        touched, open_ = self._touched, self._open
        child = path
        while child not in touched:
            touched.add(child)
            scope = keys.parent(child)
            if scope is None:
                return
            children = open_.get(scope)
            if children is not None and children.pop(child, None) is not None and not children:
                del open_[scope]
                self.waiting = bool(open_)
            child = scope

    @staticmethod
    def _mark(into: set[str], path: str) -> None:
        while path and path not in into:
            into.add(path)
            path = keys.parent(path) or ""


NO_DIVERGENCE = Divergence((), {})
"""A run's with an empty journal (every new run's): there is nothing to compare, and
one object serves them all. It stays empty: `asked` and `forked` are called only
while `waiting`, which is False here, and `skipped` finds nothing to remove."""
