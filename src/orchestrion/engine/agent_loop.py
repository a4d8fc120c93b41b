"""The agent loop: ask the model, run the tools it calls, repeat until a final answer.

Each model request is the step `<scope>/turn-N/model`; each tool call is
`<scope>/turn-N/tool/<name>#<call id>`. The conversation is rebuilt from the
journaled responses and tool results on replay.
"""

from __future__ import annotations

import time
from typing import Any

import pydantic

from orchestrion import keys
from orchestrion._json import (
    JSON,
    NotJSON,
    as_object,
    dumps_str,
    loads,
    to_jsonable,
)
from orchestrion.agent import FINAL_RESULT_TOOL, Agent, ContextLimit
from orchestrion.engine.execution import Context, Execution
from orchestrion.engine.interrupts import (
    APPROVAL_SCHEMA,
    Approve,
    Reject,
    decision_of,
    normalize_approval,
)
from orchestrion.engine.journal import StepStatus
from orchestrion.engine.model_calls import model_chain
from orchestrion.engine.records import ToolReturned, expect
from orchestrion.engine.tool_calls import execute, invoke
from orchestrion.errors import (
    AnswerError,
    ContextTooLarge,
    MaxTurnsExceeded,
    OutputValidationError,
    validation_summary,
)
from orchestrion.loops import LoopWatch, WriteAhead
from orchestrion.messages import (
    Conversation,
    HandedOff,
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResult,
    UserMessage,
    size_of,
)
from orchestrion.tools.roles import FinalResult, Transfer
from orchestrion.tools.tool import Tool


async def run_agent(ex: Execution, scope: str, agent: Agent[Any, Any], input: JSON) -> Any:
    chain = model_chain(ex, agent)
    instructions = agent.instructions
    if callable(instructions):
        instructions = instructions(Context(ex, scope))
    messages: list[Message] = _first_messages(input)
    watch = LoopWatch(agent.loop_guard)
    retries_left = agent.output_retries
    for turn in range(1, agent.max_turns + 1):
        prefix, model_key = keys.turn_keys(scope, turn)
        size = 0
        if ex.events.streaming or agent.context_limit is not None:
            size = _estimate(agent, instructions, messages)
            limit = agent.context_limit
            if limit is not None and size > limit.max_tokens:
                messages, size = await _fit(ex, scope, agent, limit, instructions, messages, turn)
        request = ModelRequest(
            instructions or None, tuple(messages), agent.tool_definitions, agent.model_settings
        )
        response = await ex.model_step(model_key, chain, request, size)
        messages.append(response)
        calls = response.tool_calls
        if agent.output_adapter is not None:
            ok, output, problem = _typed_output(agent, response)
        elif not calls:
            ok, output, problem = True, response.text or "", ""
        else:
            ok, output, problem = False, None, ""
        if ok:
            if any(not isinstance(agent.tool_roles.get(c.name), FinalResult) for c in calls):
                await _run_tool_calls(ex, agent, prefix, calls, "")  # asked for with the answer
            return output
        if problem:
            if retries_left == 0:
                raise OutputValidationError(
                    f"Agent {agent.name!r} gave an invalid final answer "
                    f"{agent.output_retries + 1} times; last problem: {problem}. "
                    "Raise output_retries, simplify output_type or improve the instructions."
                )
            retries_left -= 1
        messages.extend(await _watched_tool_calls(ex, agent, watch, prefix, calls, problem))
        if not calls:
            messages.append(UserMessage(problem))
        handed = _handed_off(agent, calls, messages) if agent.handoffs else None
        if handed is not None:
            found = ex.log.replay.get(model_key)  # the journal as it was: this turn replayed
            replayed = found is not None and found.status is StepStatus.COMPLETED
            ex.events.transferred(prefix, agent.name, handed.target, handed.reason, replayed)
            return handed
    raise MaxTurnsExceeded(
        f"Agent {agent.name!r} reached max_turns={agent.max_turns} without a final answer. "
        "Raise max_turns, or check its instructions and tools."
    )


def _estimate(agent: Agent[Any, Any], instructions: str, messages: list[Message]) -> int:
    """Tokens of a request, estimated at four characters a token."""
    chars = len(instructions or "") + agent.fixed_size + sum(size_of(m) for m in messages)
    return chars // 4 + 1


