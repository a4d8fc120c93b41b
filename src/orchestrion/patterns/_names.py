"""Checks shared by the patterns' definitions."""

from __future__ import annotations

import re
from collections.abc import Sequence

from orchestrion.agent import Agent
from orchestrion.errors import UserError
from orchestrion.runnable import Runnable, Workflow

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_name(kind: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise UserError(
            f"{kind} name {name!r} is invalid: use 1-64 letters, digits, '_', '-' or '.'"
            " (it becomes part of every step key)."
        )


def check_members(
    kind: str, name: str, members: Sequence[object], field: str
) -> tuple[Runnable, ...]:
    if not members:
        raise UserError(f"{kind} {name!r} needs at least one entry in {field}.")
    for member in members:
        if not isinstance(member, Agent | Workflow):
            raise UserError(
                f"{kind} {name!r}: {member!r} in {field} is not an Agent or a pattern "
                "(an object with a name and an async invoke(ctx, input))."
            )
    return tuple(members)  # type: ignore[arg-type]  # checked above


def agents_only(kind: str, name: str, members: Sequence[object]) -> None:
    """Patterns that give members tools (Handoff, PeerNetwork) need agents."""
    for member in members:
        if not isinstance(member, Agent):
            raise UserError(
                f"{kind} {name!r}: {getattr(member, 'name', member)!r} is not an Agent; "
                f"{kind} gives its members tools, so wrap a pattern in an agent's worker "
                "(e.g. a Supervisor with that pattern as its worker)."
            )
