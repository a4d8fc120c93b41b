"""Model strings resolve through built-ins, registrations and the entry-point group."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrion import ModelRequest, ModelResponse
from orchestrion.errors import ModelNotFound
from orchestrion.models import infer_model, register_provider
from orchestrion.models import registry as registry_module
from orchestrion.testing import TestModel


@pytest.fixture(autouse=True)
def _clean_registrations() -> Iterator[None]:
    # The registry's private table: there is no public way to unregister a provider.
    saved = dict(registry_module._registered)
    yield
    registry_module._registered.clear()
    registry_module._registered.update(saved)


def test_entry_points_resolve_providers_outside_the_core() -> None:
    # Both come from this package's own `orchestrion.models` entry points.
    assert isinstance(infer_model("test:anything"), TestModel)
    assert infer_model("stand-in:loan-payoff").name == "stand-in:loan-payoff"


async def test_a_registered_provider_gets_the_rest_of_the_string() -> None:
    class Echo:
        def __init__(self, rest: str) -> None:
            self.rest = rest

        @property
        def name(self) -> str:
            return f"echo:{self.rest}"

        async def request(self, request: ModelRequest) -> ModelResponse:
            return ModelResponse(text=self.rest)

        def stream(self, request: ModelRequest):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    register_provider("echo", Echo)
    model = infer_model("echo:hello:world")
    assert model.name == "echo:hello:world"
    assert (await model.request(ModelRequest(None, ()))).text == "hello:world"


@pytest.mark.parametrize(
    ("string", "message"),
    [
        ("gpt-4.1", "expected '<provider>:<model>'"),
        ("nosuch:model", "'openai'"),
        ("openai:", "names no model"),
        ("stand-in:nope", "No stand-in model for demo 'nope'"),
    ],
)
def test_bad_model_strings_say_what_is_expected(string: str, message: str) -> None:
    with pytest.raises(ModelNotFound, match=message):
        infer_model(string)


def test_unknown_provider_lists_entry_point_providers() -> None:
    with pytest.raises(ModelNotFound) as info:
        infer_model("nosuch:model")
    assert "stand-in" in str(info.value) and "test" in str(info.value)
