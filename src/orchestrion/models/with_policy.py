"""`with_policy`: a model carrying its own resilience policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from orchestrion.errors import UserError
from orchestrion.messages import ModelRequest, ModelResponse, StreamItem
from orchestrion.models.base import Model
from orchestrion.policy import Policy


@dataclass(frozen=True, slots=True)
class PolicyModel:
    """`model` with `policy` for its calls; the runtime resolves a model name."""

    model: Model | str
    policy: Policy

    @property
    def name(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.name

    async def request(self, request: ModelRequest) -> ModelResponse:
        return await self._resolved().request(request)

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        return self._resolved().stream(request)

    def _resolved(self) -> Model:
        if isinstance(self.model, str):
            raise UserError(
                f"with_policy({self.model!r}) was called outside a runtime: run it with "
                "Runtime.run, which resolves the model name."
            )
        return self.model


def with_policy(model: Model | str, policy: Policy) -> PolicyModel:
    """`model` (a `Model` or a name like `openai:gpt-4.1-mini`) with its own
    `Policy`, which wins over the agent's and the runtime's:

        Agent(model=with_policy("openai:gpt-4.1-mini", Policy(timeout=20,
              fallback=["anthropic:claude-haiku-4-5"])), ...)
    """
    if not isinstance(policy, Policy):
        raise UserError(f"with_policy({model!r}, {policy!r}): give a Policy(...).")
    if any(not isinstance(f, str) and not isinstance(f, Model) for f in policy.fallback or ()):
        raise UserError(
            f"with_policy({model!r}): a model's fallback lists models (or their names), "
            "not agents; give fallback agents to the agent's policy."
        )
    if isinstance(model, PolicyModel):
        return PolicyModel(model.model, policy.over(model.policy))
    return PolicyModel(model, policy)
