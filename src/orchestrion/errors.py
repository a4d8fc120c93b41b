"""Every error orchestrion raises, rooted at one class.

    OrchestrionError
    ├── UserError                 a definition or call is wrong; raised before any model call
    │   ├── TargetError           `orchestrion run TARGET` cannot load TARGET
    │   ├── ModelNotFound         a model string names no known provider
    │   ├── RunNotFound           no run has that id
    │   ├── StoreNotFound         a store opened for reading does not exist
    │   ├── RunNotResumable       the run is completed or cancelled
    │   │   └── RunBusy           another process holds the run's lease
    │   ├── AnswerError           an answer does not fit its interrupt
    │   └── ModelRequestsBlocked  a real model request while tests forbid them
    ├── DeterminismError          a step key used twice, or another path on resume
    ├── StoreError                the store cannot be read or written
    │   └── LeaseLost             this process no longer owns the run it writes
    ├── FakeModelError            a test fake found the test wrong (an AssertionError too)
    └── RunError                  a run failed while it worked
        ├── ModelError            the model provider failed or answered nonsense
        ├── BreakerOpen           a circuit is open: the call failed at once, unsent
        ├── RateLimited           a call waited for its model's RateLimit (journaled)
        ├── RetryLater            raised by a tool: a transient failure, try again
        ├── ToolError             a tool raised
        ├── OutputValidationError the model's final output kept failing validation
        ├── MaxTurnsExceeded      the agent used all its turns
        ├── MaxHandoffsExceeded   a Handoff's agents kept transferring past max_handoffs
        ├── RoundsExceeded        a PeerNetwork's agents kept messaging past max_rounds
        ├── PeerFailed            an agent of a PeerNetwork spread over workers failed
        ├── NotEnoughBranches     fewer Concurrent branches succeeded than min_success
        ├── UnknownSpeaker        a GroupChat's speaker policy chose no participant
        ├── RunHalted             ends the whole run; patterns pass it on
        │   ├── WriteUncertain    a write tool was cut off: its effect is unknown
        │   ├── NestingTooDeep    members nested past the limit (a workflow running itself)
        │   └── RunLimitReached   a limit of the whole run (status `stopped`)
        │       ├── RateLimitReached  a model's RateLimit would make a call wait too long
        │       ├── BudgetExceeded  the run reached a limit of its Budget
        │       └── LoopDetected    an agent or a pattern kept going in circles
        ├── ContextTooLarge       a request is over the agent's ContextLimit
        └── RunFailed             reading the output of a run that failed
            └── NoOutput          ... of a run that has none (waiting, cancelled, running)

`Suspension` is not an error and not an `OrchestrionError`: it passes through a
run's code while the run stops to wait for humans.

Errors are plain data: constructing one has no side effects.
"""

from __future__ import annotations

import os
import sysconfig
import time
import traceback
from typing import Any

import pydantic

from orchestrion.redact import redact


class OrchestrionError(Exception):
    """Root of every error raised by orchestrion."""


class UserError(OrchestrionError):
    """A definition or API call is wrong; fix the code or the command."""


class TargetError(UserError):
    """A run target (`path.py:attr` or `module:attr`) cannot be loaded."""


class ModelNotFound(UserError):
    """A model string does not name a known provider."""


class RunNotFound(UserError):
    """No run with the given id exists in the store."""

    def __init__(self, run_id: str, store: str = "") -> None:
        where = f" in {store}" if store else ""
        super().__init__(
            f"No run with id {run_id!r}{where}. List runs with `orchestrion runs` "
            "or check the --store URL."
        )
        self.run_id = run_id


class StoreNotFound(UserError):
    """A store opened read-only (`orchestrion runs`, `show`) does not exist."""


class RunNotResumable(UserError):
    """The run cannot be resumed because it already ended for good."""


class RunBusy(RunNotResumable):
    """Another process holds a live lease on the run: it is working on it now."""

    def __init__(self, run_id: str, owner: str, since: float, until: float) -> None:
        super().__init__(
            f"Run {run_id} is being worked on by {owner} (since {_clock(since)}); its lease "
            f"ends at {_clock(until)} unless renewed. Wait for it (resume with --wait SECONDS), "
            f"or, if that process is gone, resume after {_clock(until)}."
        )
        self.run_id = run_id
        self.owner = owner
        self.since = since
        self.until = until


