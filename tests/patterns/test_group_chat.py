"""`GroupChat` and termination conditions."""

from __future__ import annotations

import pytest

from orchestrion import (
    Agent,
    GroupChat,
    MaxTurns,
    RunStatus,
    Runtime,
    TextMention,
    TokenBudget,
    UserError,
)
from orchestrion.messages import ModelRequest, UserMessage
from orchestrion.patterns import ChatState, When
from orchestrion.testing import FunctionModel, ScriptedModel


def speaker(name: str, lines: list[str]) -> Agent[str]:
    return Agent(name=name, model=ScriptedModel(lines))


async def test_round_robin_until_max_turns(runtime: Runtime) -> None:
    chat = GroupChat(
        name="review",
        participants=[speaker("writer", ["draft 1", "draft 2"]), speaker("critic", ["too long"])],
        termination=MaxTurns(3),
    )
    result = await runtime.run(chat, "write a tagline")
    assert result.output == {
        "transcript": [
            ["user", "write a tagline"],
            ["writer", "draft 1"],
            ["critic", "too long"],
            ["writer", "draft 2"],
        ],
        "stopped": "reached 3 turns",
    }


async def test_everyone_reads_the_shared_transcript(runtime: Runtime) -> None:
    seen: list[str] = []

    def critic(request: ModelRequest) -> str:
        first = request.messages[0]
        assert isinstance(first, UserMessage)
        seen.append(first.content)
        return "APPROVED"

    chat = GroupChat(
        name="c",
        participants=[
            speaker("writer", ["draft"]),
            Agent(name="critic", model=FunctionModel(critic)),
        ],
        termination=TextMention("APPROVED") | MaxTurns(10),
    )
    result = await runtime.run(chat, "task")
    assert result.output["stopped"] == "critic said 'APPROVED'"
    assert (
        "[user]\ntask" in seen[0] and "[writer]\ndraft" in seen[0] and "You are critic" in seen[0]
    )


async def test_a_selector_agent_chooses_the_next_speaker(runtime: Runtime) -> None:
    selector = Agent(name="selector", model=ScriptedModel(["critic", "writer"]))
    chat = GroupChat(
        name="c",
        participants=[speaker("writer", ["w"]), speaker("critic", ["c"])],
        speaker=selector,
        termination=MaxTurns(2),
    )
    result = await runtime.run(chat, "task")
    assert [who for who, _ in result.output["transcript"]] == ["user", "critic", "writer"]


async def test_a_function_chooses_and_a_wrong_choice_fails_clearly(runtime: Runtime) -> None:
    chat = GroupChat(
        name="c",
        participants=[speaker("a", ["x"])],
        speaker=lambda state, names: "nobody",
        termination=MaxTurns(1),
    )
    result = await runtime.run(chat, "task")
    assert result.status is RunStatus.FAILED
    assert "chose 'nobody', not one of ['a']" in result.error["message"]


async def test_token_budget_and_function_conditions_compose(runtime: Runtime) -> None:
    long_talk = [f"line {i} " * 20 for i in range(10)]
    chat = GroupChat(
        name="c",
        participants=[speaker("a", long_talk)],
        termination=TokenBudget(200) & When(lambda s: "even" if s.turns % 2 == 0 else None),
    )
    result = await runtime.run(chat, "go")
    assert "tokens and even" in result.output["stopped"]
    assert (len(result.output["transcript"]) - 1) % 2 == 0


def test_conditions_read_only_the_state() -> None:
    from orchestrion.messages import Usage

    state = ChatState((("user", "x"), ("a", "done: TERMINATE")), Usage(10, 5, 1))
    assert (MaxTurns(5) | TextMention("TERMINATE")).check(state) == "a said 'TERMINATE'"
    assert (MaxTurns(5) & TextMention("TERMINATE")).check(state) is None
    assert TokenBudget(15).check(state) == "used 15 of 15 tokens"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"participants": []}, "needs participants with distinct names"),
        ({"participants": [speaker("a", [])], "speaker": "loudest"}, "speaker must be"),
        ({"participants": [speaker("a", [])], "termination": 3}, "termination must be a Condition"),
    ],
)
def test_bad_chats_fail_at_definition_time(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        GroupChat(name="c", **kwargs)  # type: ignore[arg-type]


async def test_a_crashed_chat_resumes_without_asking_earlier_speakers_again(
    runtime: Runtime,
) -> None:
    import asyncio

    asked: list[str] = []
    crash = {"on": True}

    def participant(name: str) -> Agent[str]:
        def speak(request: ModelRequest) -> str:
            asked.append(name)
            if name == "critic" and crash["on"]:
                crash["on"] = False
                raise asyncio.CancelledError  # the process dies on the critic's turn
            return f"{name} says hi"

        return Agent(name=name, model=FunctionModel(speak))

    chat = GroupChat(
        name="c",
        participants=[participant("writer"), participant("critic")],
        termination=MaxTurns(3),
    )
    with pytest.raises(asyncio.CancelledError):
        await runtime.run(chat, "task", run_id="g1")
    done = await Runtime(runtime.store).resume("g1", runnable=chat)
    assert [who for who, _ in done.output["transcript"]] == ["user", "writer", "critic", "writer"]
    assert asked == ["writer", "critic", "critic", "writer"]
