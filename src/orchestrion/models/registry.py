"""Resolve model strings (`provider:name`) to `Model` objects.

Providers are imported lazily, so `openai` and `anthropic` stay optional
extras. Third parties register through the `orchestrion.models` entry-point
group: the entry's name is the provider prefix, its value a callable taking the
part after the colon and returning a `Model`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from importlib.metadata import entry_points

from orchestrion.errors import ModelNotFound, UserError
from orchestrion.models.base import Model
from orchestrion.models.with_policy import PolicyModel

ModelFactory = Callable[[str], Model]

_BUILTIN: dict[str, str] = {
    "openai": "orchestrion.models.openai:from_string",
    "openai-compatible": "orchestrion.models.openai:compatible_from_string",
    "anthropic": "orchestrion.models.anthropic:from_string",
}
_registered: dict[str, ModelFactory] = {}


def register_provider(prefix: str, factory: ModelFactory) -> None:
    """Make `prefix:<anything>` resolve through `factory(<anything>)`."""
    _registered[prefix] = factory


def _load(path: str) -> ModelFactory:
    module, _, attr = path.partition(":")
    try:
        factory: ModelFactory = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        extra = module.rsplit(".", 1)[-1]
        raise ModelNotFound(
            f"The {extra!r} provider needs its SDK: pip install 'orchestrion[{extra}]' ({exc})"
        ) from exc
    return factory


def _factory(prefix: str) -> ModelFactory | None:
    if prefix in _registered:
        return _registered[prefix]
    if prefix in _BUILTIN:
        return _load(_BUILTIN[prefix])
    for ep in entry_points(group="orchestrion.models"):
        if ep.name == prefix:
            factory: ModelFactory = ep.load()
            _registered[prefix] = factory
            return factory
    return None


def infer_model(model: Model | str) -> Model:
    """Turn `openai:gpt-4.1-mini`, `anthropic:claude-sonnet-4-5` or
    `openai-compatible:http://localhost:11434/v1#llama3.2` into a `Model`."""
    if not isinstance(model, str):
        return model
    prefix, sep, rest = model.partition(":")
    factory = _factory(prefix) if sep else None
    if factory is None:
        known = sorted(
            {*_BUILTIN, *_registered, *(ep.name for ep in entry_points(group="orchestrion.models"))}
        )
        raise ModelNotFound(
            f"Unknown model {model!r}: expected '<provider>:<model>' with a provider among "
            f"{known} or one registered under the 'orchestrion.models' entry point."
        )
    if not rest:
        raise ModelNotFound(f"Model string {model!r} names no model after {prefix!r}:.")
    return factory(rest)


def provider_and_model(name: str) -> tuple[str, str]:
    """The provider and the provider's own model name in a model's `name`
    (`openai:gpt-4.1-mini` -> `openai`, `gpt-4.1-mini`; an `openai-compatible` name's
    model follows its `#`). A name without a provider is its own model's."""
    prefix, sep, rest = name.partition(":")
    if not sep:
        return "", name
    if prefix == "openai-compatible":
        rest = rest.rpartition("#")[2] or rest
    return prefix, rest


def resolve_model(
    model: Model | str | None, agent: str, *, default: Model | str | None, cache: dict[str, Model]
) -> Model:
    """The model of agent `agent`: its own, else `default`, else `ORCHESTRION_MODEL`;
    a string resolved once per `cache` (a runtime's), also inside a `PolicyModel`."""
    model = model or default or os.environ.get("ORCHESTRION_MODEL")
    if model is None:
        raise UserError(
            f"Agent {agent!r} has no model, and the runtime has no default: pass model= to "
            "the Agent or the Runtime, or set ORCHESTRION_MODEL (e.g. openai:gpt-4.1-mini)."
        )
    if isinstance(model, PolicyModel) and isinstance(model.model, str):
        inner = resolve_model(model.model, agent, default=default, cache=cache)
        return PolicyModel(inner, model.policy)
    if not isinstance(model, str):
        return model
    cached = cache.get(model)
    if cached is None:
        cached = cache[model] = infer_model(model)
    return cached
