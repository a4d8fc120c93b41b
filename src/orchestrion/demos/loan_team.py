"""Loan team: "Pay off my car loan using savings", as a supervisor and its workers.

A manager delegates to a loans worker (`get_loan`) and a balances worker
(`get_balance`) at the same time, checks that savings cover the payoff, then
delegates the payment to a payments worker whose `pay_loan` is a write tool
that needs a human's approval and carries an idempotency key. The tools and the
`Bank` are the single-agent loan-payoff demo's own.

The runnable definitions live here, inside the package, so `orchestrion demo`
works from an installed wheel; `examples/loan_team.py` imports and runs them.
"""

from __future__ import annotations

import os
import re

from orchestrion._json import dumps_str, loads
from orchestrion.agent import Agent
from orchestrion.demos.loan_payoff import Bank, get_balance, get_loan, pay_loan
from orchestrion.demos.stand_in import calls, first_text, offered, results, say, unprefixed
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall
from orchestrion.patterns.supervisor import Supervisor

__all__ = ["TASK", "Bank", "agent", "stand_in_policy", "team"]

TASK = "Pay off my car loan using savings."
CUSTOMER = "cust-42"

MODEL = os.environ.get("ORCHESTRION_MODEL") or "stand-in:loan-team"


def _loans(request: ModelRequest) -> ModelResponse:
    done = results(request)
    if "get_loan" not in done:
        customer = re.search(r"cust-\d+", first_text(request))
        arguments = {"customer_id": customer.group(0) if customer else CUSTOMER}
        return calls(ToolCall("call_loan", "get_loan", dumps_str(arguments)))
    loan = loads(done["get_loan"].content)
    return say(f"Loan {loan['loan_id']}: payoff amount {loan['payoff_amount']:.2f}.")


def _balances(request: ModelRequest) -> ModelResponse:
    done = results(request)
    if "get_balance" not in done:
        return calls(ToolCall("call_bal", "get_balance", dumps_str({"account": "savings"})))
    balance = loads(done["get_balance"].content)
    return say(f"Savings balance: {balance['balance']:.2f}.")


def _payments(request: ModelRequest) -> ModelResponse:
    task = first_text(request)
    asked = re.search(r"Pay (\d+(?:\.\d+)?) from (\w+) towards loan ([\w-]+)", task)
    if asked is None:
        return say(f"Payment not made: I could not read an amount, account and loan in {task!r}.")
    amount, account, loan_id = float(asked.group(1)), asked.group(2), asked.group(3)
    done = results(request)
    if "pay_loan" not in done:
        arguments = {"loan_id": loan_id, "amount": amount, "from_account": account}
        return calls(ToolCall("call_pay", "pay_loan", dumps_str(arguments)))
    payment = done["pay_loan"]
    if payment.is_error:
        return say(f"Payment not made: {payment.content}")
    return say(f"Paid {amount:.2f} from {account} towards loan {loan_id} ({payment.content}).")


def _manager(request: ModelRequest) -> ModelResponse:
    done = results(request)
    failed = [r for r in done.values() if r.is_error]
    if failed:
        return say(f"I could not finish: {failed[0].name} failed: {failed[0].content}")
    if "delegate_to_loans" not in done:  # two independent questions: ask both at once
        return calls(
            ToolCall("d_loans", "delegate_to_loans", _task(f"Find the car loan of {CUSTOMER}.")),
            ToolCall("d_bal", "delegate_to_balances", _task(f"Savings balance of {CUSTOMER}?")),
        )
    loan = re.search(
        r"Loan ([\w-]+): payoff amount (\d+(?:\.\d+)?)", done["delegate_to_loans"].content
    )
    saved = re.search(r"Savings balance: (\d+(?:\.\d+)?)", done["delegate_to_balances"].content)
    if loan is None or saved is None:
        return say("I could not read the loan or the balance from my team's answers.")
    loan_id, amount, balance = loan.group(1), float(loan.group(2)), float(saved.group(1))
    if amount <= 0:
        return say(f"Loan {loan_id} is already paid off; nothing to pay.")
    if balance < amount:
        return say(
            f"Savings ({balance:,.2f}) do not cover the payoff ({amount:,.2f}); no payment made."
        )
    if "delegate_to_payments" not in done:
        task = f"Pay {amount:.2f} from savings towards loan {loan_id}."
        return calls(ToolCall("d_pay", "delegate_to_payments", _task(task)))
    paid = unprefixed(done["delegate_to_payments"].content)
    if not paid.startswith("Paid"):
        return say(f"No payment was made. {paid}")
    return say(
        f"Done: paid {amount:,.2f} from savings to loan {loan_id}; "
        f"savings left: {balance - amount:,.2f}."
    )


def stand_in_policy(request: ModelRequest) -> ModelResponse:
    """One policy for the whole team: the asking agent is known by the tools it is offered."""
    tools = offered(request)
    if "delegate_to_payments" in tools:
        return _manager(request)
    if "get_loan" in tools:
        return _loans(request)
    if "get_balance" in tools:
        return _balances(request)
    if "pay_loan" in tools:
        return _payments(request)
    return say(f"No stand-in behaviour for an agent with tools {sorted(tools)}.")


def _task(task: str) -> str:
    return dumps_str({"task": task})


loans = Agent(
    name="loans",
    instructions="You look up customers' loans. Answer with the loan id and the exact payoff amount.",
    model=MODEL,
    tools=[get_loan],
    description="Looks up a customer's loans: loan id and payoff amount.",
)
balances = Agent(
    name="balances",
    instructions="You report account balances. Answer with the account and its exact balance.",
    model=MODEL,
    tools=[get_balance],
    description="Reports the balance of a customer's account (savings or checking).",
)
payments = Agent(
    name="payments",
    instructions=(
        "You make loan payments exactly as asked: the amount, the account and the loan in the "
        "task. Never change the amount. Say whether the payment was made."
    ),
    model=MODEL,
    tools=[pay_loan],
    description="Pays an amount from an account towards a loan (moves money; needs approval).",
)
manager = Agent(
    name="manager",
    instructions=(
        f"You manage a banking team serving customer {CUSTOMER}. To pay off a loan: ask loans "
        "for the loan and balances for the savings balance at the same time; if savings cover "
        "the payoff amount, ask payments to pay exactly that amount from savings towards that "
        "loan; then tell the customer what was paid and what is left in savings."
    ),
    model=MODEL,
)

team = Supervisor(
    name="loan-team",
    manager=manager,
    workers=[loans, balances, payments],
    description="Pays off a customer's loan from savings: a manager and three workers.",
)
agent = team  # `orchestrion demo` runs `<demo module>:agent`
