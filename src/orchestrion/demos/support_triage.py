"""Support triage: a triage agent hands the customer to billing or technical.

One agent is active at a time. Triage reads the message and transfers it
(`transfer_to_billing` / `transfer_to_technical`); billing looks up the order's
charges and refunds a duplicate, a write tool that needs a human's approval and
carries an idempotency key; technical searches the known issues. Routes keep
specialists from sending the customer back to triage.

The runnable definitions live here, inside the package, so `orchestrion demo`
works from an installed wheel; `examples/support_triage.py` imports and runs them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from orchestrion._json import dumps_str, loads
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.demos.stand_in import calls, first_text, offered, results, say
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall
from orchestrion.patterns.handoff import Handoff
from orchestrion.tools.tool import tool

TASK = "I was charged twice for order A-1001 this month. Please refund the duplicate charge."

MODEL = os.environ.get("ORCHESTRION_MODEL") or "stand-in:support-triage"


def _charges() -> dict[str, list[dict[str, object]]]:
    return {
        "A-1001": [
            {"charge_id": "ch-881", "amount": 49.0, "date": "2025-03-02", "item": "Pro plan"},
            {"charge_id": "ch-882", "amount": 49.0, "date": "2025-03-02", "item": "Pro plan"},
        ],
        "A-1002": [{"charge_id": "ch-901", "amount": 19.0, "date": "2025-03-05", "item": "Add-on"}],
    }


@dataclass(frozen=True)
class KnownIssue:
    id: str
    title: str
    keywords: tuple[str, ...]
    fix: str


KNOWN_ISSUES = (
    KnownIssue(
        "KB-214",
        "App crashes when exporting a report to PDF",
        ("crash", "export", "pdf", "report"),
        "Fixed in version 4.2.1: update the app; until then export to CSV.",
    ),
    KnownIssue(
        "KB-198",
        "Cannot log in after a password reset",
        ("log in", "login", "password", "reset"),
        "Sign out everywhere (Settings > Account), then log in again.",
    ),
)


@dataclass
class Helpdesk:
    """A stand-in billing system that honours idempotency keys."""

    charges: dict[str, list[dict[str, object]]] = field(default_factory=_charges)
    refunds: dict[str, dict[str, object]] = field(default_factory=dict)
    """Refunds made, by idempotency key."""

    def refund(self, key: str, order_id: str, charge_id: str, amount: float) -> str:
        if key not in self.refunds:  # a retried request with the same key is a no-op
            self.refunds[key] = {"order_id": order_id, "charge_id": charge_id, "amount": amount}
        return f"refund {key[:10]} of {amount:.2f} for {charge_id} accepted"


HELPDESK = Helpdesk()


def _desk(ctx: RunContext[Helpdesk | None]) -> Helpdesk:
    return ctx.deps or HELPDESK


@tool
async def get_charges(ctx: RunContext[Helpdesk | None], order_id: str) -> list[dict[str, object]]:
    """The charges made for an order.

    Args:
        order_id: The order, e.g. "A-1001".
    """
    return _desk(ctx).charges.get(order_id, [])


@tool(effect="write", approval=True, max_calls=1)  # one duplicate charge, one refund
async def refund(
    ctx: RunContext[Helpdesk | None], order_id: str, charge_id: str, amount: float, reason: str
) -> str:
    """Refund one charge of an order to the customer. Moves money: needs approval.

    Args:
        order_id: The order the charge belongs to.
        charge_id: The charge to refund, from get_charges.
        amount: The amount to refund, at most the charge's amount.
        reason: Why, in a few words.
    """
    return _desk(ctx).refund(ctx.idempotency_key, order_id, charge_id, amount)


@tool
async def search_known_issues(query: str) -> list[dict[str, object]]:
    """Known product issues matching a description of a problem, best first.

    Args:
        query: The problem in the customer's words.
    """
    words = query.lower()
    scored = [(sum(k in words for k in issue.keywords), issue) for issue in KNOWN_ISSUES]
    found = [issue for score, issue in sorted(scored, key=lambda s: -s[0]) if score]
    return [{"id": i.id, "title": i.title, "fix": i.fix} for i in found]


BILLING_WORDS = ("charge", "refund", "invoice", "bill", "payment")
TECHNICAL_WORDS = ("crash", "error", "bug", "log in", "login", "slow", "export")


def _triage(request: ModelRequest) -> ModelResponse:
    message = first_text(request).lower()
    if any(w in message for w in BILLING_WORDS):
        reason = {"reason": "a question about charges or refunds"}
        return calls(ToolCall("t_billing", "transfer_to_billing", dumps_str(reason)))
    if any(w in message for w in TECHNICAL_WORDS):
        reason = {"reason": "a problem with the product"}
        return calls(ToolCall("t_tech", "transfer_to_technical", dumps_str(reason)))
    return say("I can help with charges and refunds or with problems in the app: what happened?")


def _billing(request: ModelRequest) -> ModelResponse:
    order = re.search(r"\b[A-Z]-\d{3,}\b", first_text(request))
    if order is None:
        return say("Which order is it about? Its number looks like A-1234.")
    order_id, done = order.group(0), results(request)
    if "get_charges" not in done:
        return calls(ToolCall("c_charges", "get_charges", dumps_str({"order_id": order_id})))
    charges: list[dict[str, object]] = loads(done["get_charges"].content)
    seen: set[tuple[object, object]] = set()
    duplicate = None
    for charge in charges:
        fingerprint = (charge["amount"], charge["date"])
        if fingerprint in seen:
            duplicate = charge
        seen.add(fingerprint)
    if duplicate is None:
        return say(
            f"Order {order_id} has {len(charges)} charge(s) and no duplicate; nothing to refund."
        )
    if "refund" not in done:
        arguments = {
            "order_id": order_id,
            "charge_id": duplicate["charge_id"],
            "amount": duplicate["amount"],
            "reason": "duplicate charge",
        }
        return calls(ToolCall("c_refund", "refund", dumps_str(arguments)))
    if done["refund"].is_error:
        return say(f"I did not refund the duplicate charge: {done['refund'].content}")
    return say(
        f"Refunded {duplicate['amount']:.2f} for the duplicate charge {duplicate['charge_id']} "
        f"on order {order_id}; it reaches your card in 3-5 business days."
    )


def _technical(request: ModelRequest) -> ModelResponse:
    done = results(request)
    if "search_known_issues" not in done:
        query = {"query": first_text(request)}
        return calls(ToolCall("c_search", "search_known_issues", dumps_str(query)))
    issues = loads(done["search_known_issues"].content)
    if not issues:
        return say("This is not a known issue; I have filed it for the engineers.")
    top = issues[0]
    return say(f"This is known issue {top['id']} ({top['title']}). {top['fix']}")


def stand_in_policy(request: ModelRequest) -> ModelResponse:
    """One policy for the desk: the asking agent is known by the tools it is offered."""
    tools = offered(request)
    if "refund" in tools:
        return _billing(request)
    if "search_known_issues" in tools:
        return _technical(request)
    return _triage(request)


triage = Agent(
    name="triage",
    instructions=(
        "You are the first line of customer support. Transfer questions about charges, "
        "refunds or invoices to billing, and problems with the app (errors, crashes, log-in) "
        "to technical. Answer only greetings and unclear messages yourself, asking what happened."
    ),
    model=MODEL,
    description="Reads the customer's message and routes it.",
)
billing = Agent(
    name="billing",
    instructions=(
        "You are billing support. Look up the order's charges; refund a charge only when it is "
        "clearly a duplicate (same amount and date), never more than the charge. Tell the "
        "customer what you refunded and when it arrives."
    ),
    model=MODEL,
    tools=[get_charges, refund],
    description="Charges, invoices and refunds.",
)
technical = Agent(
    name="technical",
    instructions=(
        "You are technical support. Search the known issues for the customer's problem and "
        "give the fix or workaround; if none matches, say it has been filed."
    ),
    model=MODEL,
    tools=[search_known_issues],
    description="Problems with the app: errors, crashes, log-in.",
)

desk = Handoff(
    name="support-triage",
    agents=[triage, billing, technical],
    routes={"triage": ["billing", "technical"], "billing": ["technical"], "technical": ["billing"]},
    max_handoffs=3,
    description="Customer support: triage, then billing or technical.",
)
agent = desk  # `orchestrion demo` runs `<demo module>:agent`
