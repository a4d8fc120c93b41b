"""Model requests under their policies: the model path of the attempt loop
(`engine.resilience`), over an agent's chain of fallback models.

A failed attempt is journaled with the model, the attempt number and what came
next: a retry (`retry_in`) or the next model of the chain (`fallback`); neither
means the step failed. The completed entry names the fallback model that
answered, if one did (`ModelResponded.fallback`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from orchestrion._json import clean_text
from orchestrion.agent import Agent
from orchestrion.engine.events import Events
from orchestrion.engine.resilience import Failure, Target, attempt_loop, journal_attempt
from orchestrion.errors import BreakerOpen, ModelError, OrchestrionError, RetryLater
from orchestrion.messages import ModelRequest, ModelResponse, TextDelta
from orchestrion.models.base import Model
from orchestrion.models.with_policy import PolicyModel
from orchestrion.policy import (
    MODEL_TIMEOUT,
    Policy,
    Retry,
    Settings,
    is_transient,
    retry_after,
    status_code,
)

if TYPE_CHECKING:
    from orchestrion.engine.execution import Execution

MODEL_DEFAULTS = Policy(timeout=MODEL_TIMEOUT, retry=Retry())
DEFAULT_SETTINGS = MODEL_DEFAULTS.settings()


def model_chain(ex: Execution, agent: Agent[Any]) -> ModelCalls:
    """The agent's model and its fallback models, each with its resolved settings."""
    env = ex.env
    primary = env.model_for(agent.model, agent.name)
    outer = agent.policy.over(env.policy) if agent.policy is not None else env.policy
    if outer is None and not isinstance(primary, PolicyModel):
        name = primary.name  # a `name` may be computed: once
        return ModelCalls((primary,), (Target(name, name, DEFAULT_SETTINGS),), agent.name)
    own = primary.policy if isinstance(primary, PolicyModel) else None
    models = [primary]
    for policy in (own, agent.policy, env.policy):  # the innermost fallback models win
        if policy is not None and policy.fallback is not None:
            found = [f for f in policy.fallback if not isinstance(f, Agent)]
            if found or not policy.fallback:
                models += [env.model_for(f, agent.name) for f in found]  # type: ignore[arg-type]
                break
    targets = []
    for m in models:
        name = m.name  # a `name` may be computed: once each
        policy = m.policy.over(outer) if isinstance(m, PolicyModel) else outer
        targets.append(Target(name, name, model_settings(policy)))
    return ModelCalls(tuple(models), tuple(targets), agent.name)


def model_settings(policy: Policy | None) -> Settings:
    return (MODEL_DEFAULTS if policy is None else policy.over(MODEL_DEFAULTS)).settings()


def request_with_policy(
    ex: Execution, key: str, chain: ModelCalls, request: ModelRequest
) -> Awaitable[ModelResponse]:
    """The response of the first model of `chain` that answers (which one:
    `chain.position`)."""
    chain.request = request
    return attempt_loop(ex, key, chain)


class ModelCalls:
    """The model path of the attempt loop: an agent's model, then its fallback models,
    each with the settings its calls get. Made once per agent run (its model
    requests are made one after the other), it is given each request in turn."""

    __slots__ = ("agent", "models", "position", "request", "site", "started", "targets")

    kind = "model"
    durable = False  # a failed attempt is no side effect: lost in a crash, it is made again
    before = None

    def __init__(self, models: tuple[Model, ...], targets: tuple[Target, ...], agent: str) -> None:
        self.agent = agent
        """The name of the agent whose requests these are."""
        self.models = models
        self.targets = targets
        """Each model as the attempt loop calls it (their names are the models')."""
        self.site = f"a model request ({targets[0].name})"
        """Where its steps come from, as a reused step key names it."""
        self.request: ModelRequest | None = None
        """The request of the step in progress."""
        self.position = 0
        self.started = 0.0

    def call(self, ex: Execution, key: str, index: int) -> Awaitable[ModelResponse]:
        request, model, events = self.request, self.models[index], ex.events
        assert request is not None  # set by `request_with_policy`
        # Streamed to the run's sink if one listens, else one request.
        return _stream(events, key, model, request) if events.streaming else model.request(request)

    def failure(self, exc: Exception, target: Target, *, expired: bool) -> Failure:
        """Any failure of the model as a `ModelError` (a transient one for timeouts,
        connection errors, 429, 5xx and `RetryLater`); the run's own errors are final."""
        name = target.name
        if isinstance(exc, TimeoutError):
            what = (
                f"did not answer within {target.settings.timeout:g} s"
                if expired
                else f"timed out ({exc})"
            )
            error = ModelError(f"Model {name} {what}.", transient=True)
        elif isinstance(exc, ModelError):
            error = exc
        elif isinstance(exc, OrchestrionError) and not isinstance(exc, RetryLater):
            return Failure(error=exc, final=True)  # e.g. a test fake's verdict
        else:
            error = ModelError(
                f"Model {name} failed: {type(exc).__name__}: {exc}",
                status_code=status_code(exc),
                retry_after=retry_after(exc),
                transient=is_transient(exc),
            )
        if error is not exc:
            error.__cause__ = exc
        return Failure(error=error, transient=error.transient, expired=expired)

    def may_retry(self, failure: Failure) -> bool:
        return not failure.opened  # an attempt that opened the circuit goes to the fallback

    def attempt_error(self, failure: Failure) -> Exception:
        return failure.error

    async def gave_up(
        self, ex: Execution, key: str, index: int, attempt: int, failure: Failure, started: float
    ) -> ModelResponse:
        error = failure.error
        assert isinstance(error, ModelError | BreakerOpen)  # what `failure()` lets through
        await journal_attempt(ex, key, self, index, attempt, failure, started)
        ex.events.step_failed(key, "model", error)
        raise _final(key, self.models, index, attempt, error)


async def _stream(events: Events, key: str, model: Model, request: ModelRequest) -> ModelResponse:
    async for item in model.stream(request):
        if isinstance(item, ModelResponse):
            return item
        if isinstance(item, TextDelta):
            events.model_delta(key, clean_text(item.text))
    raise ModelError(f"Model {model.name} ended its stream without a final response.")


def _final(
    key: str, models: Sequence[Model], index: int, attempts: int, error: ModelError | BreakerOpen
) -> ModelError | BreakerOpen:
    """The error a step fails with once no model of its chain is left to try."""
    if index == 0:
        if attempts == 1 or not isinstance(error, ModelError):
            return error
        final = ModelError(
            f"{error} ({attempts} attempts)",
            status_code=error.status_code,
            retry_after=error.retry_after,
            transient=error.transient,
        )
        final.__cause__ = error.__cause__
        return final
    tried = ", ".join(model.name for model in models[: index + 1])
    final = ModelError(
        f"Every model of the fallback chain failed at {key} ({tried}); the last: {error}",
        transient=is_transient(error),
    )
    final.__cause__ = error
    return final
