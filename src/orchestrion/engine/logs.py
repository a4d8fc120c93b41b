"""What runs log: standard `logging` records under `orchestrion.run`, made from
the run's events, each carrying `run_id` and, for a step, `step_key` and `agent`.

INFO: a run starts, ends, waits for a human, hands off. WARNING: a retry, a fallback,
a circuit that opens, a loop found, a step that fails. DEBUG: every step executed.
Nothing is printed unless the application configures logging (the package's logger
has a `NullHandler`); `orchestrion ... --log-format json` writes one JSON object a
line (`cli.logs`). Error texts are redacted when their events are made.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from orchestrion import keys
from orchestrion.engine.events import Events, Relay
from orchestrion.redact import redact

if TYPE_CHECKING:
    from orchestrion._json import JSON
    from orchestrion.engine.result import RunResult

log = logging.getLogger("orchestrion.run")
_PACKAGE = logging.getLogger("orchestrion")
_ROOT = logging.getLogger()


def logged(inner: Events, run_id: str) -> Events:
    """The run's events, each also logged: `inner` itself when no record would be
    kept (the logger is not enabled for WARNING, or no handler but a `NullHandler`
    would get its records: the default, which costs a run nothing)."""
    if not _handled() or not log.isEnabledFor(logging.WARNING):
        return inner
    return LoggedEvents(inner, run_id, log.isEnabledFor(logging.DEBUG))


class LoggedEvents(Relay):
    """`Events` that also log (see the module's docstring)."""

    __slots__ = ("debug", "run_id")

    def __init__(self, inner: Events, run_id: str, debug: bool) -> None:
        super().__init__(inner, listening=debug)  # DEBUG logs every step's end
        self.run_id = run_id
        self.debug = debug

    def _at(self, key: str) -> dict[str, object]:
        return {"run_id": self.run_id, "step_key": key, "agent": keys.parse(key).agent}

    def run_started(self, name: str, resumed: bool) -> None:
        self.inner.run_started(name, resumed)
        how = "resumed" if resumed else "started"
        log.info("run %s %s (%s)", self.run_id, how, name, extra={"run_id": self.run_id})

    def step_completed(self, key: str, kind: str, result: JSON, started_at: float) -> None:
        self.inner.step_completed(key, kind, result, started_at)
        if self.debug:
            took = time.time() - started_at
            log.debug("%s step %s done in %.3f s", kind, key, took, extra=self._at(key))

    def step_failed(self, key: str, kind: str, error: BaseException) -> None:
        self.inner.step_failed(key, kind, error)
        log.warning("%s step %s failed: %s", kind, key, _text(error), extra=self._at(key))

    def retrying(
        self, key: str, kind: str, target: str, attempt: int, error: BaseException, wait: float
    ) -> None:
        self.inner.retrying(key, kind, target, attempt, error, wait)
        log.warning(
            "%s attempt %d at %s failed, retried in %.2f s: %s",
            target, attempt, key, wait, _text(error), extra=self._at(key),
        )  # fmt: skip

    def fallback_used(self, key: str, failed: str, used: str, error: BaseException) -> None:
        self.inner.fallback_used(key, failed, used, error)
        log.warning(
            "%s gave up at %s, %s takes over: %s", failed, key, used, _text(error),
            extra=self._at(key),
        )  # fmt: skip

    def breaker_changed(self, key: str, name: str, old: str, new: str) -> None:
        self.inner.breaker_changed(key, name, old, new)
        level = logging.WARNING if new == "open" else logging.INFO
        log.log(level, "circuit %s: %s -> %s", name, old, new, extra=self._at(key))

    def loop_guard_triggered(
        self,
        key: str,
        kind: str,
        subject: str,
        times: int,
        action: str,
        replayed: bool = False,
    ) -> None:
        self.inner.loop_guard_triggered(key, kind, subject, times, action, replayed)
        if replayed:
            return  # seen when it happened
        log.warning(
            "loop guard at %s: %s loop on %s (%d times), %s", key, kind, subject, times, action,
            extra=self._at(key),
        )  # fmt: skip

    def transferred(
        self, key: str, source: str, target: str, reason: str, replayed: bool = False
    ) -> None:
        self.inner.transferred(key, source, target, reason, replayed)
        if replayed:
            return  # seen when it happened
        extra = {**self._at(key), "agent": source}
        log.info("%s hands off to %s at %s", source, target, key, extra=extra)

    def run_finished(self, result: RunResult[object]) -> None:
        self.inner.run_finished(result)
        run = {"run_id": self.run_id}
        for interrupt in result.interrupts:
            log.info(
                "run %s waits for a human: %s %s at %s", self.run_id, interrupt.kind,
                interrupt.id, interrupt.key, extra={**run, "step_key": interrupt.key},
            )  # fmt: skip
        if not result.error and not log.isEnabledFor(logging.INFO):
            return
        usage = result.usage
        tokens = f"{usage.input_tokens}+{usage.output_tokens} tokens"
        cost = f", ${usage.cost:.4f}" if usage.cost else ""
        status = result.status.value
        if result.error:
            why = redact(f": {result.error.get('type')}: {result.error.get('message')}")
            log.warning("run %s %s%s (%s%s)", self.run_id, status, why, tokens, cost, extra=run)
        else:
            log.info("run %s %s (%s%s)", self.run_id, status, tokens, cost, extra=run)


def _handled() -> bool:
    """Whether a handler other than a `NullHandler` may hear `log`: one on the root
    logger, on `log`, or on the package's logger. Asked for every run, so written
    for the unconfigured case (no handler anywhere but the package's `NullHandler`)."""
    if _ROOT.handlers or log.handlers:
        return True
    for handler in _PACKAGE.handlers:  # noqa: SIM110 (a loop: no generator made every run)
        if type(handler) is not logging.NullHandler:
            return True
    return False


def _text(error: BaseException) -> str:
    return redact(f"{type(error).__name__}: {error}")
