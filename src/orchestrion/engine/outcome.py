"""A run's execution, from its first step to the status it stops at."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from orchestrion import keys
from orchestrion._json import JSON
from orchestrion.engine.dispatch import partial_outputs, run_child
from orchestrion.engine.execution import Execution, Suspended, journaled
from orchestrion.engine.journal import RunRecord, RunStatus
from orchestrion.engine.queue import unanswered
from orchestrion.engine.replay_log import StepsStopped
from orchestrion.engine.result import RunResult, described
from orchestrion.errors import (
    AnswerError,
    DeterminismError,
    RunError,
    RunLimitReached,
    StoreError,
)
from orchestrion.runnable import Runnable


class End(Protocol):
    """Writes the run's new status under its lease, and lets the lease go
    (`Runtime._end`)."""

    def __call__(
        self,
        ex: Execution,
        status: RunStatus,
        *,
        output: JSON = None,
        error: JSON = None,
        pending: list[JSON] | None = None,
        usage: list[JSON] | None = None,
    ) -> Awaitable[None]: ...


async def work(
    ex: Execution, record: RunRecord, runnable: Runnable, end: End, cancelling: set[str]
) -> RunResult[Any]:
    """Execute run `record` of `runnable` to where it stops working, and write how it
    stands with `end`: completed, waiting for humans, stopped at a limit, failed,
    or (`Runtime.cancel`, whose runs are in `cancelling`) cancelled."""
    run_id = record.id
    try:
        value = await run_child(ex, "", keys.child("", runnable.name), runnable, record.input)
        output = journaled(value, "output", f"Run {run_id}")
        if ex.answers:
            raise DeterminismError(
                f"Run {run_id} finished without reaching the interrupts answered "
                f"({sorted(ex.answers)}): the code differs from the code that started it."
            )
    except Suspended as suspended:
        pending: list[JSON] = [i.to_json() for i in suspended.interrupts]
        await end(ex, RunStatus.INTERRUPTED, pending=pending)
        return RunResult(
            run_id,
            RunStatus.INTERRUPTED,
            interrupts=tuple(suspended.interrupts),
            usage=ex.accounts.usage,
        )
    except AnswerError as exc:
        # Answers validated before the bad one were journaled: they no longer wait.
        # The others wait again, without the answers kept for them.
        pending = unanswered(record.pending, ex.answered)
        await end(
            ex, RunStatus.INTERRUPTED, pending=pending, usage=record.usage, error=described(exc)
        )
        raise
    except RunLimitReached as exc:
        partial = partial_outputs(ex.outputs)
        error = {**described(exc), "partial": partial}
        await end(ex, RunStatus.STOPPED, error=error)
        return RunResult(
            run_id, RunStatus.STOPPED, error=error, partial=partial, usage=ex.accounts.usage
        )
    except RunError as exc:
        error = described(exc)
        await end(ex, RunStatus.FAILED, error=error)
        return RunResult(run_id, RunStatus.FAILED, error=error, usage=ex.accounts.usage)
    except asyncio.CancelledError:
        # Only `Runtime.cancel` ends a run for good. Any other cancellation (Ctrl-C,
        # a caller's timeout, shutdown) is a crash: the run stays resumable.
        if run_id in cancelling:
            cancelling.discard(run_id)
            await asyncio.shield(end(ex, RunStatus.CANCELLED))
        raise
    except BaseException as exc:
        if isinstance(exc, BaseExceptionGroup) and exc.split(StepsStopped)[1] is None:
            raise StepsStopped(str(exc)) from exc  # every branch stopped at a boundary
        # A bug or a configuration mistake: keep the store honest, then surface it.
        if not isinstance(exc, StoreError | StepsStopped):
            await end(ex, RunStatus.FAILED, error=described(exc))
        raise
    await end(ex, RunStatus.COMPLETED, output=output)
    return RunResult(run_id, RunStatus.COMPLETED, value=value, usage=ex.accounts.usage)
