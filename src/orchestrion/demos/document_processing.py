"""Document processing: extract -> validate -> summarize (the Sequential pattern).

An extractor turns an invoice's text into typed fields (`Invoice`, a pydantic
model, given through the `final_result` tool); a validator checks the vendor
against the approved-vendor register (`lookup_vendor`) and the arithmetic (the
lines add up to the subtotal, subtotal plus tax to the total); a summarizer
writes the accounts-payable note. With `context="transcript"` every step sees
the task and every earlier output, so the summarizer has both the fields and
the validation.

The runnable definitions live here, inside the package, so `orchestrion demo`
works from an installed wheel; `examples/document_processing.py` imports and runs them.
"""

from __future__ import annotations

import os
import re

from pydantic import BaseModel

from orchestrion._json import dumps_str, loads
from orchestrion.agent import Agent
from orchestrion.demos.stand_in import calls, first_text, offered, results, say, unprefixed
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall
from orchestrion.patterns.sequential import Sequential
from orchestrion.tools.tool import tool

__all__ = ["TASK", "Invoice", "LineItem", "agent", "pipeline", "stand_in_policy"]

TASK = """Process this invoice:
INVOICE INV-2025-0419
Vendor: Acme Office Supply
Date: 2025-04-19
Currency: EUR
- Ergonomic chair x2 @ 320.00 = 640.00
- Standing desk x1 @ 510.00 = 510.00
Subtotal: 1150.00
Tax (20%): 230.00
Total: 1380.00"""

MODEL = os.environ.get("ORCHESTRION_MODEL") or "stand-in:document-processing"

APPROVED_VENDORS = {
    "acme office supply": {"vendor_id": "V-0042", "payment_terms_days": 30},
    "northwind traders": {"vendor_id": "V-0107", "payment_terms_days": 45},
}


class LineItem(BaseModel):
    description: str
    quantity: int
    unit_price: float
    amount: float


class Invoice(BaseModel):
    """The fields the extractor reads from an invoice."""

    invoice_number: str
    vendor: str
    date: str
    currency: str
    lines: list[LineItem]
    subtotal: float
    tax: float
    total: float


@tool
async def lookup_vendor(name: str) -> dict[str, object]:
    """Look a vendor up in the approved-vendor register.

    Args:
        name: The vendor's name as written on the invoice.
    """
    found = APPROVED_VENDORS.get(name.strip().lower())
    return {"name": name, "approved": found is not None, **(found or {})}


