"""`Supervisor` and hierarchies of supervisors."""

from __future__ import annotations

import pytest

from orchestrion import (
    Agent,
    Approve,
    LoopGuard,
    LoopGuardTriggered,
    RunStatus,
    Runtime,
    Supervisor,
    UserError,
    tool,
)
from orchestrion.engine.store import Store
from orchestrion.messages import ModelRequest, ToolResult, UserMessage
from orchestrion.testing import FunctionModel, ScriptedModel, call


def worker(name: str, prefix: str) -> Agent[str]:
    def answer(request: ModelRequest) -> str:
        first = request.messages[0]
        assert isinstance(first, UserMessage)
        return f"{prefix}: {first.content}"

    return Agent(name=name, model=FunctionModel(answer), description=f"The {name} desk.")


def results(request: ModelRequest) -> list[ToolResult]:
    return [m for m in request.messages if isinstance(m, ToolResult)]


async def test_manager_delegates_in_parallel_then_pays_with_approval(runtime: Runtime) -> None:
    payments: list[float] = []

    @tool(effect="write", approval=True)
    def pay(amount: float) -> str:
        payments.append(amount)
        return f"paid {amount}"

    payer = Agent(
        name="payments",
        model=ScriptedModel([call("pay", {"amount": 4812.5}), "payment done"]),
        tools=[pay],
    )

    def plan(request: ModelRequest) -> object:
        done = results(request)
        if not done:
            return [
                call("delegate_to_loans", {"task": "find the car loan"}, id="d1"),
                call("delegate_to_balances", {"task": "savings balance"}, id="d2"),
            ]
        if len(done) == 2:
            return call("delegate_to_payments", {"task": "pay 4812.50 from savings"}, id="d3")
        return f"Finished: {done[-1].content}"

    team = Supervisor(
        name="loan-payoff",
        manager=Agent(name="manager", model=FunctionModel(plan)),
        workers=[worker("loans", "LOAN"), worker("balances", "BAL"), payer],
    )
    first = await runtime.run(team, "Pay off my car loan using savings")
    assert first.status is RunStatus.INTERRUPTED
    assert first.interrupts[0].key.startswith(
        "loan-payoff/manager/turn-2/tool/delegate_to_payments#d3/payments/turn-1/tool/pay"
    )
    done = await runtime.resume(first.run_id, {first.interrupts[0].id: Approve()})
    assert done.output == "Finished: payment done"
    assert payments == [4812.5]
    keys = [s.key for s in await runtime.history(first.run_id)]
    assert "loan-payoff/manager/turn-1/tool/delegate_to_loans#d1/loans/turn-1/model" in keys


async def test_manager_sees_its_workers_as_tools_with_descriptions(runtime: Runtime) -> None:
    manager_model = ScriptedModel(["nothing to do"])
    team = Supervisor(
        name="t", manager=Agent(name="m", model=manager_model), workers=[worker("search", "S")]
    )
    await runtime.run(team, "x")
    [definition] = manager_model.requests[0].tools
    assert definition.name == "delegate_to_search"
    assert definition.description.startswith("The search desk.")
    assert definition.parameters["required"] == ["task"]
    assert "delegate_to_search" in (manager_model.requests[0].instructions or "")


async def test_a_failed_worker_is_reported_to_the_manager(runtime: Runtime) -> None:
    broken = Agent(name="broken", model=ScriptedModel([call("nope"), call("nope")]), max_turns=2)

    def plan(request: ModelRequest) -> object:
        done = results(request)
        if not done:
            return call("delegate_to_broken", {"task": "try"}, id="d1")
        if len(done) == 1:
            assert (
                done[0].is_error and "Worker 'broken' failed: MaxTurnsExceeded" in done[0].content
            )
            return call("delegate_to_backup", {"task": "try instead"}, id="d2")
        return f"recovered with {done[-1].content}"

    team = Supervisor(
        name="t",
        manager=Agent(name="m", model=FunctionModel(plan)),
        workers=[broken, worker("backup", "B")],
    )
    result = await runtime.run(team, "x")
    assert result.output == "recovered with B: try instead"