def _clock(epoch: float) -> str:
    """A moment as local date and time to the second, for messages."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


class AnswerError(UserError):
    """An answer to an interrupt does not fit what the interrupt expects."""


class ModelRequestsBlocked(UserError):
    """A real model request was attempted while `orchestrion.testing` forbids them."""


class DeterminismError(OrchestrionError):
    """The orchestration code used one step key twice in a run, or took another
    path on resume than the journal's (a new step where journaled ones go unasked).

    Step keys come from where a step sits in the code; a repeat or a new path means
    the code is not deterministic (or two steps need distinct names).
    """


class StoreError(OrchestrionError):
    """The store cannot be opened, read or written."""


class LeaseLost(StoreError):
    """A write carried a fencing token that is no longer the run's: another
    process claimed the run (this one's lease had ended) or cancelled it. The
    write was refused; this process must stop working on the run."""

    def __init__(self, message: str, *, run_id: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id


def lease_lost(run_id: str, token: int, current: int | None) -> LeaseLost:
    """The refusal of a write of `run_id` carrying `token` while the run's is `current`."""
    return LeaseLost(
        f"Run {run_id} is no longer owned by this process: its write carried fencing token "
        f"{token}, the run's is now {current}. Another process claimed it (this process's "
        "lease had ended) or cancelled it; this process stops working on it. See "
        f"`orchestrion show {run_id}`.",
        run_id=run_id,
    )


class FakeModelError(OrchestrionError, AssertionError):
    """A fake model of `orchestrion.testing` found the test wrong: a `ScriptedModel`
    asked past the end of its script, or a check (`assert`) in a `FunctionModel`'s
    function failed. The step fails with it as it is (no retry, no fallback model),
    and the run raises it. An `AssertionError` too, so that test runners report it
    as a failed check and `pytest.raises(AssertionError)` catches it."""


class Suspension(Exception):  # not an error: the run waits
    """Passes through the run's code while the run stops to wait for humans (an
    interrupt, an approval). Code that catches `Exception` around steps must let it
    through (`except Suspension: raise`) for the run to wait rather than fail."""


class RunError(OrchestrionError):
    """A run failed while working. `to_json()` gives the journaled form."""

    def to_json(self) -> dict[str, Any]:
        chain: list[dict[str, str]] = []
        cause: BaseException | None = self.__cause__
        while cause is not None and len(chain) < 10:
            chain.append({"type": type(cause).__name__, "message": redact(str(cause))})
            cause = cause.__cause__
        return {"type": type(self).__name__, "message": redact(str(self)), "cause_chain": chain}


class ModelError(RunError):
    """The model provider failed, or its answer could not be understood."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The HTTP status; None when no HTTP answer came back."""
        self.retry_after = retry_after
        """Seconds the provider asked to wait (Retry-After), if it did."""
        self.transient = transient
        """Trying again later may succeed: 408/409/429/5xx, connection errors, timeouts."""

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data.update(
            status_code=self.status_code, retry_after=self.retry_after, transient=self.transient
        )
        return data


class BreakerOpen(RunError):
    """The circuit of a model or tool is open: the call failed without being sent."""

    def __init__(self, message: str, *, name: str, probe_in: float) -> None:
        super().__init__(message)
        self.name = name
        """The breaker's key: a model name or `tool:<name>`."""
        self.probe_in = probe_in
        """Seconds until the circuit lets a probe call through."""

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data.update(breaker=self.name, probe_in=round(self.probe_in, 3))
        return data


class RetryLater(RunError):
    """Raise it from a tool to say the failure is transient (the service is busy or
    down): a tool whose policy has a `Retry` is called again, after `retry_after`
    seconds if given."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data.update(retry_after=self.retry_after)
        return data


class ToolError(RunError):
    """A tool raised an exception the model was not meant to handle. Its journaled
    form also says where that exception came from: `where` (file:line of the raise)
    and `traceback`, the last frames from the tool's code on (redacted)."""

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        frames = _tool_frames(self.__cause__)
        if frames:
            last = frames[-1]
            data["where"] = redact(f"{last.filename}:{last.lineno}")
            data["traceback"] = [
                redact(f"{f.filename}:{f.lineno} in {f.name}" + (f": {f.line}" if f.line else ""))
                for f in frames[-_TRACEBACK_FRAMES:]
            ]
        return data


_TRACEBACK_FRAMES = 8
_PLUMBING = (
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "engine") + os.sep,
    os.path.join(sysconfig.get_paths()["stdlib"], "asyncio") + os.sep,
    os.path.join(sysconfig.get_paths()["stdlib"], "concurrent") + os.sep,
)
"""Where the frames that call a tool live (the engine, asyncio, a thread pool)."""


