"""`Tool` and `@tool`: schema from the signature and docstring, validation, options."""

import enum
import json
import threading
from typing import Annotated, Any, Literal

import pydantic
import pydantic.json_schema
import pytest

from orchestrion import Agent, RunContext, Runtime, Tool, UserError, tool
from orchestrion.testing import ScriptedModel, call


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(pydantic.BaseModel):
    street: str
    city: str


class Customer(pydantic.BaseModel):
    name: str
    address: Address
    tier: Literal["gold", "silver"] = "silver"


async def create_customer(
    customer: Customer,
    color: Color,
    priority: Literal["low", "high"] = "low",
    notes: str | None = None,
) -> str:
    """Create a customer record.

    The record is stored in the CRM.

    Args:
        customer: The customer to create.
        color: Their favourite colour.
        priority: How urgent the creation is.
        notes: Free text for the account manager.
    """
    return customer.name


def walk(node: Any) -> list[tuple[str, Any]]:
    """Every (key, value) pair anywhere in a JSON schema."""
    pairs: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            pairs.append((k, v))
            pairs.extend(walk(v))
    elif isinstance(node, list):
        for v in node:
            pairs.extend(walk(v))
    return pairs


# -- schema ------------------------------------------------------------------


def test_name_and_description_come_from_function_and_docstring() -> None:
    t = tool(create_customer)
    assert isinstance(t, Tool)
    assert t.name == "create_customer"
    assert t.description == "Create a customer record.\n\nThe record is stored in the CRM."
    assert t.effect == "read"
    assert t.approval is False
    assert t.timeout is None
    definition = t.definition()
    assert (definition.name, definition.description, definition.parameters) == (
        t.name,
        t.description,
        t.parameters,
    )


def test_schema_required_defaults_and_argument_descriptions() -> None:
    schema = tool(create_customer).parameters
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["color", "customer"]
    props = schema["properties"]
    assert set(props) == {"customer", "color", "priority", "notes"}
    assert props["customer"]["description"] == "The customer to create."
    assert props["color"]["description"] == "Their favourite colour."
    assert props["priority"]["description"] == "How urgent the creation is."
    assert props["notes"]["description"] == "Free text for the account manager."
    assert props["priority"]["default"] == "low"
    assert props["notes"]["default"] is None


def test_schema_literal_and_enum_values() -> None:
    schema = tool(create_customer).parameters
    assert schema["properties"]["priority"]["enum"] == ["low", "high"]
    color_ref = schema["properties"]["color"]["$ref"]
    color = schema["$defs"][color_ref.rsplit("/", 1)[-1]]
    assert color["enum"] == ["red", "green"]


def test_schema_nested_model_arguments() -> None:
    schema = tool(create_customer).parameters
    customer = schema["$defs"]["Customer"]
    assert sorted(customer["required"]) == ["address", "name"]
    assert customer["properties"]["tier"]["enum"] == ["gold", "silver"]
    assert customer["properties"]["address"]["$ref"] == "#/$defs/Address"
    assert set(schema["$defs"]["Address"]["properties"]) == {"street", "city"}


def test_schema_has_no_generated_titles_but_keeps_a_field_named_title() -> None:
    async def publish(title: str, body: str = "") -> str:
        """Publish a post."""
        return title

    schema = tool(publish).parameters
    assert "title" in schema["properties"]
    assert not [v for k, v in walk(schema) if k == "title" and isinstance(v, str)]
    assert not [
        v for k, v in walk(tool(create_customer).parameters) if k == "title" and isinstance(v, str)
    ]


def test_tool_without_arguments_has_an_empty_object_schema() -> None:
    @tool
    async def ping() -> str:
        return "pong"

    assert ping.parameters["properties"] == {}
    assert ping.parameters.get("required", []) == []
    assert ping.description == ""
    assert ping.parse_arguments("") == {}
    assert ping.parse_arguments("{}") == {}


def test_run_context_first_parameter_is_excluded_from_schema() -> None:
    @tool
    async def annotated(ctx: RunContext[None], amount: int) -> int:
        return amount

    @tool
    async def unannotated(ctx, amount: int) -> int:  # type: ignore[no-untyped-def]
        return amount

    @tool
    async def plain(amount: int) -> int:
        return amount

    for t in (annotated, unannotated):
        assert t.takes_context is True
        assert set(t.parameters["properties"]) == {"amount"}
        assert t.parameters["required"] == ["amount"]
    assert plain.takes_context is False


