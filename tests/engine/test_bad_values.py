"""Bad input gets a clear error, the same on every store.

Values JSON cannot hold as they are: a lone surrogate is replaced visibly
(U+FFFD) before the run uses it; NaN, Infinity and integers beyond 64 bits are
refused naming where they are; int, float, bool and None keys become their JSON
text. The value the run uses is the value the journal holds, so a resume replays
exactly what the first run saw. Also: strict answers, names, nesting, and where a
tool's exception came from.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from orchestrion import (
    Agent,
    AnswerError,
    Approve,
    ModelResponse,
    RunContext,
    RunStatus,
    Runtime,
    StepStatus,
    ToolCall,
    UserError,
    tool,
    workflow,
)
from orchestrion.engine.dispatch import MAX_NESTING
from orchestrion.patterns import Sequential
from orchestrion.testing import FunctionModel, ScriptedModel, call

from ._support import journal_snapshot, last_tool_result, tool_results

FFFD = "\ufffd"


@tool(effect="write", approval=True)
async def pay(amount: float) -> str:
    """Pay an amount."""
    return f"paid {amount}"


async def _journaled(runtime: Runtime, run_id: str, key: str) -> Any:
    [entry] = [e for e in await runtime.store.load(run_id) if e.key == key]
    return entry.result


# -- lone surrogates -------------------------------------------------------------


async def test_a_lone_surrogate_in_a_tool_result_completes_and_replays_the_same(
    runtime: Runtime,
) -> None:
    @tool
    async def read_stream() -> str:
        """Read what a cut stream delivered."""
        return "half an emoji: \ud83d"

    model = ScriptedModel(
        [call("read_stream", id="r1"), call("pay", {"amount": 1}, id="p1"), "done"]
    )
    agent = Agent(name="reader", model=model, tools=[read_stream, pay])
    first = await runtime.run(agent, "go")
    assert first.status is RunStatus.INTERRUPTED
    seen = last_tool_result(model.requests[1]).content
    assert seen == f"half an emoji: {FFFD}"
    key = "reader/turn-1/tool/read_stream#r1"
    assert await _journaled(runtime, first.run_id, key) == {"content": seen, "is_error": False}

    [interrupt] = first.interrupts
    done = await runtime.resume(first.run_id, {interrupt.id: Approve()})
    assert done.status is RunStatus.COMPLETED
    assert tool_results(model.requests[2])[0].content == seen  # replayed, not re-run


async def test_a_lone_surrogate_in_model_text_completes_and_replays_the_same(
    runtime: Runtime,
) -> None:
    @tool
    async def balance() -> str:
        """The balance."""
        return "100"

    model = ScriptedModel(
        [
            ModelResponse(text="checking \ud83d", tool_calls=(ToolCall("b1", "balance", "{}"),)),
            call("pay", {"amount": 2}, id="p1"),
            "paid \udc00",
        ]
    )
    agent = Agent(name="payer", model=model, tools=[balance, pay])
    first = await runtime.run(agent, "go")
    assert first.status is RunStatus.INTERRUPTED
    response = model.requests[1].messages[1]
    assert isinstance(response, ModelResponse)
    assert response.text == f"checking {FFFD}"
    journaled = await _journaled(runtime, first.run_id, "payer/turn-1/model")
    assert journaled["text"] == response.text

    [interrupt] = first.interrupts
    done = await runtime.resume(first.run_id, {interrupt.id: Approve()})
    assert done.status is RunStatus.COMPLETED
    replayed = model.requests[2].messages[1]
    assert isinstance(replayed, ModelResponse)
    assert replayed.text == response.text
    assert done.output == f"paid {FFFD}"
    assert (await runtime.get(first.run_id)).output == done.output


async def test_a_nul_in_a_tool_result_and_in_model_text_is_journaled_as_the_run_saw_it(
    runtime: Runtime,
) -> None:
    """No store may refuse it (PostgreSQL's text and jsonb cannot hold U+0000)."""

    @tool
    async def read_file() -> str:
        """Read a binary-ish file."""
        return "header\x00body"

    model = ScriptedModel(
        [
            ModelResponse(text="reading\x00", tool_calls=(ToolCall("f1", "read_file", "{}"),)),
            "done",
        ]
    )
    result = await runtime.run(Agent(name="reader", model=model, tools=[read_file]), "go")
    assert result.status is RunStatus.COMPLETED
    seen = last_tool_result(model.requests[1]).content
    assert seen == f"header{FFFD}body"
    key = "reader/turn-1/tool/read_file#f1"
    assert await _journaled(runtime, result.run_id, key) == {"content": seen, "is_error": False}
    journaled = await _journaled(runtime, result.run_id, "reader/turn-1/model")
    assert journaled["text"] == f"reading{FFFD}"


async def test_a_lone_surrogate_in_a_tool_error_is_journaled(runtime: Runtime) -> None:
    @tool
    async def parse() -> str:
        """Parse a cut stream."""
        raise ValueError("cannot parse \ud83d")

    agent = Agent(name="p", model=ScriptedModel([call("parse")]), tools=[parse])
    result = await runtime.run(agent, "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert f"cannot parse {FFFD}" in result.error["message"]
    assert (await runtime.get(result.run_id)).error == result.error


# -- NaN, Infinity, big integers, keys -----------------------------------------------


async def test_nan_in_a_tool_result_fails_the_run_naming_the_path(runtime: Runtime) -> None:
    @tool
    async def quote() -> dict[str, Any]:
        """Prices of the basket."""
        return {"items": [{"price": 1.0}, {"price": 2.0}, {"price": 3.0}, {"price": math.nan}]}

    model = ScriptedModel([call("quote", id="q1"), "unused"])
    result = await runtime.run(Agent(name="shop", model=model, tools=[quote]), "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error["type"] == "ToolError"
    assert "Tool 'quote' returned a dict, which is not JSON" in result.error["message"]
    assert "result.items[3].price is nan" in result.error["message"]
    assert len(model.requests) == 1  # the model never read a `null` in its place
    assert (await runtime.get(result.run_id)).error == result.error
    failed = await _journaled(runtime, result.run_id, "shop/turn-1/tool/quote#q1")
    assert "result.items[3].price is nan" in failed["message"]


async def test_an_integer_beyond_64_bits_in_a_tool_result_names_the_path(
    runtime: Runtime,
) -> None:
    @tool
    async def account() -> dict[str, Any]:
        """The account."""
        return {"id": 2**70}

    model = ScriptedModel([call("account"), "unused"])
    result = await runtime.run(Agent(name="bank", model=model, tools=[account]), "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert (
        "result.id is 1180591620717411303424, an integer beyond 64 bits"
        in (result.error["message"])
    )


async def test_non_string_keys_reach_the_model_as_the_journal_holds_them(
    runtime: Runtime,
) -> None:
    @tool
    async def counts() -> dict[Any, str]:
        """Counts by number."""
        return {1: "one", 2.5: "two and a half", None: "none", False: "no"}

    model = ScriptedModel([call("counts", id="c1"), "ok"])
    result = await runtime.run(Agent(name="n", model=model, tools=[counts]), "go")
    assert result.status is RunStatus.COMPLETED
    content = last_tool_result(model.requests[1]).content
    assert content == '{"1":"one","2.5":"two and a half","null":"none","false":"no"}'
    assert (await _journaled(runtime, result.run_id, "n/turn-1/tool/counts#c1"))[
        "content"
    ] == content


async def test_a_step_value_is_the_journaled_value_first_time_and_on_replay(
    runtime: Runtime,
) -> None:
    seen: list[Any] = []

    async def fetch() -> dict[Any, Any]:
        return {1: "one", None: "none", "text": "cut \ud83d"}

    @workflow
    async def keyed(ctx: RunContext[None], input: Any) -> Any:
        value = await ctx.step("fetch", fetch)
        seen.append(value)
        await ctx.interrupt("go on?", name="ok")
        return value

    first = await runtime.run(keyed, None)
    assert first.status is RunStatus.INTERRUPTED
    expected = {"1": "one", "null": "none", "text": f"cut {FFFD}"}
    assert seen == [expected]
    assert await _journaled(runtime, first.run_id, "keyed/fetch") == expected
    [interrupt] = first.interrupts
    done = await runtime.resume(first.run_id, {interrupt.id: "yes"})
    assert seen == [expected, expected]
    assert done.output == expected
    assert (await runtime.get(first.run_id)).output == expected


async def test_infinity_in_a_step_value_fails_the_run_naming_the_path(runtime: Runtime) -> None:
    async def measure() -> list[float]:
        return [1.0, math.inf]

    @workflow
    async def measuring(ctx: RunContext[None], input: Any) -> Any:
        return await ctx.step("measure", measure)

    result = await runtime.run(measuring, None)
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error["message"] == (
        "Step measuring/measure returned a list, which is not JSON: result[1] is inf, which "
        "JSON cannot hold (it would be read back as null): return None, a number or a string "
        "in its place."
    )
    assert (await runtime.get(result.run_id)).error == result.error


async def test_nan_in_a_run_output_fails_the_run(runtime: Runtime) -> None:
    @workflow
    async def ratio(ctx: RunContext[None], input: Any) -> Any:
        return {"ratio": math.nan}

    result = await runtime.run(ratio, None)
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "output.ratio is nan" in result.error["message"]
    assert (await runtime.get(result.run_id)).status is RunStatus.FAILED


async def test_nan_in_the_run_input_is_a_user_error(runtime: Runtime) -> None:
    with pytest.raises(UserError, match=r"input\.x is nan"):
        await runtime.run(Agent(name="a", model=ScriptedModel(["never"])), {"x": math.nan})
    assert await runtime.list() == []


# -- answers are validated strictly --------------------------------------------------


@workflow
async def how_many(ctx: RunContext[None], input: Any) -> Any:
    return await ctx.interrupt("How many?", name="count", answer_type=int)


@pytest.mark.parametrize("answer", [True, "3", 3.0])
async def test_an_int_answer_refuses_what_is_not_an_int(runtime: Runtime, answer: Any) -> None:
    first = await runtime.run(how_many, None)
    [interrupt] = first.interrupts
    before = await journal_snapshot(runtime, first.run_id)
    with pytest.raises(AnswerError, match=f"to interrupt {interrupt.id}"):
        await runtime.resume(first.run_id, {interrupt.id: answer})
    assert await journal_snapshot(runtime, first.run_id) == before
    assert (await runtime.get(first.run_id)).status is RunStatus.INTERRUPTED
    done = await runtime.resume(first.run_id, {interrupt.id: 3})
    assert done.output == 3


async def test_a_bool_answer_refuses_a_word(runtime: Runtime) -> None:
    @workflow
    async def confirm(ctx: RunContext[None], input: Any) -> Any:
        return await ctx.interrupt("Sure?", name="sure", answer_type=bool)

    first = await runtime.run(confirm, None)
    [interrupt] = first.interrupts
    with pytest.raises(AnswerError, match="valid boolean"):
        await runtime.resume(first.run_id, {interrupt.id: "yes"})
    assert (await runtime.resume(first.run_id, {interrupt.id: False})).output is False


async def test_an_approval_with_nan_in_its_edited_arguments_is_refused(runtime: Runtime) -> None:
    model = ScriptedModel([call("pay", {"amount": 1}, id="p1"), "paid"])
    first = await runtime.run(Agent(name="payer", model=model, tools=[pay]), "go")
    [interrupt] = first.interrupts
    before = await journal_snapshot(runtime, first.run_id)
    with pytest.raises(AnswerError, match=r"answer\.arguments\.amount is nan"):
        await runtime.resume(first.run_id, {interrupt.id: Approve({"amount": math.nan})})
    assert await journal_snapshot(runtime, first.run_id) == before
    done = await runtime.resume(first.run_id, {interrupt.id: Approve({"amount": 2})})
    assert done.output == "paid"


# -- names -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bank\n", "bank\r\n", "\nbank"])
def test_a_name_with_a_newline_is_refused(name: str) -> None:
    async def flow(ctx: RunContext[None], input: Any) -> Any:
        return input

    async def fn() -> str:
        return ""

    with pytest.raises(UserError, match=r"Agent name .* is invalid"):
        Agent(name=name)
    with pytest.raises(UserError, match=r"Tool name .* is invalid"):
        tool(name=name)(fn)
    with pytest.raises(UserError, match=r"Workflow name .* is invalid"):
        workflow(name=name)(flow)
    with pytest.raises(UserError, match=r"name .* is invalid"):
        Sequential(name=name, members=[Agent(name="a")])


# -- nesting ---------------------------------------------------------------------


@workflow
async def itself(ctx: RunContext[None], input: Any) -> Any:
    return await ctx.run(itself, input)


async def test_a_workflow_that_runs_itself_fails_with_one_line(runtime: Runtime) -> None:
    result = await runtime.run(itself, None)
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error["type"] == "NestingTooDeep"
    message = result.error["message"]
    assert "\n" not in message
    assert f"nests members {MAX_NESTING + 1} deep, past the limit of {MAX_NESTING}" in message
    assert "at itself/itself/itself/.../itself/itself" in message
    assert (await runtime.get(result.run_id)).status is RunStatus.FAILED


async def test_an_agent_that_delegates_to_itself_fails_with_one_line(runtime: Runtime) -> None:
    @tool
    async def again(ctx: RunContext[None]) -> str:
        """Ask myself."""
        return str(await ctx.run(me, "go"))

    me = Agent(name="me", model=FunctionModel(lambda request: call("again")), tools=[again])
    result = await runtime.run(me, "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error["type"] == "NestingTooDeep"
    assert "\n" not in result.error["message"]


async def test_nesting_is_counted_per_branch_and_per_call(runtime: Runtime) -> None:
    @workflow
    async def down(ctx: RunContext[None], n: Any) -> Any:
        return n if n == 0 else await ctx.run(down, n - 1)

    @workflow
    async def wide(ctx: RunContext[None], input: Any) -> Any:
        deep = MAX_NESTING - 3  # each well within the limit; together far beyond it
        first = await ctx.run(down, deep, key="first")
        second = await ctx.run(down, deep, key="second")
        both = await ctx.gather(ctx.run(down, deep, key="left"), ctx.run(down, deep, key="right"))
        return [first, second, *both]

    result = await runtime.run(wide, None)
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.output == [0, 0, 0, 0]


# -- where a tool's exception came from -----------------------------------------------

SECRET = "sk-test-0123456789abcdef"


@tool
async def explode() -> str:
    """Fails."""
    raise ValueError("refused by sk-test-0123456789abcdef")  # raised here


def _raise_line() -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.endswith("# raised here"))


async def test_a_tool_exception_keeps_where_it_came_from(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYMENTS_API_KEY", SECRET)
    model = ScriptedModel([call("explode", id="e1")])
    result = await runtime.run(Agent(name="x", model=model, tools=[explode]), "go")
    assert result.status is RunStatus.FAILED
    where = f"{__file__}:{_raise_line()}"
    failed = await _journaled(runtime, result.run_id, "x/turn-1/tool/explode#e1")
    for error in (failed, result.error, (await runtime.get(result.run_id)).error):
        assert error is not None
        assert error["where"] == where
        assert error["traceback"] == [
            f'{where} in explode: raise ValueError("refused by <redacted>")  # raised here'
        ]
        assert SECRET not in str(error)
    history = await runtime.history(result.run_id)
    assert history[-1].status is StepStatus.FAILED


async def test_a_failing_sync_tool_shows_its_own_frames_not_the_thread_pool(
    runtime: Runtime,
) -> None:
    def helper() -> None:
        raise KeyError("missing")

    @tool
    def lookup() -> str:
        """Look up."""
        helper()
        return "never"

    agent = Agent(name="x", model=ScriptedModel([call("lookup")]), tools=[lookup])
    result = await runtime.run(agent, "go")
    assert result.error is not None
    trace = result.error["traceback"]
    assert [frame.split(" in ")[1].split(":")[0] for frame in trace] == ["lookup", "helper"]
    assert result.error["where"] == trace[-1].split(" in ")[0]


async def test_a_tool_returning_something_that_is_not_json_says_so(runtime: Runtime) -> None:
    class Receipt:
        pass

    @tool
    def pay() -> object:
        return Receipt()

    result = await runtime.run(
        Agent(name="a", model=ScriptedModel([call("pay")]), tools=[pay]), "go"
    )
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "returned a Receipt, which is not JSON" in result.error["message"]
