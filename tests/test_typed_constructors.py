"""The constructors type checkers see for `Agent` and `Tool` (overloads written for
them only, under `if TYPE_CHECKING`) take exactly the fields the dataclass takes:
a field added to one and not the other would be refused by mypy or never checked."""

from __future__ import annotations

import ast
import dataclasses
import inspect

import pytest

from orchestrion import Agent, Tool


def overloaded_parameters(cls: type) -> list[set[str]]:
    tree = ast.parse(inspect.getsource(cls))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.FunctionDef)
            and node.name == "__init__"
            and any(isinstance(d, ast.Name) and d.id == "overload" for d in node.decorator_list)
        ):
            found.append({a.arg for a in node.args.kwonlyargs})
    return found


@pytest.mark.parametrize("cls", [Agent, Tool])
def test_each_typed_constructor_takes_the_dataclass_fields(cls: type) -> None:
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    overloads = overloaded_parameters(cls)
    assert overloads, f"{cls.__name__} has no typed constructor overloads"
    for parameters in overloads:
        assert parameters == fields, (
            f"{cls.__name__}'s typed __init__ misses {sorted(fields - parameters)} "
            f"and has extra {sorted(parameters - fields)}"
        )
