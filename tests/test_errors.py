"""The error tree: every error in `orchestrion.errors`, drawn in its docstring."""

from __future__ import annotations

import inspect

import pytest

import orchestrion
from orchestrion import errors
from orchestrion.patterns import concurrent, group_chat, handoff, peer_network

PATTERN_ERRORS = [
    ("MaxHandoffsExceeded", handoff),
    ("RoundsExceeded", peer_network),
    ("NotEnoughBranches", concurrent),
    ("UnknownSpeaker", group_chat),
]


@pytest.mark.parametrize(("name", "module"), PATTERN_ERRORS)
def test_pattern_errors_live_in_errors_and_stay_where_users_import_them(
    name: str, module: object
) -> None:
    error = getattr(errors, name)
    assert issubclass(error, errors.RunError)
    assert error.__module__ == "orchestrion.errors"
    assert getattr(module, name) is error
    assert getattr(orchestrion, name) is error and name in orchestrion.__all__


def test_the_docstring_draws_every_error_under_its_parent() -> None:
    drawn: dict[str, int] = {}
    for line in (errors.__doc__ or "").splitlines():
        if not line.startswith("    "):  # the tree is indented; the prose is not
            continue
        branch = line[4:]
        name = branch.lstrip(" │├└─").split(" ")[0]
        drawn[name] = (len(branch) - len(branch.lstrip(" │├└─"))) // 4  # 4 columns a level
    classes = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.OrchestrionError) and cls.__module__ == errors.__name__
    }
    assert set(drawn) == set(classes)
    for name, cls in classes.items():
        if cls is not errors.OrchestrionError:
            parent = cls.__bases__[0].__name__
            assert drawn[name] == drawn[parent] + 1, f"{name} is drawn under {parent}"
