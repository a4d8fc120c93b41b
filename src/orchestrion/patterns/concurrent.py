"""`Concurrent`: fan out to branches at once, then aggregate what they produced."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic

from typing_extensions import TypeVar

from orchestrion import keys
from orchestrion._json import JSON
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.errors import NotEnoughBranches as NotEnoughBranches  # where users found it
from orchestrion.errors import RunError, RunHalted, UserError, describe
from orchestrion.patterns._names import check_members, check_name
from orchestrion.patterns.shape import Link, LinkKind, Shape
from orchestrion.runnable import Runnable, Workflow


@dataclass(frozen=True, slots=True)
class BranchResult:
    """What one branch produced: its output, or a description of its failure."""

    name: str
    ok: bool
    output: JSON = None
    error: JSON = None
    """`{"type", "message", ...}` when the branch failed or timed out."""

    def to_json(self) -> dict[str, JSON]:
        return {"name": self.name, "ok": self.ok, "output": self.output, "error": self.error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BranchResult:
        return cls(data["name"], data["ok"], data.get("output"), data.get("error"))


OutputT = TypeVar("OutputT", covariant=True, default=list[dict[str, JSON]])
"""The aggregator's output; without one, the list of `BranchResult.to_json()`s."""

Aggregator = Runnable[OutputT] | Callable[[list[BranchResult]], OutputT]
"""An agent or pattern (it receives the results as JSON), or a function of them."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Concurrent(Generic[OutputT]):
    """Run every branch on the same input at the same time.

    A finished branch is journaled, so a resumed run does not run it again; a
    failed or timed-out branch is retried on resume.
    With `min_success`, failed branches are described rather than fatal; the
    aggregator (an agent or pattern, receiving the results as JSON, or a
    function of `BranchResult`s) combines them. Without an aggregator the run's
    output is the list of results.
    """

    name: str
    branches: Sequence[Runnable]
    aggregator: Aggregator[OutputT] | None = None
    min_success: int | None = None
    """How many branches must succeed; default all of them."""
    timeout: float | None = None
    """Seconds each branch may take."""
    description: str = ""
    _branches: tuple[Runnable, ...] = field(init=False, repr=False)
    _keys: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """Each branch's step name (`branch-<i>`), made once: every run has them all."""

    def __post_init__(self) -> None:
        check_name("Concurrent", self.name)
        branches = check_members("Concurrent", self.name, self.branches, "branches")
        needed = len(branches) if self.min_success is None else self.min_success
        if not 0 <= needed <= len(branches):
            raise UserError(
                f"Concurrent {self.name!r}: min_success={self.min_success} is outside "
                f"0..{len(branches)} (the number of branches)."
            )
        if (
            self.aggregator is not None
            and not callable(self.aggregator)
            and not isinstance(self.aggregator, Agent | Workflow)
        ):
            raise UserError(f"Concurrent {self.name!r}: aggregator {self.aggregator!r} cannot run.")
        object.__setattr__(self, "_branches", branches)
        object.__setattr__(
            self, "_keys", tuple(keys.numbered("branch", i) for i in range(len(branches)))
        )

    async def invoke(self, ctx: RunContext[Any], input: Any) -> OutputT:
        results = await ctx.gather(
            *(
                self._branch(ctx, key, member, input)
                for key, member in zip(self._keys, self._branches, strict=True)
            )
        )
        succeeded = sum(r.ok for r in results)
        needed = len(results) if self.min_success is None else self.min_success
        if succeeded < needed:
            failures = "; ".join(
                f"{r.name}: {r.error.get('type')}: {r.error.get('message')}"
                for r in results
                if not r.ok and isinstance(r.error, dict)
            )
            raise NotEnoughBranches(
                f"Concurrent {self.name!r}: {succeeded} of {len(results)} branches succeeded, "
                f"{needed} needed. Failures: {failures}"
            )
        if self.aggregator is None:
            # OutputT is its default here: no aggregator was given to infer another.
            return [r.to_json() for r in results]  # type: ignore[return-value]
        if isinstance(self.aggregator, Agent | Workflow):
            return await ctx.run(self.aggregator, [r.to_json() for r in results], key="aggregate")
        return self.aggregator(results)

    def shape(self) -> Shape:
        """A function aggregator is part of the pattern, not a member: the branches'
        results go to the output through it."""
        branches = range(len(self._branches))
        links = [Link(None, b, "fans out") for b in branches]
        if not isinstance(self.aggregator, Agent | Workflow):
            kind: LinkKind = "output" if self.aggregator is None else "aggregates"
            return Shape(self._branches, (*links, *(Link(b, None, kind) for b in branches)))
        at = len(self._branches)
        links += [Link(b, at, "aggregates") for b in branches]
        return Shape((*self._branches, self.aggregator), (*links, Link(at, None, "output")))

    async def _branch(
        self, ctx: RunContext[Any], key: str, member: Runnable, input: JSON
    ) -> BranchResult:
        """A success is journaled as the step `key` (`branch-<i>`: a resume skips it);
        a failure is journaled as failed, so a resume tries that branch again."""
        if self.timeout is None:
            attempt: Callable[[], Awaitable[Any]] = partial(ctx.run, member, input, key=key)
        else:
            attempt = partial(_within, self.timeout, partial(ctx.run, member, input, key=key))
        try:
            output = await ctx.step(key, attempt)
        except RunHalted:
            raise  # the whole run ends (a limit, an uncertain write), not this branch
        except TimeoutError:
            error: JSON = {"type": "TimeoutError", "message": f"timed out after {self.timeout} s"}
            return BranchResult(member.name, False, error=error)
        except RunError as exc:
            return BranchResult(member.name, False, error=describe(exc))
        return BranchResult(member.name, True, output=output)


async def _within(seconds: float, run: Callable[[], Awaitable[Any]]) -> Any:
    async with asyncio.timeout(seconds):
        return await run()