def supervisor_of(name: str, target: str, below: object) -> Supervisor:
    def plan(request: ModelRequest) -> object:
        done = results(request)
        if not done:
            return call(f"delegate_to_{target}", {"task": f"{name} plan"}, id=f"{name}-1")
        return f"{name}<{done[-1].content}>"

    return Supervisor(
        name=name, manager=Agent(name=f"{name}-lead", model=FunctionModel(plan)), workers=[below]
    )  # type: ignore[list-item]


async def test_three_levels_with_an_interrupt_at_the_bottom_resume_in_place(
    runtime: Runtime,
) -> None:
    executed: list[str] = []

    @tool(approval=True)
    def deploy(what: str) -> str:
        executed.append(what)
        return f"deployed {what}"

    execution = Agent(
        name="execution",
        model=ScriptedModel([call("deploy", {"what": "v2"}), "shipped"]),
        tools=[deploy],
    )
    tactics = supervisor_of("tactics", "execution", execution)
    strategy = supervisor_of("strategy", "tactics", tactics)

    first = await runtime.run(strategy, "grow")
    assert first.status is RunStatus.INTERRUPTED
    [interrupt] = first.interrupts
    assert interrupt.key.count("/tool/delegate_to_") == 2
    assert executed == []
    done = await runtime.resume(first.run_id, {interrupt.id: Approve()})
    assert done.output == "strategy<tactics<shipped>>"
    assert executed == ["v2"]