def test_bare_decorator_and_decorator_with_options() -> None:
    async def pay(amount: float) -> str:
        """Pay."""
        return "ok"

    def big(args: dict[str, Any]) -> bool:
        return bool(args["amount"] > 1000)

    bare = tool(pay)
    configured = tool(
        name="send_money", description="Send money.", effect="write", approval=big, timeout=2.5
    )(pay)
    assert isinstance(bare, Tool) and isinstance(configured, Tool)
    assert (bare.name, bare.effect, bare.approval, bare.timeout) == ("pay", "read", False, None)
    assert configured.name == "send_money"
    assert configured.description == "Send money."
    assert configured.effect == "write"
    assert configured.approval is big
    assert configured.timeout == 2.5
    assert configured.function is pay


def test_plain_functions_become_tools_on_an_agent() -> None:
    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    agent = Agent(name="a", tools=[lookup])
    assert isinstance(agent.tools[0], Tool)
    assert agent.tool_map["lookup"].parameters["required"] == ["city"]


# -- invalid definitions ---------------------------------------------------------


async def _ok(x: int) -> int:
    return x


@pytest.mark.parametrize("bad", ["bad name", "semi;colon", "x" * 65, "dotted.name"])
def test_invalid_tool_name_raises_user_error(bad: str) -> None:
    with pytest.raises(UserError, match=r"Tool name .* is invalid") as info:
        tool(name=bad)(_ok)
    assert repr(bad) in str(info.value)
    assert "letters, digits" in str(info.value)


def test_lambda_without_a_name_is_rejected() -> None:
    with pytest.raises(UserError, match="<lambda>"):
        Tool(function=lambda x: x)


def test_non_ascii_tool_name_is_rejected_at_definition_time() -> None:
    with pytest.raises(UserError, match="invalid"):
        tool(name="überweisen")(_ok)


def test_var_args_and_kwargs_are_rejected() -> None:
    async def star(*items: int) -> int:
        return 0

    async def kw(**options: int) -> int:
        return 0

    with pytest.raises(UserError, match=r"'star'.*\*args and \*\*kwargs.*\(items\)"):
        tool(star)
    with pytest.raises(UserError, match=r"'kw'.*\(options\)"):
        tool(kw)


def test_positional_only_parameter_is_rejected() -> None:
    async def pos(x: int, /) -> int:
        return x

    with pytest.raises(UserError, match="positional-only parameter 'x'"):
        tool(pos)


def test_context_not_first_is_rejected() -> None:
    async def late(amount: int, ctx: RunContext[None]) -> int:
        return amount

    with pytest.raises(UserError, match=r"'late'.*RunContext parameter must come first"):
        tool(late)


def test_non_callable_is_rejected() -> None:
    with pytest.raises(UserError, match="must be callable, got 42"):
        Tool(function=42)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="must be callable"):
        tool("not a function")  # type: ignore[call-overload]


def test_bad_effect_is_rejected() -> None:
    with pytest.raises(UserError, match="effect must be 'read' or 'write', not 'delete'"):
        tool(effect="delete")(_ok)  # type: ignore[call-overload]


def test_unresolvable_type_hint_is_rejected() -> None:
    async def broken(x: "NoSuchType") -> int:  # type: ignore[name-defined]  # noqa: F821
        return 0

    with pytest.raises(UserError, match=r"'broken'.*cannot resolve its type hints"):
        tool(broken)


def test_agent_rejects_two_tools_with_one_name() -> None:
    with pytest.raises(UserError, match="two tools named '_ok'"):
        Agent(name="a", tools=[tool(_ok), _ok])


# -- argument parsing ------------------------------------------------------------


def test_parse_arguments_validates_json_text_and_builds_nested_models() -> None:
    t = tool(create_customer)
    raw = json.dumps(
        {
            "customer": {"name": "Ada", "address": {"street": "1 Main", "city": "Paris"}},
            "color": "red",
        }
    )
    args = t.parse_arguments(raw)
    assert args["customer"] == Customer(name="Ada", address=Address(street="1 Main", city="Paris"))
    assert args["color"] is Color.RED
    assert args["priority"] == "low"
    assert args["notes"] is None


def test_parse_arguments_accepts_a_dict() -> None:
    t = tool(create_customer)
    args = t.parse_arguments(
        {
            "customer": {"name": "Bo", "address": {"street": "s", "city": "c"}, "tier": "gold"},
            "color": "green",
            "priority": "high",
        }
    )
    assert args["customer"].tier == "gold"
    assert args["color"] is Color.GREEN
    assert args["priority"] == "high"


