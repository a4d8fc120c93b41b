"""Payroll help: welcome, IT and finance message each other directly (the PeerNetwork pattern).

"My pay is short and I cannot log in to the payroll portal" is two problems for
two desks. Welcome messages IT and finance in the same turn; IT resets the
employee's portal access and tells finance; finance reads the payslip, explains
the shortfall and calls `finish`, which ends the run with its answer. Edges
keep the mail flowing one way: welcome -> IT and finance, IT -> finance, and
finance messages no one.

The runnable definitions live here, inside the package, so `orchestrion demo`
works from an installed wheel; `examples/payroll_help.py` imports and runs them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from orchestrion._json import dumps_str, loads
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.demos.stand_in import PREFIX, calls, first_text, offered, results, say
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall
from orchestrion.patterns.peer_network import PeerNetwork
from orchestrion.tools.tool import tool

__all__ = ["EMPLOYEE", "TASK", "Payroll", "agent", "network", "stand_in_policy"]

TASK = "My pay is short and I cannot log in to the payroll portal."
EMPLOYEE = "E-1187"
"""The employee signed in to the help chat."""

MODEL = os.environ.get("ORCHESTRION_MODEL") or "stand-in:payroll-help"


def _payslips() -> dict[str, dict[str, object]]:
    return {
        EMPLOYEE: {
            "period": "2025-03",
            "expected_net": 3150.0,
            "paid_net": 2870.0,
            "missing": [
                {
                    "item": "overtime, 14 hours",
                    "amount": 280.0,
                    "why": "submitted on 2025-03-27, after the 2025-03-25 cut-off",
                    "paid_with": "the April payroll run on 2025-04-25",
                }
            ],
        }
    }


@dataclass
class Payroll:
    """The stand-in payroll portal and ledger the desks use."""

    locked: set[str] = field(default_factory=lambda: {EMPLOYEE})
    """Employees locked out of the portal."""
    payslips: dict[str, dict[str, object]] = field(default_factory=_payslips)
    resets: list[str] = field(default_factory=list)
    """Employees whose access was reset, in order."""


PAYROLL = Payroll()


def _payroll(ctx: RunContext[Payroll | None]) -> Payroll:
    return ctx.deps or PAYROLL


@tool
async def reset_portal_access(
    ctx: RunContext[Payroll | None], employee_id: str
) -> dict[str, object]:
    """Unlock an employee's payroll-portal account and send a password-reset link.

    Args:
        employee_id: The employee, e.g. "E-1187".
    """
    payroll = _payroll(ctx)
    was_locked = employee_id in payroll.locked
    payroll.locked.discard(employee_id)
    payroll.resets.append(employee_id)
    return {"employee_id": employee_id, "was_locked": was_locked, "reset_link_sent": True}


@tool
async def get_payslip(ctx: RunContext[Payroll | None], employee_id: str) -> dict[str, object]:
    """An employee's latest payslip: expected and paid net pay, and what is missing and why.

    Args:
        employee_id: The employee, e.g. "E-1187".
    """
    return _payroll(ctx).payslips.get(employee_id, {"error": f"no payslip for {employee_id}"})


def _employee(text: str) -> str:
    found = re.search(r"\bE-\d{3,}\b", text)
    return found.group(0) if found else EMPLOYEE


def _welcome(request: ModelRequest) -> ModelResponse:
    done = results(request)
    if "send_message" not in done:  # two problems, two desks: write to both at once
        message = first_text(request).removeprefix("Message from user:\n")
        to_it = {
            "to": "it",
            "content": f"Employee {EMPLOYEE} cannot log in to the payroll portal. Please restore "
            f"access and tell finance when done. They wrote: {message!r}",
        }
        to_finance = {
            "to": "finance",
            "content": f"Employee {EMPLOYEE} says their pay is short. IT is restoring their "
            f"portal access and will write to you. They wrote: {message!r}",
        }
        return calls(
            ToolCall("m_it", "send_message", dumps_str(to_it)),
            ToolCall("m_finance", "send_message", dumps_str(to_finance)),
        )
    return say("I have passed the log-in problem to IT and the pay question to finance.")


def _it(request: ModelRequest) -> ModelResponse:
    employee, done = _employee(first_text(request)), results(request)
    if "reset_portal_access" not in done:
        arguments = {"employee_id": employee}
        return calls(ToolCall("c_reset", "reset_portal_access", dumps_str(arguments)))
    if "send_message" not in done:
        reset = loads(done["reset_portal_access"].content)
        state = "was locked" if reset["was_locked"] else "was not locked"
        note = {
            "to": "finance",
            "content": f"Portal access for {employee} is restored: the account {state}, "
            "and a password-reset link has been sent.",
        }
        return calls(ToolCall("m_finance", "send_message", dumps_str(note)))
    return say(f"Reset portal access for {employee} and told finance.")


def _finance(request: ModelRequest) -> ModelResponse:
    inbox, done = first_text(request), results(request)
    if "Message from it:" not in inbox:  # wait for IT before answering the employee
        return say("Noted; I will answer once IT confirms the portal access.")
    employee = _employee(inbox)
    if "get_payslip" not in done:
        arguments = {"employee_id": employee}
        return calls(ToolCall("c_payslip", "get_payslip", dumps_str(arguments)))
    if "finish" not in done:
        slip = loads(done["get_payslip"].content)
        if "error" in slip:
            answer = f"I could not find your payslip ({slip['error']}); payroll will contact you."
        else:
            short = slip["expected_net"] - slip["paid_net"]
            parts = [
                f"Your {slip['period']} pay was {slip['paid_net']:,.2f} instead of "
                f"{slip['expected_net']:,.2f}: {short:,.2f} short."
            ]
            parts += [
                f"The missing {m['amount']:,.2f} is {m['item']}, {m['why']}; "
                f"it will be paid with {m['paid_with']}."
                for m in slip["missing"]
            ]
            answer = " ".join(parts)
        answer += " IT has restored your payroll-portal access: use the reset link we emailed."
        return calls(ToolCall("c_finish", "finish", dumps_str({"answer": PREFIX + answer})))
    return say("Answered the employee.")


def stand_in_policy(request: ModelRequest) -> ModelResponse:
    """One policy for the network: the asking agent is known by the tools it is offered."""
    tools = offered(request)
    if "reset_portal_access" in tools:
        return _it(request)
    if "get_payslip" in tools:
        return _finance(request)
    if "send_message" in tools:
        return _welcome(request)
    return say(f"No stand-in behaviour for an agent with tools {sorted(tools)}.")


welcome = Agent(
    name="welcome",
    instructions=(
        f"You greet employee {EMPLOYEE} on the HR help chat. Send log-in and access problems "
        "to it and pay questions to finance; when there are both, message both at once. Do not "
        "answer them yourself."
    ),
    model=MODEL,
)
it = Agent(
    name="it",
    instructions=(
        "You are IT support. Restore the employee's payroll-portal access, then tell finance "
        "it is done so they can answer the employee."
    ),
    model=MODEL,
    tools=[reset_portal_access],
)
finance = Agent(
    name="finance",
    instructions=(
        "You are payroll finance. Once IT confirms the employee's access, read their payslip, "
        "explain exactly why the pay is short and when the difference is paid, mention the "
        "restored access, and give that answer with finish."
    ),
    model=MODEL,
    tools=[get_payslip],
)

network = PeerNetwork(
    name="payroll-help",
    agents=[welcome, it, finance],
    entry="welcome",
    edges={"welcome": ["it", "finance"], "it": ["finance"], "finance": []},
    max_rounds=5,
    description="HR help: welcome writes to IT and finance; IT to finance; finance answers.",
)
agent = network  # `orchestrion demo` runs `<demo module>:agent`
