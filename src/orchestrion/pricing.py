"""What model calls cost, in USD: prices you give, else the genai-prices library.

`Prices` turns a model's name (`provider:model`, as `Model.name` gives it) and
the usage of one response into a cost. The engine writes that cost into the
journaled response, so a resumed run counts what was spent at the time.
genai-prices (maintained by the pydantic team) ships a snapshot of provider
price lists, including tiered and cached-input prices; it is consulted once
per model name and only for names your table does not cover.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from orchestrion.errors import UserError
from orchestrion.messages import Usage

Pricer = Callable[[Usage], float]


@dataclass(frozen=True, slots=True)
class Price:
    """A flat price in USD per million tokens."""

    input: float
    output: float

    def __post_init__(self) -> None:
        if self.input < 0 or self.output < 0:
            raise UserError(f"{self!r}: prices are USD per million tokens and cannot be negative.")

    def __call__(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / 1_000_000


class Prices:
    """A price table by model name, falling back on genai-prices (`library=False` to
    use only the table). A name is `provider:model` (`openai:gpt-4.1-mini`), or a
    bare model name matching any provider in the table."""

    def __init__(self, table: Mapping[str, Price] | None = None, *, library: bool = True) -> None:
        for name, price in (table or {}).items():
            if not isinstance(price, Price):
                raise UserError(
                    f"Prices: the price of {name!r} must be a Price(input=..., output=...) in "
                    f"USD per million tokens, not {price!r}."
                )
        self._table = dict(table or {})
        self._library = library
        self._found: dict[str, Pricer | None] = {}

    def pricer(self, model: str) -> Pricer | None:
        """How to price `model`'s responses, or None when no price is known."""
        try:
            return self._found[model]
        except KeyError:
            found = self._found[model] = self._find(model)
            return found

    def cost(self, model: str, usage: Usage) -> float | None:
        pricer = self.pricer(model)
        return None if pricer is None else pricer(usage)

    def _find(self, model: str) -> Pricer | None:
        bare = model.partition(":")[2] or model
        price = self._table.get(model) or self._table.get(bare)
        if price is not None:
            return price
        if not self._library or model.startswith(_OFFLINE):
            return None
        return _from_library(model)


_OFFLINE = ("test:", "stand-in:")
"""orchestrion's own offline models: no price to look up, and tests and demos
then never load the library's snapshot."""


def _from_library(model: str) -> Pricer | None:
    import genai_prices  # imported on first need: loading its snapshot takes ~20 ms

    provider, _, ref = model.partition(":")
    calc: Callable[[genai_prices.Usage], genai_prices.types.PriceCalculation]
    if provider == "openai-compatible":
        url, _, name = ref.partition("#")
        calc = partial(genai_prices.calc_price, model_ref=name, provider_api_url=url)
    elif ref:
        calc = partial(genai_prices.calc_price, model_ref=ref, provider_id=provider)
    else:
        calc = partial(genai_prices.calc_price, model_ref=model)

    def price(usage: Usage) -> float:
        counted = genai_prices.Usage(
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
        )
        return float(calc(counted).total_price)

    try:
        price(Usage())
    except LookupError:
        return None
    return price