def _amount(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def _field(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    return found.group(1).strip() if found else ""


def _extract(request: ModelRequest) -> ModelResponse:
    text = first_text(request)
    lines = [
        {
            "description": m.group(1).strip(),
            "quantity": int(m.group(2)),
            "unit_price": float(m.group(3)),
            "amount": float(m.group(4)),
        }
        for m in re.finditer(
            r"^- (.+?) x(\d+) @ (\d+(?:\.\d+)?) = (\d+(?:\.\d+)?)$", text, re.MULTILINE
        )
    ]
    fields = {
        "invoice_number": _field(r"INVOICE (\S+)", text),
        "vendor": _field(r"Vendor: (.+)", text),
        "date": _field(r"Date: (\S+)", text),
        "currency": _field(r"Currency: (\S+)", text),
        "lines": lines,
        "subtotal": _amount(r"Subtotal: (\d+(?:\.\d+)?)", text),
        "tax": _amount(r"Tax[^:]*: (\d+(?:\.\d+)?)", text),
        "total": _amount(r"Total: (\d+(?:\.\d+)?)", text),
    }
    return calls(ToolCall("c_final", "final_result", dumps_str(fields)))


def _section(transcript: str, name: str) -> str:
    """One member's output in a `transcript` input: the text after `[name]`."""
    found = re.search(rf"^\[{name}\]\n(.*?)(?=\n\n\[\w+\]\n|\Z)", transcript, re.S | re.M)
    return found.group(1) if found else ""


def _validate(request: ModelRequest) -> ModelResponse:
    try:
        invoice = Invoice.model_validate(loads(_section(first_text(request), "extract")))
    except ValueError:
        return say("INVALID: I could not read the extracted invoice fields.")
    done = results(request)
    if "lookup_vendor" not in done:
        return calls(ToolCall("c_vendor", "lookup_vendor", dumps_str({"name": invoice.vendor})))
    vendor = loads(done["lookup_vendor"].content)
    problems = []
    if not vendor["approved"]:
        problems.append(f"vendor {invoice.vendor!r} is not in the approved-vendor register")
    for line in invoice.lines:
        if abs(line.quantity * line.unit_price - line.amount) > 0.005:
            problems.append(
                f"line {line.description!r}: {line.quantity} x {line.unit_price:.2f} "
                f"is not {line.amount:.2f}"
            )
    lines_sum = sum(line.amount for line in invoice.lines)
    if abs(lines_sum - invoice.subtotal) > 0.005:
        problems.append(f"lines add up to {lines_sum:.2f}, not the subtotal {invoice.subtotal:.2f}")
    if abs(invoice.subtotal + invoice.tax - invoice.total) > 0.005:
        problems.append(
            f"subtotal {invoice.subtotal:.2f} + tax {invoice.tax:.2f} = "
            f"{invoice.subtotal + invoice.tax:.2f}, not the total {invoice.total:.2f}"
        )
    if problems:
        return say("INVALID: " + "; ".join(problems) + ".")
    return say(
        f"VALID: vendor {vendor['vendor_id']} approved (net {vendor['payment_terms_days']} days); "
        f"{len(invoice.lines)} lines add up to the subtotal; subtotal + tax = total."
    )


def _summarize(request: ModelRequest) -> ModelResponse:
    transcript = first_text(request)
    try:
        invoice = Invoice.model_validate(loads(_section(transcript, "extract")))
    except ValueError:
        return say("I could not read the extracted invoice fields.")
    check = unprefixed(_section(transcript, "validate"))
    head = (
        f"Invoice {invoice.invoice_number} from {invoice.vendor}, {invoice.date}: "
        f"{invoice.total:,.2f} {invoice.currency} ({len(invoice.lines)} lines, "
        f"tax {invoice.tax:,.2f})."
    )
    if check.startswith("VALID"):
        terms = re.search(r"net (\d+) days", check)
        due = f" within {terms.group(1)} days" if terms else ""
        return say(f"{head} Checks passed: ready for approval and payment{due}.")
    return say(f"{head} On hold: {check.removeprefix('INVALID: ')}")


def stand_in_policy(request: ModelRequest) -> ModelResponse:
    """One policy for the pipeline: the asking agent is known by the tools it is offered."""
    tools = offered(request)
    if "final_result" in tools:
        return _extract(request)
    if "lookup_vendor" in tools:
        return _validate(request)
    return _summarize(request)


extract = Agent(
    name="extract",
    instructions=(
        "You extract invoices. Read the invoice in the task and give its number, vendor, date, "
        "currency, line items, subtotal, tax and total exactly as written."
    ),
    model=MODEL,
    output_type=Invoice,
)
validate = Agent(
    name="validate",
    instructions=(
        "You validate extracted invoices. Look the vendor up in the approved-vendor register and "
        "check the arithmetic: each line, the lines against the subtotal, subtotal plus tax "
        "against the total. Start with VALID or INVALID, then say why."
    ),
    model=MODEL,
    tools=[lookup_vendor],
)
summarize = Agent(
    name="summarize",
    instructions=(
        "You write the accounts-payable note for an invoice: one or two sentences with the "
        "invoice, vendor, date and total, and whether it is ready to pay or why it is on hold."
    ),
    model=MODEL,
)

pipeline = Sequential(
    name="document-processing",
    members=[extract, validate, summarize],
    context="transcript",
    description="Invoices: extract typed fields, validate them, write the payables note.",
)
agent = pipeline  # `orchestrion demo` runs `<demo module>:agent`
