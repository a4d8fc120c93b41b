"""Find a runnable from an import string: `path/to/file.py:attr` or `package.module:attr`,
optionally followed by the names of members inside it: `team.py:pipeline#payroll#payroll.alice`
is the member `payroll.alice` of the member `payroll` of `pipeline` (how the separate runs a
run queues with `ctx.submit` find what they run)."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeGuard

from orchestrion.agent import Agent
from orchestrion.engine.journal import RunRecord
from orchestrion.errors import RunNotResumable, TargetError
from orchestrion.runnable import Runnable


def is_runnable(obj: object) -> TypeGuard[Runnable]:
    """An `Agent`, or any object with a `name` and an async `invoke(ctx, input)`."""
    return isinstance(obj, Agent) or (
        isinstance(getattr(obj, "name", None), str) and callable(getattr(obj, "invoke", None))
    )


def normalize_target(target: str) -> str:
    """Make a file target absolute, so a resume from another directory finds it."""
    location, sep, attr = target.rpartition(":")
    if sep and location.endswith(".py"):
        return f"{Path(location).resolve()}:{attr}"
    return target


_loading = threading.Lock()
"""Targets are loaded one at a time: a worker loads them in threads, and a module
being imported must not be seen half-made by another thread."""


_MEMBER = "#"
"""Before each member name in a target (names are letters, digits, `_`, `-` and `.`)."""


def load_target(target: str) -> Runnable:
    location, sep, attr = target.rpartition(":")
    attr, *path = attr.split(_MEMBER)
    with _loading:
        obj = load_object(f"{location}{sep}{attr}", "Runnables", is_runnable)
    if not is_runnable(obj):
        raise TargetError(
            f"Target {target!r} is a {type(obj).__name__}, not something orchestrion can run: "
            "point it at an Agent (or an object with a name and an async invoke(ctx, input))."
        )
    return find_member(obj, path, target) if path else obj


def member_target(target: str, root: Runnable, member: Runnable) -> str:
    """The target of `member`, a runnable inside `root` (the runnable of `target`): a
    `TargetError` if it is not found inside it, or its path of names is ambiguous."""
    path = _path_to(root, member, [], set())
    if path is None:
        raise TargetError(
            f"{getattr(member, 'name', member)!r} is not a member of {target!r} (found through "
            "the fields of its patterns): a separate run can only run what its target holds."
        )
    if find_member(root, path, target) is not member:
        raise TargetError(
            f"Target {target!r} holds two different members named along the path {path}: "
            "give them distinct names."
        )
    return _MEMBER.join([target, *path])


def find_member(root: Runnable, path: list[str], target: str) -> Runnable:
    """The member of `root` found by following `path`, one member name at each level."""
    obj = root
    for name in path:
        found = next((m for m in members_of(obj) if m.name == name), None)
        if found is None:
            names = sorted({m.name for m in members_of(obj)})
            raise TargetError(
                f"Target {target!r}: {obj.name!r} has no member {name!r} (members: "
                f"{names or 'none'}); the code may have changed since the run was queued."
            )
        obj = found
    return obj


def members_of(obj: object) -> Iterator[Runnable]:
    """The runnables that a pattern holds in its fields (directly, or in a sequence or
    a mapping); an agent holds none."""
    if isinstance(obj, Agent) or not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name, None)
        if isinstance(value, Mapping):
            value = tuple(value.values())
        for item in value if isinstance(value, list | tuple) else (value,):
            if is_runnable(item) and not isinstance(item, type):
                yield item


def _path_to(obj: object, wanted: object, path: list[str], seen: set[int]) -> list[str] | None:
    if obj is wanted:
        return path
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    for member in members_of(obj):
        found = _path_to(member, wanted, [*path, member.name], seen)
        if found is not None:
            return found
    return None


def load_object(
    target: str, listed: str = "Names", wanted: Callable[[object], bool] = callable
) -> Any:
    """The object an import string names; a `TargetError` listing the `wanted`
    objects of the module (as `listed`) if it has no such attribute."""
    location, sep, attr = target.rpartition(":")
    if not sep or not location or not attr:
        raise TargetError(
            f"Target {target!r} is not of the form 'path/to/file.py:name' or 'package.module:name'."
        )
    module = _load_file(location, target) if location.endswith(".py") else _import(location, target)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            public = sorted(
                n for n in dir(module) if not n.startswith("_") and wanted(getattr(module, n, None))
            )
            raise TargetError(
                f"Target {target!r}: {location} has no attribute {attr!r}. "
                f"{listed} defined there: {public or 'none'}."
            ) from None
    return obj


def _load_file(location: str, target: str) -> Any:
    path = Path(location).resolve()
    if not path.is_file():
        raise TargetError(f"Target {target!r}: file {location} does not exist.")
    name = f"_orchestrion_target_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"Target {target!r}: {location} cannot be imported as Python.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a module that exits at import is a bad target
        del sys.modules[name]
        raise TargetError(
            f"Target {target!r}: importing {location} raised {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        sys.path.remove(str(path.parent))
    return module


def _import(location: str, target: str) -> Any:
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        raise TargetError(
            f"Target {target!r}: no module named {exc.name!r}. Use 'path/to/file.py:name' "
            "for a file, or install the package that holds the module."
        ) from exc
    except (Exception, SystemExit) as exc:  # a module that exits at import is a bad target
        raise TargetError(
            f"Target {target!r}: importing {location} raised {type(exc).__name__}: {exc}"
        ) from exc


def find_runnable(record: RunRecord, known: dict[str, Runnable]) -> Runnable:
    """What runs `record`: the runnable this runtime ran it (or its parent) with, else
    its target, loaded once (and remembered in `known`)."""
    runnable = known.get(record.id) or known.get(record.parent_id or "")
    if runnable is not None:
        return runnable
    if record.target:
        runnable = load_target(record.target)
        remember(known, record.id, runnable)
        return runnable
    raise RunNotResumable(
        f"Run {record.id} ({record.name!r}) was started from Python without a target, and "
        "this runtime has not run it: pass runnable= to resume/fork, or start runs with "
        "target='module:attr' (the CLI does)."
    )


REMEMBERED = 10_000
"""Runnables a runtime remembers by run id (for `resume(run_id)` without
`runnable=`): the latest ones, so that a process running millions keeps a bounded map."""


def remember(known: dict[str, Runnable], run_id: str, runnable: Runnable) -> None:
    """Remember what runs `run_id`, forgetting the oldest beyond `REMEMBERED`."""
    known[run_id] = runnable
    if len(known) > REMEMBERED:
        del known[next(iter(known))]
