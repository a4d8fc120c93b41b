"""Document processing (Sequential, transcript context): extract typed fields, validate, summarize."""

from __future__ import annotations

from orchestrion import RunStatus, Runtime
from orchestrion.demos.document_processing import TASK, Invoice, LineItem, extract, pipeline

KEYS = [
    "document-processing/step-0/extract/turn-1/model",
    "document-processing/step-1/validate/turn-1/model",
    "document-processing/step-1/validate/turn-1/tool/lookup_vendor#c_vendor",
    "document-processing/step-1/validate/turn-2/model",
    "document-processing/step-2/summarize/turn-1/model",
]


async def test_a_valid_invoice_is_summarized_as_ready_to_pay(runtime: Runtime) -> None:
    result = await runtime.run(pipeline, TASK)
    assert result.status is RunStatus.COMPLETED and not result.interrupts
    assert result.output == (
        "[stand-in model] Invoice INV-2025-0419 from Acme Office Supply, 2025-04-19: "
        "1,380.00 EUR (2 lines, tax 230.00). Checks passed: ready for approval and payment "
        "within 30 days."
    )
    steps = await runtime.history(result.run_id)
    assert [s.key for s in steps] == KEYS  # extract, then validate (with its tool), then summarize
    assert all(s.status.value == "completed" for s in steps)


async def test_the_extractor_gives_typed_fields(runtime: Runtime) -> None:
    result = await runtime.run(extract, TASK)
    assert result.output == Invoice(
        invoice_number="INV-2025-0419",
        vendor="Acme Office Supply",
        date="2025-04-19",
        currency="EUR",
        lines=[
            LineItem(description="Ergonomic chair", quantity=2, unit_price=320.0, amount=640.0),
            LineItem(description="Standing desk", quantity=1, unit_price=510.0, amount=510.0),
        ],
        subtotal=1150.0,
        tax=230.0,
        total=1380.0,
    )
    record = await runtime.get(result.run_id)
    assert isinstance(record.output, dict) and record.output["total"] == 1380.0


async def test_a_wrong_total_and_an_unknown_vendor_put_the_invoice_on_hold(
    runtime: Runtime,
) -> None:
    task = TASK.replace("Acme Office Supply", "Shady Supplies").replace(
        "Total: 1380.00", "Total: 1390.00"
    )
    result = await runtime.run(pipeline, task)
    assert result.output == (
        "[stand-in model] Invoice INV-2025-0419 from Shady Supplies, 2025-04-19: "
        "1,390.00 EUR (2 lines, tax 230.00). On hold: vendor 'Shady Supplies' is not in the "
        "approved-vendor register; subtotal 1150.00 + tax 230.00 = 1380.00, not the total 1390.00."
    )
    assert [s.key for s in await runtime.history(result.run_id)] == KEYS
