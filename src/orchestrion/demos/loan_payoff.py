"""Loan payoff: "Pay off my car loan using savings".

One agent with three tools: look up the loan, verify the savings balance, and
pay, which is a write tool needing a human's approval and carrying an
idempotency key, so a crash mid-payment never pays twice; it may run once per
run (`max_calls=1`), so a wandering model cannot pay twice either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from orchestrion._json import dumps_str, loads
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.demos.stand_in import calls, say
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall, ToolResult
from orchestrion.tools.tool import tool

TASK = "Pay off my car loan using savings."


@dataclass
class Bank:
    """A stand-in core-banking API that honours idempotency keys."""

    savings: float = 12_500.00
    loan_balance: float = 4_812.50
    payments: dict[str, float] = field(default_factory=dict)

    def pay(self, key: str, amount: float) -> str:
        if key not in self.payments:  # a retried request with the same key is a no-op
            self.payments[key] = amount
            self.savings -= amount
            self.loan_balance -= amount
        return f"payment {key[:10]} accepted"


BANK = Bank()


def _bank(ctx: RunContext[Bank | None]) -> Bank:
    return ctx.deps or BANK


@tool
async def get_loan(ctx: RunContext[Bank | None], customer_id: str) -> dict[str, object]:
    """Look up the customer's car loan.

    Args:
        customer_id: The customer, e.g. "cust-42".
    """
    bank = _bank(ctx)
    return {"loan_id": "car-7781", "customer_id": customer_id, "payoff_amount": bank.loan_balance}


@tool
async def get_balance(ctx: RunContext[Bank | None], account: str) -> dict[str, object]:
    """Current balance of one of the customer's accounts.

    Args:
        account: "savings" or "checking".
    """
    return {"account": account, "balance": _bank(ctx).savings if account == "savings" else 310.0}


# One payoff is one payment: `max_calls=1` makes a second one impossible, however a
# model wanders (a small one re-pays with new amounts, each auto-approved by the demo).
@tool(effect="write", approval=True, max_calls=1)
async def pay_loan(
    ctx: RunContext[Bank | None], loan_id: str, amount: float, from_account: str
) -> str:
    """Pay `amount` towards a loan from an account. Moves money: needs approval.

    Args:
        loan_id: The loan to pay, from get_loan.
        amount: The amount to pay.
        from_account: The account to take the money from.
    """
    return _bank(ctx).pay(ctx.idempotency_key, amount)


def stand_in_policy(request: ModelRequest) -> ModelResponse:
    """What a careful model would do, step by step, from what it has seen."""
    results = {m.name: m for m in request.messages if isinstance(m, ToolResult)}
    if "get_loan" not in results:
        return calls(ToolCall("call_loan", "get_loan", dumps_str({"customer_id": "cust-42"})))
    if "get_balance" not in results:
        return calls(ToolCall("call_bal", "get_balance", dumps_str({"account": "savings"})))
    loan = loads(results["get_loan"].content)
    balance = loads(results["get_balance"].content)["balance"]
    amount = loan["payoff_amount"]
    if "pay_loan" not in results:
        if balance < amount:
            return say(
                f"Savings ({balance:,.2f}) do not cover the payoff ({amount:,.2f}); no payment made."
            )
        arguments = {"loan_id": loan["loan_id"], "amount": amount, "from_account": "savings"}
        return calls(ToolCall("call_pay", "pay_loan", dumps_str(arguments)))
    payment = results["pay_loan"]
    if payment.is_error:
        return say(f"The payment was not made: {payment.content}")
    return say(
        f"Done: paid {amount:,.2f} from savings to loan {loan['loan_id']}; "
        f"savings left: {balance - amount:,.2f}."
    )


agent = Agent(
    name="loan-payoff",
    instructions=(
        "You are a banking assistant. Look up the loan, verify the savings balance covers "
        "the payoff amount, then pay it from savings. Never pay more than the payoff amount."
    ),
    model=os.environ.get("ORCHESTRION_MODEL") or "stand-in:loan-payoff",
    tools=[get_loan, get_balance, pay_loan],
    description="Pays off a customer's loan from their savings, with approval.",
)