@pytest.mark.parametrize(
    ("raw", "field", "error_type"),
    [
        ('{"color": "red"}', "customer", "missing"),
        (
            '{"customer": {"name": "A", "address": {"street": "s"}}, "color": "red"}',
            "city",
            "missing",
        ),
        (
            '{"customer": {"name": "A", "address": {"street": "s", "city": "c"}}, "color": "blue"}',
            "color",
            "enum",
        ),
        (
            '{"customer": {"name": "A", "address": {"street": "s", "city": "c"}}, "color": "red", "priority": "urgent"}',
            "priority",
            "literal_error",
        ),
        (
            '{"customer": {"name": "A", "address": {"street": "s", "city": "c"}}, "color": "red", "extra": 1}',
            "extra",
            "extra_forbidden",
        ),
    ],
)
def test_parse_arguments_rejects_invalid_arguments(raw: str, field: str, error_type: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        tool(create_customer).parse_arguments(raw)
    errors = info.value.errors()
    assert any(e["loc"][-1] == field and e["type"] == error_type for e in errors), errors


def test_annotated_field_constraints_reach_schema_and_validation() -> None:
    @tool
    async def count(n: Annotated[int, pydantic.Field(gt=0)] = 3) -> int:
        """Count.

        Args:
            n: How many.
        """
        return n

    assert count.parameters["properties"]["n"] == {
        "type": "integer",
        "exclusiveMinimum": 0,
        "description": "How many.",
        "default": 3,
    }
    assert count.parse_arguments("{}") == {"n": 3}
    with pytest.raises(pydantic.ValidationError):
        count.parse_arguments('{"n": 0}')


def test_annotated_field_description_is_kept_without_a_docstring() -> None:
    @tool
    async def count(n: Annotated[int, pydantic.Field(description="How many.")] = 3) -> int:
        return n

    assert count.parameters["properties"]["n"].get("description") == "How many."


def test_pydantic_field_as_default_is_honoured() -> None:
    @tool
    async def count(n: int = pydantic.Field(default=3, gt=0)) -> int:
        return n

    assert count.parameters["properties"]["n"]["default"] == 3
    assert count.parse_arguments("{}") == {"n": 3}
    with pytest.raises(pydantic.ValidationError):
        count.parse_arguments('{"n": 0}')


def test_parse_arguments_rejects_broken_json() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        tool(_ok).parse_arguments('{"x": 1')
    assert info.value.errors()[0]["type"] == "json_invalid"


def test_parse_arguments_coerces_like_pydantic_lax_mode() -> None:
    assert tool(_ok).parse_arguments('{"x": "7"}') == {"x": 7}


# -- approval ----------------------------------------------------------------------


def test_approval_flag_and_predicate() -> None:
    async def pay(amount: float) -> str:
        return "ok"

    always = tool(approval=True)(pay)
    never = tool(pay)
    big = tool(approval=lambda args: args["amount"] > 1000)(pay)
    assert always.needs_approval({"amount": 1.0}) is True
    assert never.needs_approval({"amount": 10_000.0}) is False
    assert big.needs_approval(big.parse_arguments('{"amount": 1000.5}')) is True
    assert big.needs_approval(big.parse_arguments('{"amount": 1000}')) is False


# -- execution -------------------------------------------------------------------


async def test_sync_tool_runs_off_the_event_loop_thread(runtime: Runtime) -> None:
    seen: list[int] = []

    def blocking(x: int) -> str:
        seen.append(threading.get_ident())
        return f"got {x}"

    async def non_blocking(x: int) -> str:
        seen.append(threading.get_ident())
        return f"async {x}"

    model = ScriptedModel([call("blocking", {"x": 1}), call("non_blocking", {"x": 2}), "done"])
    agent = Agent(name="a", model=model, tools=[blocking, non_blocking])
    result = await runtime.run(agent, "go")
    assert result.output == "done"
    loop_thread = threading.get_ident()
    assert len(seen) == 2
    assert seen[0] != loop_thread
    assert seen[1] == loop_thread
    assert model.requests[1].messages[-1].content == "got 1"  # type: ignore[union-attr]


async def test_sync_tool_receives_the_run_context(runtime: Runtime) -> None:
    seen: list[str] = []

    def whoami(ctx: RunContext[str]) -> str:
        seen.append(f"{ctx.deps}:{ctx.key}")
        return "me"

    model = ScriptedModel([call("whoami", {}, id="c1"), "done"])
    result = await runtime.run(Agent(name="a", model=model, tools=[whoami]), "go", deps="D")
    assert result.output == "done"
    assert seen == ["D:a/turn-1/tool/whoami#c1"]


async def test_a_tool_stays_callable_for_unit_tests() -> None:
    @tool
    async def add(a: int, b: int) -> int:
        return a + b

    @tool
    def shout(text: str) -> str:
        return text.upper()

    assert await add(2, b=3) == 5
    assert shout("hi") == "HI"