async def _fit(
    ex: Execution,
    scope: str,
    agent: Agent[Any, Any],
    limit: ContextLimit,
    instructions: str,
    messages: list[Message],
    turn: int,
) -> tuple[list[Message], int]:
    """Shrink the conversation under the limit: drop the oldest exchanges (a model
    answer with its tool results) after the task, summarising them if asked.
    Decided from journaled data only, so replay shrinks the same way."""
    if limit.action == "fail":
        size = _estimate(agent, instructions, messages)
        raise ContextTooLarge(
            f"Agent {agent.name!r}: the request for turn {turn} is about {size} tokens, over its "
            f"ContextLimit max_tokens={limit.max_tokens}. Raise the limit, use "
            "action='drop_oldest' (optionally with a summarizer), or give the agent less to read."
        )
    head, rest, dropped = messages[:1], messages[1:], []
    while rest and _estimate(agent, instructions, head + rest) > limit.max_tokens:
        cut = 1
        while cut < len(rest) and not isinstance(rest[cut], ModelResponse):
            cut += 1
        if cut >= len(rest):
            break  # keep the latest exchange: the model needs its newest results
        dropped.extend(rest[:cut])
        rest = rest[cut:]
    if limit.summarizer is not None and dropped:
        summary = await Context(ex, scope).run(
            limit.summarizer, _render(dropped), key=keys.numbered("summary", turn)
        )
        head = [*head, UserMessage(f"[summary of earlier turns]\n{summary}")]
    fitted = head + rest
    size = _estimate(agent, instructions, fitted)
    if size > limit.max_tokens:
        raise ContextTooLarge(
            f"Agent {agent.name!r}: the request for turn {turn} is still about {size} tokens "
            f"after dropping older turns, over ContextLimit max_tokens={limit.max_tokens}: the "
            "task and the latest exchange alone are too large. Raise the limit."
        )
    return fitted, size


def _render(messages: list[Message]) -> str:
    lines = []
    for m in messages:
        if isinstance(m, ModelResponse):
            calls = ", ".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
            lines.append(f"assistant: {m.text or ''} {calls}".strip())
        elif isinstance(m, ToolResult):
            lines.append(f"tool {m.name}: {m.content}")
        else:
            lines.append(f"user: {m.content}")
    return "\n".join(lines)


def _first_messages(input: JSON | Conversation) -> list[Message]:
    if isinstance(input, Conversation):
        return list(input.messages)
    return [UserMessage(input if isinstance(input, str) else dumps_str(input))]


def _handed_off(
    agent: Agent[Any, Any], calls: tuple[ToolCall, ...], messages: list[Message]
) -> HandedOff | None:
    """The conversation handed on by the first transfer call of this turn, if any."""
    for c in calls:
        role = agent.tool_roles.get(c.name)
        if isinstance(role, Transfer):
            try:
                reason = loads(c.arguments or "{}").get("reason", "")
            except (ValueError, AttributeError):
                reason = ""
            return HandedOff(role.target, str(reason), tuple(messages))
    return None


def _typed_output(agent: Agent[Any, Any], response: ModelResponse) -> tuple[bool, Any, str]:
    """(ok, output, problem): the validated final answer, or why there is none yet."""
    adapter = agent.output_adapter
    assert adapter is not None
    final = [
        c for c in response.tool_calls if isinstance(agent.tool_roles.get(c.name), FinalResult)
    ]
    if final:
        raw: str = final[0].arguments
    elif response.tool_calls:
        return False, None, ""
    else:
        raw = (response.text or "").strip()
        if not raw:
            return False, None, f"Give your final answer by calling the {FINAL_RESULT_TOOL} tool."
    try:
        data = loads(raw)
        if agent.output_wrapped and isinstance(data, dict) and set(data) == {"result"}:
            data = data["result"]
        return True, adapter.validate_python(data), ""
    except pydantic.ValidationError as exc:
        reason = validation_summary(exc)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        reason = f"not valid JSON ({exc})"
    return (
        False,
        None,
        (
            f"The final answer is invalid: {reason}. Call {FINAL_RESULT_TOOL} again with corrected arguments."
        ),
    )


async def _watched_tool_calls(
    ex: Execution,
    agent: Agent[Any],
    watch: LoopWatch,
    prefix: str,
    calls: tuple[ToolCall, ...],
    final_problem: str,
) -> list[ToolResult]:
    """This turn's tool results, each with the note of the loop it closes, if any. The
    loop guard looks at the calls before they run (a looping write is stopped before
    it happens) and at their results."""
    ctx: Context[Any] | None = None
    if agent.loop_guard is not None and calls:
        ctx = Context(ex, prefix)
        for i, c in enumerate(calls):
            if watch.watches_write(agent, c):
                await watch.check(ctx, WriteAhead(agent=agent, calls=calls, index=i))
    if len(calls) == 1:  # the usual turn: awaited here, one coroutine fewer per call held
        key = keys.tool_keys(prefix, calls)[0]
        results = [await _run_tool_call(ex, agent, key, calls[0], final_problem)]
    else:
        results = await _run_tool_calls(ex, agent, prefix, calls, final_problem)
    return results if ctx is None else await watch.calls_done(ctx, agent, calls, results)


async def _run_tool_calls(
    ex: Execution,
    agent: Agent[Any, Any],
    prefix: str,
    calls: tuple[ToolCall, ...],
    final_problem: str,
) -> list[ToolResult]:
    steps = keys.tool_keys(prefix, calls)
    if len(calls) == 1:
        return [await _run_tool_call(ex, agent, steps[0], calls[0], final_problem)]
    runs = (
        _run_tool_call(ex, agent, k, c, final_problem) for k, c in zip(steps, calls, strict=True)
    )
    return await ex.gather(prefix, runs)


