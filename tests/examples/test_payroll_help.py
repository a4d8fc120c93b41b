"""Payroll help (PeerNetwork): welcome -> IT and finance at once, IT -> finance, finance finishes."""

from __future__ import annotations

import dataclasses

from orchestrion import PeerNetwork, RunStatus, Runtime
from orchestrion.demos.payroll_help import EMPLOYEE, TASK, Payroll, network, stand_in_policy
from orchestrion.demos.stand_in import first_text
from orchestrion.testing import FunctionModel

ANSWER = (
    "[stand-in model] Your 2025-03 pay was 2,870.00 instead of 3,150.00: 280.00 short. "
    "The missing 280.00 is overtime, 14 hours, submitted on 2025-03-27, after the 2025-03-25 "
    "cut-off; it will be paid with the April payroll run on 2025-04-25. IT has restored your "
    "payroll-portal access: use the reset link we emailed."
)


async def test_welcome_writes_to_both_it_tells_finance_and_finance_finishes(
    runtime: Runtime,
) -> None:
    payroll = Payroll()
    result = await runtime.run(network, TASK, deps=payroll)
    assert result.status is RunStatus.COMPLETED and not result.interrupts
    assert result.output == ANSWER
    assert payroll.resets == [EMPLOYEE] and payroll.locked == set()

    steps = await runtime.history(result.run_id)
    assert all(s.status.value == "completed" for s in steps)
    assert [s.key for s in steps] == [
        # round 1: welcome messages IT and finance in one turn
        "payroll-help/round-1/welcome/turn-1/model",
        "payroll-help/round-1/welcome/turn-1/tool/send_message#m_it",
        "payroll-help/round-1/welcome/turn-1/tool/send_message#m_finance",
        "payroll-help/round-1/welcome/turn-2/model",
        # round 2: both wake; finance waits for IT; IT resets access and writes to finance
        "payroll-help/round-2/finance/turn-1/model",
        "payroll-help/round-2/it/turn-1/model",
        "payroll-help/round-2/it/turn-1/tool/reset_portal_access#c_reset",
        "payroll-help/round-2/it/turn-2/model",
        "payroll-help/round-2/it/turn-2/tool/send_message#m_finance",
        "payroll-help/round-2/it/turn-3/model",
        # round 3: finance reads IT's note and the payslip, then finishes
        "payroll-help/round-3/finance/turn-1/model",
        "payroll-help/round-3/finance/turn-1/tool/get_payslip#c_payslip",
        "payroll-help/round-3/finance/turn-2/model",
        "payroll-help/round-3/finance/turn-2/tool/finish#c_finish",
        "payroll-help/round-3/finance/turn-3/model",
    ]


async def test_edges_decide_who_may_message_whom(runtime: Runtime) -> None:
    spies = {a.name: FunctionModel(stand_in_policy) for a in network.agents}
    watched = PeerNetwork(
        name=network.name,
        agents=[dataclasses.replace(a, model=spies[a.name]) for a in network.agents],
        entry=network.entry,
        edges=network.edges,
        max_rounds=network.max_rounds,
    )
    result = await runtime.run(watched, TASK, deps=Payroll())
    assert result.output == ANSWER
    offered = {name: {t.name for t in spy.requests[0].tools} for name, spy in spies.items()}
    assert offered == {
        "welcome": {"send_message", "finish"},
        "it": {"reset_portal_access", "send_message", "finish"},
        "finance": {"get_payslip", "finish"},  # finance messages no one
    }
    # finance's last inbox holds IT's note: access restored before it answers
    inbox = first_text(spies["finance"].requests[-1])
    assert "Message from it:\nPortal access for E-1187 is restored" in inbox


async def test_without_a_payslip_finance_still_answers_and_finishes(runtime: Runtime) -> None:
    result = await runtime.run(network, TASK, deps=Payroll(payslips={}))
    assert result.output == (
        "[stand-in model] I could not find your payslip (no payslip for E-1187); payroll will "
        "contact you. IT has restored your payroll-portal access: use the reset link we emailed."
    )
