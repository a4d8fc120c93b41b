"""Tool roles: what a tool that steers control does, said in a field, not in its name.

Most tools just run. A few steer the run: a transfer hands the conversation to
another agent (`Handoff`), a delegation runs a worker (`Supervisor`), the final
result tool carries an agent's typed answer. Each is marked with its role where
it is built, and every decision about it (the agent loop's, the loop guard's)
reads the role. Their model-visible names (`transfer_to_<agent>`,
`delegate_to_<worker>`, `final_result`) are journaled and prompted as before, but
no code tells a control tool by its name: a user's tool that happens to be called
`transfer_to_x` is an ordinary tool.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class Transfer:
    """Hands the conversation to agent `target`, which takes over; set by the agent
    for each of its `handoffs`."""

    target: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Delegate:
    """Runs `worker` as a child run and returns its output (set by `Supervisor`)."""

    worker: str


@dataclass(frozen=True, kw_only=True, slots=True)
class FinalResult:
    """Carries the agent's typed final answer; set by an agent with an `output_type`."""


ToolRole = Transfer | Delegate | FinalResult
"""Every role a tool can have; a tool without one is an ordinary tool."""

ROLES = (Transfer, Delegate, FinalResult)
"""The role classes, for `isinstance` checks of a value from the outside."""