async def _run_tool_call(
    ex: Execution, agent: Agent[Any, Any], key: str, call: ToolCall, final_problem: str
) -> ToolResult:
    role = agent.tool_roles.get(call.name)
    if role is not None:
        if isinstance(role, Transfer):
            return ToolResult(call.id, call.name, f"Transferred to {role.target}.", False)
        if isinstance(role, FinalResult):
            # Deterministic from the recorded response: no step needed.
            return ToolResult(
                call.id, call.name, final_problem or "Final answer received.", bool(final_problem)
            )
    done = ex.log.claim(key, f"tool call {call.name!r} of agent {agent.name!r}")
    tool = agent.tool_map.get(call.name)
    if done is not None:
        ex.accounts.spent_below(key)  # e.g. a delegation's worker
        ex.events.step_replayed(key, "tool", done.result)
        returned = expect(done, ToolReturned)
        if tool is not None and tool.local and not returned.is_error:
            await invoke(ex, key, tool, tool.parse_arguments(call.arguments))
        return ToolResult(call.id, call.name, returned.content, returned.is_error)
    if tool is None:
        known = ", ".join(sorted(d.name for d in agent.tool_definitions)) or "none"
        message = f"Unknown tool {call.name!r}. This agent can call only: {known}."
        return await _answer_error(ex, key, call, "unknown_tool", message)
    try:
        arguments = tool.parse_arguments(call.arguments)
    except pydantic.ValidationError as exc:
        problem = _argument_problem(tool, call, exc)
        return await _answer_error(ex, key, call, "invalid_arguments", problem)
    note = ""
    if tool.max_calls is not None:
        # Before the approval: no one is asked in vain.
        refusal = ex.accounts.tool_runs.take(tool, key)
        if refusal is not None:
            return await _answer_error(ex, key, call, "limit", refusal)
    if tool.approval is not False and tool.needs_approval(arguments):
        match await _approval(ex, agent, key, tool, call):
            case Reject(reason=reason):
                ex.accounts.tool_runs.give_back(tool, key)
                why = reason or "no reason given"
                rejected = f"The user rejected this call: {why}"
                return await _answer_error(ex, key, call, "rejected", rejected)
            case Approve(arguments=edited) if edited is not None:
                arguments = tool.parse_arguments(edited)
                note = f"[The user edited the arguments to {dumps_str(edited)}] "
    result = await execute(ex, agent, key, tool, call, arguments, note)
    if result.is_error:
        ex.accounts.tool_runs.give_back(tool, key)  # the model is asked to try again: no place used
    return result


async def _approval(
    ex: Execution, agent: Agent[Any, Any], key: str, tool: Tool, call: ToolCall
) -> Approve | Reject:
    def validate(iid: str, answer: JSON) -> JSON:
        try:
            checked = as_object(to_jsonable(normalize_approval(iid, answer), "answer"))
        except NotJSON as exc:
            raise AnswerError(f"Answer to approval {iid} is not JSON: {exc}") from None
        if "arguments" in checked:
            try:
                tool.parse_arguments(checked["arguments"])
            except pydantic.ValidationError as exc:
                raise AnswerError(
                    f"Edited arguments {checked['arguments']!r} for tool {tool.name!r} "
                    f"(approval {iid}) are invalid: {validation_summary(exc)}. Schema: {tool.parameters}"
                ) from None
        return checked

    try:
        shown: JSON = loads(call.arguments)
    except ValueError:
        shown = call.arguments
    payload = {"agent": agent.name, "tool": tool.name, "arguments": shown, "call_id": call.id}
    answer = await ex.interrupt(
        keys.approval_key(key), "approval", payload, APPROVAL_SCHEMA, validate, f"approval of {key}"
    )
    return decision_of(as_object(answer, f"the answer to approval {key}"))


async def _answer_error(
    ex: Execution, key: str, call: ToolCall, kind: str, message: str
) -> ToolResult:
    """Answer the model with an error, journaled like any tool result; `kind` says why
    (the span's `error.type`)."""
    started = time.time()
    ex.events.step_started(key, "tool")
    await ex.completed(key, "tool", ToolReturned(content=message, is_error=True), started)
    if ex.env.tracing is not None:
        ex.env.tracing.refused(ex.run_id, key, call, kind, message)
    return ToolResult(call.id, call.name, message, True)


def _argument_problem(tool: Tool, call: ToolCall, exc: pydantic.ValidationError) -> str:
    if any(e["type"] == "json_invalid" for e in exc.errors()):
        return (
            f"The arguments for {tool.name!r} are not valid JSON: {call.arguments[:200]!r}. "
            "Send a JSON object matching the tool's schema."
        )
    return (
        f"Invalid arguments for {tool.name!r}: {validation_summary(exc)}. Fix them and call again."
    )
