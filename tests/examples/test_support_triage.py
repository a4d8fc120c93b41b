"""Support triage (Handoff): routes, an approved refund made once, the technical desk."""

from __future__ import annotations

import dataclasses

from orchestrion import Approve, Handoff, Reject, RunStatus, Runtime
from orchestrion.demos.support_triage import TASK, Helpdesk, desk, stand_in_policy
from orchestrion.testing import FunctionModel


async def test_a_duplicate_charge_goes_to_billing_and_is_refunded_once(runtime: Runtime) -> None:
    helpdesk = Helpdesk()
    first = await runtime.run(desk, TASK, deps=helpdesk)
    assert first.status is RunStatus.INTERRUPTED
    [interrupt] = first.interrupts
    assert interrupt.key == "support-triage/hop-1/billing/turn-2/tool/refund#c_refund/approval"
    assert interrupt.payload["arguments"] == {
        "order_id": "A-1001",
        "charge_id": "ch-882",
        "amount": 49.0,
        "reason": "duplicate charge",
    }
    assert helpdesk.refunds == {}

    done = await runtime.resume(first.run_id, {interrupt.id: Approve()}, deps=helpdesk)
    assert done.output == (
        "[stand-in model] Refunded 49.00 for the duplicate charge ch-882 on order A-1001; "
        "it reaches your card in 3-5 business days."
    )
    assert list(helpdesk.refunds.values()) == [
        {"order_id": "A-1001", "charge_id": "ch-882", "amount": 49.0}
    ]
    assert [s.key for s in await runtime.history(first.run_id)] == [
        "support-triage/hop-0/triage/turn-1/model",
        "support-triage/hop-1/billing/turn-1/model",
        "support-triage/hop-1/billing/turn-1/tool/get_charges#c_charges",
        "support-triage/hop-1/billing/turn-2/model",
        "support-triage/hop-1/billing/turn-2/tool/refund#c_refund/approval",
        "support-triage/hop-1/billing/turn-2/tool/refund#c_refund",
        "support-triage/hop-1/billing/turn-3/model",
    ]


async def test_a_rejected_refund_is_not_made(runtime: Runtime) -> None:
    helpdesk = Helpdesk()
    first = await runtime.run(desk, TASK, deps=helpdesk)
    done = await runtime.resume(
        first.run_id, {first.interrupts[0].id: Reject("already refunded by phone")}, deps=helpdesk
    )
    assert done.output == (
        "[stand-in model] I did not refund the duplicate charge: "
        "The user rejected this call: already refunded by phone"
    )
    assert helpdesk.refunds == {}


async def test_a_crash_goes_to_technical_with_no_approval(runtime: Runtime) -> None:
    helpdesk = Helpdesk()
    result = await runtime.run(
        desk, "The app crashes when I export a report to PDF.", deps=helpdesk
    )
    assert result.status is RunStatus.COMPLETED and not result.interrupts
    assert result.output.startswith("[stand-in model] This is known issue KB-214")
    assert [s.key for s in await runtime.history(result.run_id)] == [
        "support-triage/hop-0/triage/turn-1/model",
        "support-triage/hop-1/technical/turn-1/model",
        "support-triage/hop-1/technical/turn-1/tool/search_known_issues#c_search",
        "support-triage/hop-1/technical/turn-2/model",
    ]
    assert helpdesk.refunds == {}


async def test_routes_decide_which_transfers_each_agent_is_offered(runtime: Runtime) -> None:
    spies = {a.name: FunctionModel(stand_in_policy) for a in desk.agents}
    watched = Handoff(
        name=desk.name,
        agents=[dataclasses.replace(a, model=spies[a.name]) for a in desk.agents],
        routes=desk.routes,
    )
    await runtime.run(watched, "The app crashes when I export a report to PDF.")
    offered = {
        name: {t.name for t in spy.requests[0].tools} for name, spy in spies.items() if spy.requests
    }
    assert offered == {
        "triage": {"transfer_to_billing", "transfer_to_technical"},
        "technical": {"search_known_issues", "transfer_to_billing"},  # never back to triage
    }
