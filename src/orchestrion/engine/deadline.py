"""`Deadline`: `asyncio.timeout` for the hot path.

Every model call gets a timeout (60 s unless a policy says otherwise), so its
cost counts. `async with asyncio.timeout(...)` schedules and cancels a timer per
call, which measured here adds about 7 µs to a call. A `Deadline` of
`COARSE` seconds or more instead joins one watch per event loop that looks at
its deadlines once a second (two dict operations per call, and a deadline may
fire up to a second late); a shorter one holds its own timer handle. Either way,
when the time runs out the task is cancelled and, on the way out, the
cancellation becomes `TimeoutError` exactly as `asyncio.timeout` does it.
"""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType

COARSE = 5.0
"""Seconds from which a deadline is watched once a second rather than timed alone."""
TICK = 1.0


class Deadline:
    __slots__ = ("_cancelling", "_handle", "_seconds", "_task", "_watch", "expired")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self.expired = False
        """Whether the time ran out (the block then raises `TimeoutError`)."""

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        loop = task.get_loop()
        self._task = task
        self._cancelling = task.cancelling()
        self._handle: asyncio.TimerHandle | None = None
        self._watch: _Watch | None = None
        if self._seconds >= COARSE:
            self._watch = _watch(loop)
            self._watch.add(loop, self, loop.time() + self._seconds)
        else:
            self._handle = loop.call_at(loop.time() + self._seconds, self.expire)
        return self

    def expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        elif self._watch is not None:
            self._watch.deadlines.pop(self, None)
        if (
            self.expired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc


class _Watch:
    """The long deadlines of one event loop, looked at once a second while there are any.
    It holds its loop weakly: a loop that is done with is not kept alive by it."""

    __slots__ = ("__weakref__", "armed", "deadlines")

    def __init__(self) -> None:
        self.deadlines: dict[Deadline, float] = {}
        self.armed = False

    def add(self, loop: asyncio.AbstractEventLoop, deadline: Deadline, when: float) -> None:
        self.deadlines[deadline] = when
        if not self.armed:
            self.armed = True
            loop.call_later(TICK, self.tick, loop)

    def tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for deadline, when in list(self.deadlines.items()):
            if when <= now:
                del self.deadlines[deadline]
                deadline.expire()
        self.armed = bool(self.deadlines)
        if self.armed:
            loop.call_later(TICK, self.tick, loop)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watch] = weakref.WeakKeyDictionary()


_last: tuple[weakref.ref[asyncio.AbstractEventLoop], _Watch] | None = None
"""The loop seen last and its watch: the usual case, one loop, skips the lookup."""


def _watch(loop: asyncio.AbstractEventLoop) -> _Watch:
    global _last
    if _last is not None and _last[0]() is loop:
        return _last[1]
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = _Watch()
    _last = (weakref.ref(loop), watch)
    return watch
