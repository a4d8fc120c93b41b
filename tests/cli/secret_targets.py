"""Targets for the CLI's secret tests: each leaks a secret from the environment if it can."""

import os

from orchestrion import Agent, ModelRequest, Policy, Retry, RunContext, tool, with_policy, workflow
from orchestrion.testing import FunctionModel, ScriptedModel, call


@tool(policy=Policy(retry=Retry(attempts=2, initial=0.001, jitter=0)))
def charge(amount: int) -> str:
    """Charge a card."""
    key = os.environ["ACME_CREDENTIAL"]
    raise ConnectionError(f"api key {key} was refused by https://api.acme.test/charge")


def _unreachable(request: ModelRequest) -> str:
    key = os.environ["ACME_CREDENTIAL"]
    raise ConnectionError(f"proxy refused api key {key}")


# The primary model fails and the backup takes over (a `FallbackUsed` row in the live
# view), then the tool fails twice (`Retrying`, then `StepFailed`).
cashier = Agent(
    name="cashier",
    model=with_policy(
        FunctionModel(_unreachable, name="primary"),
        Policy(retry=False, fallback=[ScriptedModel([call("charge", {"amount": 5}, id="c1")])]),
    ),
    tools=[charge],
)


@workflow
async def migrate(ctx: RunContext[None], input: object) -> str:
    """Not a `RunError`: the CLI shows its traceback."""
    raise ValueError(f"cannot migrate {os.environ['DATABASE_URL']}")