async def test_a_supervisor_deeper_than_its_max_depth_does_not_delegate(runtime: Runtime) -> None:
    bottom = worker("bottom", "B")
    seen: list[str] = []

    def middle_plan(request: ModelRequest) -> object:
        done = results(request)
        if not done:
            return call("delegate_to_bottom", {"task": "go"}, id="m1")
        seen.append(done[-1].content)
        return "middle did it alone"

    middle = Supervisor(
        name="middle",
        manager=Agent(name="middle-lead", model=FunctionModel(middle_plan)),
        workers=[bottom],
        max_depth=1,  # it sits one delegation deep: no further delegation
    )
    top = supervisor_of("top", "middle", middle)
    result = await runtime.run(top, "x")
    assert result.output == "top<middle did it alone>"
    assert seen and "sits 1 delegations deep and max_depth=1" in seen[0]

    # At the top (depth 0) the same limit lets it delegate.
    alone = Supervisor(
        name="alone",
        manager=Agent(name="lead", model=FunctionModel(middle_plan)),
        workers=[bottom],
        max_depth=1,
    )
    seen.clear()
    assert (await runtime.run(alone, "x")).output == "middle did it alone"
    assert seen == ["B: go"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": []}, "needs at least one entry in workers"),
        ({"workers": [worker("a", "A"), worker("a", "A")]}, "two workers share a name"),
        ({"workers": [worker("a", "A")], "max_rounds": 0}, "max_rounds must be >= 1"),
    ],
)
def test_bad_supervisors_fail_at_definition_time(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        Supervisor(name="t", manager=Agent(name="m", model=ScriptedModel([])), **kwargs)  # type: ignore[arg-type]


async def test_finished_delegations_do_not_run_again_after_a_crash(runtime: Runtime) -> None:
    import asyncio

    asked: list[str] = []
    crash = {"on": True}

    def desk(name: str) -> Agent[str]:
        def answer(request: ModelRequest) -> str:
            asked.append(name)
            if name == "second" and crash["on"]:
                crash["on"] = False
                raise asyncio.CancelledError  # the process dies inside the second worker
            return f"{name} ok"

        return Agent(name=name, model=FunctionModel(answer))

    def plan(request: ModelRequest) -> object:
        done = results(request)
        if not done:
            return call("delegate_to_first", {"task": "a"}, id="d1")
        if len(done) == 1:
            return call("delegate_to_second", {"task": "b"}, id="d2")
        return " + ".join(r.content for r in done)

    team = Supervisor(
        name="t",
        manager=Agent(name="m", model=FunctionModel(plan)),
        workers=[desk("first"), desk("second")],
    )
    with pytest.raises(asyncio.CancelledError):
        await runtime.run(team, "x", run_id="s1")
    done = await Runtime(runtime.store).resume("s1", runnable=team)
    assert done.output == "first ok + second ok"
    assert asked == ["first", "second", "second"]


def circling_team(guard: LoopGuard, rounds: int = 6) -> tuple[Supervisor, ScriptedModel]:
    """A manager that bounces between two workers with new wording each time,
    while both keep giving the same answers: A -> B -> A -> B without progress."""
    script: list[object] = []
    for i in range(rounds):
        worker_name = "search" if i % 2 == 0 else "review"
        script.append(call(f"delegate_to_{worker_name}", {"task": f"attempt {i}"}, id=f"d{i}"))
    manager_model = ScriptedModel([*script, "best effort answer"])
    stuck = [
        Agent(name=name, model=FunctionModel(lambda r, n=name: f"{n}: nothing new"))
        for name in ("search", "review")
    ]
    team = Supervisor(
        name="team",
        manager=Agent(name="lead", model=manager_model, loop_guard=guard),
        workers=stuck,
    )
    return team, manager_model


async def test_delegations_going_in_circles_are_warned_about(store: Store) -> None:
    events: list[object] = []
    runtime = Runtime(store, sinks=[events.append])
    team, model = circling_team(LoopGuard(repeats=2))
    result = await runtime.run(team, "find it")
    assert result.output == "best effort answer"
    notes = [r for r in results(model.requests[-1]) if "[loop guard]" in r.content]
    assert [n.name for n in notes] == ["delegate_to_search", "delegate_to_review"] * 2
    first = notes[0].content
    assert first.startswith("search: nothing new\n\n[loop guard] search has now given this same")
    assert '- {"task":"attempt 0"}' in first  # the earlier task, remembered
    assert "(search -> review -> search)" in first
    loops = [e for e in events if isinstance(e, LoopGuardTriggered)]
    assert [(e.kind, e.subject, e.times) for e in loops[:2]] == [
        ("delegation", "search", 2),
        ("delegation", "review", 2),
    ]


async def test_delegations_going_in_circles_can_stop_the_run(runtime: Runtime) -> None:
    team, model = circling_team(LoopGuard(repeats=2, policy="stop"))
    result = await runtime.run(team, "find it")
    assert result.status is RunStatus.STOPPED
    assert result.error is not None and result.error["type"] == "LoopDetected"
    assert "same result from worker 'search' 2 times" in result.error["message"]
    assert len(model.requests) == 3, "stopped on the third delegation's result"
    assert result.partial == {
        "team/lead/turn-1/tool/delegate_to_search#d0/search": "search: nothing new",
        "team/lead/turn-2/tool/delegate_to_review#d1/review": "review: nothing new",
        "team/lead/turn-3/tool/delegate_to_search#d2/search": "search: nothing new",
    }


async def test_a_human_can_let_circling_delegations_go_on(runtime: Runtime) -> None:
    team, _ = circling_team(LoopGuard(repeats=2, policy="ask"), rounds=3)
    first = await runtime.run(team, "find it")
    [question] = first.interrupts
    assert question.payload["loop"] == "delegation" and question.payload["worker"] == "search"
    done = await runtime.resume(first.run_id, {question.id: "continue"})
    assert done.output == "best effort answer"


async def test_a_write_cut_off_in_a_worker_fails_the_run_instead_of_a_replan(
    runtime: Runtime,
) -> None:
    import asyncio

    @tool(effect="write", timeout=0.05)
    async def pay(amount: float) -> str:
        await asyncio.sleep(10)
        return "paid"

    payer = Agent(name="payments", model=ScriptedModel([call("pay", {"amount": 5.0})]), tools=[pay])
    manager_model = ScriptedModel([call("delegate_to_payments", {"task": "pay 5"}, id="d")])
    team = Supervisor(name="t", manager=Agent(name="m", model=manager_model), workers=[payer])
    result = await runtime.run(team, "pay")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "WriteUncertain"
    assert len(manager_model.requests) == 1, "the manager never re-plans around an unknown payment"


async def test_running_out_of_rounds_says_max_rounds(runtime: Runtime) -> None:
    busy = FunctionModel(lambda r: call("delegate_to_w", {"task": "again"}))
    team = Supervisor(
        name="team", manager=Agent(name="m", model=busy), workers=[worker("w", "W")], max_rounds=2
    )
    result = await runtime.run(team, "x")
    assert result.error is not None and "max_rounds=2" in result.error["message"]
