"""`Prices`: a table of your own first, then the genai-prices snapshot."""

from __future__ import annotations

import pytest

from orchestrion import Price, Prices, UserError
from orchestrion.messages import Usage

MILLION = Usage(input_tokens=1_000_000, output_tokens=1_000_000, requests=1)


def test_a_table_price_is_per_million_tokens() -> None:
    prices = Prices({"acme:fast": Price(input=2.0, output=8.0)}, library=False)
    assert prices.cost("acme:fast", Usage(500_000, 250_000, 1)) == pytest.approx(1.0 + 2.0)


def test_a_bare_name_in_the_table_prices_it_under_any_provider() -> None:
    prices = Prices({"fast": Price(input=1.0, output=1.0)}, library=False)
    assert prices.cost("acme:fast", MILLION) == pytest.approx(2.0)
    assert prices.cost("other:fast", MILLION) == pytest.approx(2.0)


def test_the_table_wins_over_the_library() -> None:
    prices = Prices({"openai:gpt-4.1-mini": Price(input=0.0, output=0.0)})
    assert prices.cost("openai:gpt-4.1-mini", MILLION) == 0.0


@pytest.mark.parametrize(
    ("model", "low", "high"),
    [
        ("openai:gpt-4.1-mini", 0.5, 5.0),  # $0.40 in + $1.60 out per million at the snapshot
        ("anthropic:claude-sonnet-4-5", 5.0, 40.0),
        ("openai-compatible:https://api.groq.com/openai/v1#llama-3.1-8b-instant", 0.01, 1.0),
    ],
)
def test_the_library_prices_known_provider_models(model: str, low: float, high: float) -> None:
    cost = Prices().cost(model, MILLION)
    assert cost is not None and low < cost < high, cost  # ranges: prices change between snapshots


@pytest.mark.parametrize(
    "model",
    [
        "test:scripted",
        "stand-in:loan-team",
        "openai:no-such-model-xyz",
        "nowhere:gpt-4o",
        "openai-compatible:http://localhost:11434/v1#llama3",
    ],
)
def test_unknown_models_have_no_price(model: str) -> None:
    prices = Prices()
    assert prices.pricer(model) is None
    assert prices.cost(model, MILLION) is None


def test_without_the_library_only_the_table_counts() -> None:
    assert Prices(library=False).pricer("openai:gpt-4.1-mini") is None


def test_lookups_are_cached_per_model_name() -> None:
    prices = Prices()
    assert prices.pricer("openai:gpt-4.1-mini") is prices.pricer("openai:gpt-4.1-mini")


def test_bad_prices_fail_clearly() -> None:
    with pytest.raises(UserError, match="'m' must be a Price"):
        Prices({"m": 1.5})  # type: ignore[dict-item]
    with pytest.raises(UserError, match="cannot be negative"):
        Price(input=-1, output=0)
