"""`GroupChat` and termination conditions."""

from __future__ import annotations

import pytest

from orchestrion import (
    Agent,
    Approve,
    CostBudget,
    GroupChat,
    LoopGuard,
    LoopGuardTriggered,
    MaxTurns,
    Price,
    RunStatus,
    Runtime,
    TextMention,
    Timeout,
    TokenBudget,
    UserError,
    tool,
)
from orchestrion.engine.store import Store
from orchestrion.messages import ModelRequest, UserMessage
from orchestrion.patterns import ChatState, When, group_chat
from orchestrion.testing import FunctionModel, ScriptedModel, call


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


async def test_cost_budget_stops_the_chat_once_spent(store: Store) -> None:
    runtime = Runtime(store, prices={"test:scripted": Price(input=0.01, output=0.01)})
    chat = GroupChat(
        name="c", participants=[speaker("a", ["x" * 400] * 20)], termination=CostBudget(0.00001)
    )
    result = await runtime.run(chat, "go")
    assert result.output["stopped"].startswith("spent $0.0000")
    spent_per_turn = result.usage.cost / result.usage.requests
    assert result.usage.cost - spent_per_turn < 0.00001 <= result.usage.cost


async def test_cost_budget_on_unpriced_models_fails_clearly(runtime: Runtime) -> None:
    chat = GroupChat(name="c", participants=[speaker("a", ["hi"] * 3)], termination=CostBudget(1.0))
    with pytest.raises(UserError, match="no known price"):
        await runtime.run(chat, "go")


class FakeClock:
    """Seconds that advance by `step` each time the chat reads the clock."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1_000.0, step

    async def __call__(self) -> float:
        self.now += self.step
        return self.now


async def test_timeout_reads_a_journaled_clock_so_a_resume_agrees(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(step=10.0)
    monkeypatch.setattr(group_chat, "_clock", clock)

    @tool(approval=True)
    def publish(text: str) -> str:
        return "published"

    writer = Agent(name="writer", model=ScriptedModel(["draft", "draft 2"]))
    editor = Agent(
        name="editor",
        model=ScriptedModel([[call("publish", {"text": "draft"})], "published it"]),
        tools=[publish],
    )
    chat = GroupChat(name="c", participants=[writer, editor], termination=Timeout(25) | MaxTurns(9))
    first = await runtime.run(chat, "go")
    assert first.status is RunStatus.INTERRUPTED  # on turn 2 (clock read at 10 s)
    clock.step = 1_000.0  # the human took a long time: the journaled readings still hold
    done = await runtime.resume(first.run_id, {first.interrupts[0].id: Approve()})
    transcript = done.output["transcript"]
    assert [who for who, _ in transcript] == ["user", "writer", "editor"]
    assert done.output["stopped"] == "ran 1010.0 s of 25"
    clocks = [s.result for s in await runtime.history(done.run_id) if "/clock-" in s.key]
    assert clocks == [1010.0, 1020.0, 2020.0], "read once per turn, replayed on resume"


def test_timeout_and_cost_conditions_read_the_state() -> None:
    from orchestrion.messages import Usage

    state = ChatState((("user", "x"), ("a", "y")), Usage(10, 5, 1, cost=0.02), elapsed=30.0)
    assert Timeout(30).check(state) == "ran 30.0 s of 30"
    assert Timeout(31).check(state) is None
    assert CostBudget(0.02).check(state) == "spent $0.0200 of $0.02"
    assert CostBudget(0.03).check(state) is None
    with pytest.raises(UserError, match="seconds must be positive"):
        Timeout(0)


def parrot(name: str, line: str, prompts: list[str]) -> Agent[str]:
    """Says `line` every turn, until the loop guard's note reaches it."""

    def speak(request: ModelRequest) -> str:
        first = request.messages[0]
        assert isinstance(first, UserMessage)
        prompts.append(first.content)
        return "let us wrap up" if "[loop guard]" in first.content else line

    return Agent(name=name, model=FunctionModel(speak))


async def test_a_participant_repeating_itself_is_warned_about(store: Store) -> None:
    events: list[object] = []
    prompts: list[str] = []
    chat = GroupChat(
        name="c",
        participants=[parrot("a", "I disagree.", prompts), parrot("b", "Why?", prompts)],
        termination=MaxTurns(6),
    )
    result = await Runtime(store, sinks=[events.append]).run(chat, "discuss")
    said = [t for _, t in result.output["transcript"]]
    # a repeats itself at turns 3 and 5; each time b is told and changes course
    assert said == [
        "discuss",
        "I disagree.",
        "Why?",
        "I disagree.",
        "let us wrap up",
        "I disagree.",
        "let us wrap up",
    ]
    assert "[loop guard] a has now said the same thing 2 times (turns 1, 3)" in prompts[3]
    loops = [(e.kind, e.subject, e.times) for e in events if isinstance(e, LoopGuardTriggered)]
    assert loops == [("no_progress", "c", 2), ("no_progress", "c", 3), ("no_progress", "c", 2)]


async def test_a_chat_without_progress_can_stop_the_run(runtime: Runtime) -> None:
    prompts: list[str] = []
    chat = GroupChat(
        name="c",
        participants=[parrot("a", "same", prompts)],
        termination=MaxTurns(9),
        loop_guard=LoopGuard(repeats=3, policy="stop"),
    )
    result = await runtime.run(chat, "go")
    assert result.status is RunStatus.STOPPED
    assert result.error is not None
    assert "a said the same thing 3 times (turns 1, 2, 3)" in result.error["message"]
    assert set(result.partial) == {"c/turn-1/a", "c/turn-2/a", "c/turn-3/a"}
