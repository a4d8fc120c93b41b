"""The loan team (Supervisor): parallel delegations, an approved payment made once."""

from __future__ import annotations

import asyncio
import re

import pytest

from orchestrion import Approve, Reject, RunStatus, Runtime
from orchestrion.demos.loan_team import TASK, Bank, team

PAY_KEY = "loan-team/manager/turn-2/tool/delegate_to_payments#d_pay/payments/turn-1/tool/pay_loan#call_pay"


async def test_the_team_pays_off_the_loan_once_after_approval(runtime: Runtime) -> None:
    bank = Bank()
    first = await runtime.run(team, TASK, deps=bank)
    assert first.status is RunStatus.INTERRUPTED
    [interrupt] = first.interrupts
    assert interrupt.kind == "approval" and interrupt.key == f"{PAY_KEY}/approval"
    assert interrupt.payload == {
        "agent": "payments",
        "tool": "pay_loan",
        "arguments": {"loan_id": "car-7781", "amount": 4812.5, "from_account": "savings"},
        "call_id": "call_pay",
    }
    assert bank.payments == {}, "nothing is paid before the approval"

    done = await runtime.resume(first.run_id, {interrupt.id: Approve()}, deps=bank)
    assert done.output == (
        "[stand-in model] Done: paid 4,812.50 from savings to loan car-7781; "
        "savings left: 7,687.50."
    )
    assert list(bank.payments.values()) == [4812.5]
    assert bank.savings == 7687.5 and bank.loan_balance == 0.0

    steps = await runtime.history(first.run_id)
    assert all(s.status.value == "completed" for s in steps)
    delegations = {
        s.key for s in steps if re.fullmatch(r"loan-team/manager/[^/]+/tool/[^/]+", s.key)
    }
    assert delegations == {  # loans and balances in the same turn, then payments
        "loan-team/manager/turn-1/tool/delegate_to_loans#d_loans",
        "loan-team/manager/turn-1/tool/delegate_to_balances#d_bal",
        "loan-team/manager/turn-2/tool/delegate_to_payments#d_pay",
    }
    keys = {s.key for s in steps}
    assert {
        "loan-team/manager/turn-1/tool/delegate_to_loans#d_loans/loans/turn-1/tool/get_loan#call_loan",
        "loan-team/manager/turn-1/tool/delegate_to_balances#d_bal/balances/turn-1/tool/get_balance#call_bal",
        PAY_KEY,
        "loan-team/manager/turn-3/model",
    } <= keys


async def test_a_rejected_payment_is_reported_and_nothing_moves(runtime: Runtime) -> None:
    bank = Bank()
    first = await runtime.run(team, TASK, deps=bank)
    answers = {first.interrupts[0].id: Reject("not this month")}
    done = await runtime.resume(first.run_id, answers, deps=bank)
    assert done.output == (
        "[stand-in model] No payment was made. Payment not made: "
        "The user rejected this call: not this month"
    )
    assert bank.payments == {} and bank.savings == 12_500.0


async def test_the_manager_does_not_pay_when_savings_fall_short(runtime: Runtime) -> None:
    bank = Bank(savings=1_000.0)
    result = await runtime.run(team, TASK, deps=bank)
    assert result.status is RunStatus.COMPLETED and not result.interrupts
    assert result.output == (
        "[stand-in model] Savings (1,000.00) do not cover the payoff (4,812.50); no payment made."
    )


class CrashingBank(Bank):
    """Takes the payment, then the process dies before the result is journaled."""

    crashed = False
    keys: tuple[str, ...] = ()

    def pay(self, key: str, amount: float) -> str:
        self.keys = (*self.keys, key)
        receipt = super().pay(key, amount)
        if not self.crashed:
            self.crashed = True
            raise asyncio.CancelledError
        return receipt


async def test_a_payment_cut_off_by_a_crash_is_retried_with_the_same_key(
    runtime: Runtime,
) -> None:
    bank = CrashingBank()
    first = await runtime.run(team, TASK, run_id="crash-1", deps=bank)
    with pytest.raises(asyncio.CancelledError):
        await runtime.resume("crash-1", {first.interrupts[0].id: Approve()}, deps=bank)
    done = await Runtime(runtime.store).resume("crash-1", runnable=team, deps=bank)
    assert done.status is RunStatus.COMPLETED
    assert len(bank.keys) == 2 and len(set(bank.keys)) == 1, "re-executed with the same key"
    assert len(bank.payments) == 1 and bank.savings == 7687.5, "the bank saw one payment"
