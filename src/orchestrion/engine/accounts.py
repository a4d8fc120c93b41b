"""`Accounts`: what one run spent, and the limits it is held to.

The usage of its model requests (replayed ones included: a resumed run counts
what it spent before), its `Budget` (priced with the runtime's `Prices`), and
how often each tool ran, for `Tool.max_calls`.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable

from orchestrion import keys
from orchestrion.budget import Budget
from orchestrion.engine.journal import StepStatus
from orchestrion.engine.records import ModelResponded, expect
from orchestrion.engine.replay_log import ReplayLog
from orchestrion.engine.tool_limits import ToolRuns
from orchestrion.errors import BudgetExceeded, UserError
from orchestrion.messages import Usage
from orchestrion.pricing import Prices

NO_USAGE = Usage()
"""What a run starts with (a `Usage` is immutable: one serves every run)."""


class Accounts:
    """What the run of `log` spent and may spend."""

    __slots__ = (
        "_log",
        "_model_keys",
        "_model_usage",
        "budget",
        "created_at",
        "prices",
        "tool_runs",
        "usage",
    )

    def __init__(
        self,
        log: ReplayLog,
        *,
        budget: Budget | None = None,
        prices: Prices | None = None,
        created_at: float = 0.0,
    ) -> None:
        self._log = log
        """Where the replayed model steps are, and how many steps the run took."""
        self.budget = budget
        self.prices = prices
        self.created_at = created_at
        """When the run was created: its `Budget.seconds` count from there."""
        self.usage = NO_USAGE
        """What the run spent so far, replayed steps included."""
        self.tool_runs = ToolRuns(log.replay)
        """Which calls of each tool ran, for `Tool.max_calls`."""
        self._model_keys: list[str] | None = None
        self._model_usage: list[Usage] = []

    def spent(self, usage: Usage) -> None:
        """Count `usage`, of a model request made or replayed."""
        self.usage += usage

    def spent_below(self, key: str, *, besides: str | None = None) -> None:
        """Count the usage of the journaled model steps below `key` (except those
        below `besides`): a replayed step that skips its children (a delegation, a
        branch) still counts what they spent."""
        self.usage += self.usage_under(key, besides=besides)

    def usage_under(self, key: str, *, besides: str | None = None) -> Usage:
        """Usage of the journaled model steps below `key` (except those below `besides`)."""
        if self._model_keys is None:  # built once per resume, on first need
            models = sorted(
                (k, expect(e, ModelResponded).response.usage)
                for k, e in self._log.replay.items()
                if e.kind == "model" and e.status is StepStatus.COMPLETED
            )
            self._model_keys = [k for k, _ in models]
            self._model_usage = [u for _, u in models]
        start, end = self._span(key)
        skip_start, skip_end = self._span(besides) if besides is not None else (end, end)
        total = Usage()
        for usage in self._model_usage[start:skip_start] + self._model_usage[skip_end:end]:
            total += usage
        return total

    def _span(self, key: str) -> tuple[int, int]:
        """Where the model keys below `key` lie in the sorted `_model_keys`."""
        assert self._model_keys is not None
        below = keys.below(key)
        start = bisect.bisect_left(self._model_keys, below.start)
        return start, bisect.bisect_left(self._model_keys, below.stop)

    def check_budget(self, model: str | None, *, ahead: float = 0.0) -> None:
        """Raise `BudgetExceeded` if the run's budget is spent (before a call of
        `model`, if given), or will be after `ahead` more seconds (before a retry's wait)."""
        budget = self.budget
        if budget is None:
            return
        if budget.cost is not None and model is not None:
            self._check_price(budget.cost, model)
        run_id, steps = self._log.run_id, self._log.steps
        reached = budget.exceeded(self.usage, steps, time.time() + ahead - self.created_at)
        if reached is not None:
            limit, what = reached
            if ahead and limit == "seconds":
                what = f"would pass {budget.seconds:g} s during a retry wait of {ahead:.1f} s"
            raise BudgetExceeded(
                f"Run {run_id} stopped before its next {'model ' if model else ''}call: it {what} "
                f"(Budget {limit}). Its {steps} steps are kept in the journal; "
                f"{budget.raise_hint(limit, run_id)}.",
                budget=limit,
                steps_done=steps,
            )

    def check_priced(self, models: Iterable[str]) -> None:
        """Raise `UserError` if the budget has a cost limit and one of `models` has
        no price (a fallback model must be priced before it is needed)."""
        if self.budget is not None and self.budget.cost is not None:
            for model in models:
                self._check_price(self.budget.cost, model)

    def _check_price(self, cost: float, model: str) -> None:
        if self.prices is None or self.prices.pricer(model) is None:
            raise UserError(
                f"Budget cost={cost:g} cannot be kept: model {model!r} has no known "
                f"price. Give it one: Runtime(prices={{{model!r}: Price(input=..., "
                "output=...)}) in USD per million tokens."
            )
