"""Incident response (Concurrent): three analysts at once, partial results summarized."""

from __future__ import annotations

from orchestrion import RunStatus, Runtime
from orchestrion.demos.incident_response import TASK, Systems, response


async def test_a_failed_analyst_leaves_a_summary_of_the_other_two(runtime: Runtime) -> None:
    result = await runtime.run(response, TASK)
    assert result.status is RunStatus.COMPLETED and not result.interrupts
    output = result.output
    assert output.startswith("[stand-in model] INC-2207 summary from 2 of 3 analysts.")
    assert "Logs: 1843 x 'upstream payments-gw: timeout after 2000 ms" in output
    assert "Metrics: error rate 0.3% -> 8.4% at 14:05Z" in output
    assert (
        "Missing: deploys (Tool 'get_deploy_history' raised: ConnectionError: "
        "deploy-history API unreachable" in output
    )

    status = {s.key: s.status.value for s in await runtime.history(result.run_id)}
    for i, analyst in enumerate(["logs", "metrics", "deploys"]):
        assert f"incident-response/branch-{i}/{analyst}/turn-1/model" in status
    assert (
        status["incident-response/branch-0"] == status["incident-response/branch-1"] == "completed"
    )
    # A failed branch is journaled as failed: a resume would try it again.
    failed = [key for key, value in status.items() if value == "failed"]
    assert failed == [
        "incident-response/branch-2/deploys/turn-1/tool/get_deploy_history#c_get_deploy_history",
        "incident-response/branch-2",
    ]
    assert "incident-response/branch-2/deploys/turn-2/model" not in status
    assert status["incident-response/aggregate/summarizer/turn-1/model"] == "completed"


async def test_with_every_analyst_up_the_summary_names_the_deploy(runtime: Runtime) -> None:
    result = await runtime.run(response, TASK, deps=Systems(deploy_api_up=True))
    output = result.output
    assert output.startswith("[stand-in model] INC-2207 summary from 3 of 3 analysts.")
    assert "Deploys: 2025.03.14-2 at 14:02Z: payments-gw client timeout 5000 -> 2000 ms." in output
    assert "roll back 2025.03.14-2" in output and "Missing" not in output
