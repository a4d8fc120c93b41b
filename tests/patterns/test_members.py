"""What a pattern takes as members: a pattern that gives its members tools
(transfers, mail) takes agents only, and says so at definition time."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrion import Agent, Handoff, PeerNetwork, Sequential, UserError
from orchestrion.testing import FunctionModel


def echo(name: str) -> Agent[str]:
    return Agent(name=name, model=FunctionModel(lambda r: f"{name} ok"))


@pytest.mark.parametrize("pattern", [Handoff, PeerNetwork])
def test_members_that_get_tools_must_be_agents(pattern: Any) -> None:
    inner = Sequential(name="inner", members=[echo("a")])
    with pytest.raises(UserError, match="'inner' is not an Agent"):
        pattern(name="p", agents=[echo("x"), inner])