def _tool_frames(exc: BaseException | None) -> list[traceback.FrameSummary]:
    """The frames of `exc`'s traceback from the first one outside the plumbing that
    called the tool: the tool's own, and what it called."""
    if exc is None or exc.__traceback__ is None:
        return []
    frames = traceback.extract_tb(exc.__traceback__)
    start = 0
    while start < len(frames) and frames[start].filename.startswith(_PLUMBING):
        start += 1
    return list(frames[start:])


class OutputValidationError(RunError):
    """The model's final output failed validation more often than allowed."""


class MaxTurnsExceeded(RunError):
    """An agent reached `max_turns` without a final answer."""


class MaxHandoffsExceeded(RunError):
    """The agents of a `Handoff` kept transferring control past its `max_handoffs`."""


class RoundsExceeded(RunError):
    """The agents of a `PeerNetwork` kept messaging past its `max_rounds`."""


class PeerFailed(RunError):
    """An agent of a `PeerNetwork` whose agents run as separate runs (`mailboxes=`)
    failed: its run's error is in the message, and the network fails with it."""


class NotEnoughBranches(RunError):
    """Fewer branches of a `Concurrent` succeeded than its `min_success` asks for."""


class UnknownSpeaker(RunError):
    """The speaker policy of a `GroupChat` named someone who is not in the chat."""


class ContextTooLarge(RunError):
    """A model request is larger than the agent's `ContextLimit` allows."""


class RunHalted(RunError):
    """Ends the whole run wherever it is raised: a pattern passes it on instead of
    counting the branch or worker that raised it as failed."""


class WriteUncertain(RunHalted):
    """A write tool was cut off (its own timeout, its branch's): whether its effect
    happened is unknown. The run fails; a resume executes the call again with the
    same idempotency key, never as a new call."""


class NestingTooDeep(RunHalted):
    """Members are nested deeper than `engine.dispatch.MAX_NESTING` (a workflow or
    agent that runs itself without end): the run fails with one line, not a
    RecursionError."""


class RunLimitReached(RunHalted):
    """A limit of the whole run: a branch, worker or tool that meets it does not
    fail alone; the run ends (and a resume with a larger limit goes on)."""


class LoopDetected(RunLimitReached):
    """A `LoopGuard` stopped the run: an agent repeating a tool call, delegations
    returning the same results, a handoff bouncing, a chat or network without progress."""


class RateLimitReached(RunLimitReached):
    """A model's `RateLimit` would make a call wait longer than its `max_wait`: the
    run stops (resumable once the allowance has refilled)."""

    def __init__(self, message: str, *, key: str, wait: float) -> None:
        super().__init__(message)
        self.key = key
        self.wait = wait

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data.update(rate_limit=self.key, wait=round(self.wait, 3))
        return data


class RateLimited(RunError):
    """A call waited for its model's `RateLimit` (journaled as a wait before an
    attempt, like a retry's)."""


class BudgetExceeded(RunLimitReached):
    """The run reached a limit of its `Budget`; `budget` names the limit."""

    def __init__(self, message: str, *, budget: str, steps_done: int) -> None:
        super().__init__(message)
        self.budget = budget
        self.steps_done = steps_done

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data.update(budget=self.budget, steps_done=self.steps_done)
        return data


class RunFailed(RunError):
    """The output of a failed (or stopped) run was read; `error` is the journaled cause."""

    def __init__(self, run_id: str, error: dict[str, Any], status: str = "failed") -> None:
        super().__init__(f"Run {run_id} {status}: {error.get('type')}: {error.get('message')}")
        self.run_id = run_id
        self.error = error


class NoOutput(RunFailed):
    """The output of a run that has none was read: it waits for a human, was
    cancelled, or has not finished. Check `RunResult.status` first."""

    def __init__(self, run_id: str, status: str, why: str) -> None:
        super().__init__(run_id, {"type": "NoOutput", "message": why}, status)


def describe(exc: BaseException) -> dict[str, Any]:
    """The journaled form of any exception that ended a run."""
    if isinstance(exc, RunError):
        return exc.to_json()
    return {"type": type(exc).__name__, "message": redact(str(exc)), "cause_chain": []}


def validation_summary(exc: pydantic.ValidationError) -> str:
    """`field.sub: message; ...` for a pydantic validation error, one line."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
