"""Incident response: three analysts on the same incident at once, then a summary.

Logs, metrics and deploy-history analysts each investigate the incident with
their own tool, concurrently. The deploy-history API is down (its tool raises),
so that analyst fails; `min_success=2` lets the run go on with partial results,
and the summarizer receives all three outcomes, the failure described, and says
what is known and what is missing.

The runnable definitions live here, inside the package, so `orchestrion demo`
works from an installed wheel; `examples/incident_response.py` imports and runs them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from orchestrion._json import dumps_str, loads
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.demos.stand_in import calls, first_text, offered, results, say, unprefixed
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall
from orchestrion.patterns.concurrent import Concurrent
from orchestrion.tools.tool import tool

TASK = (
    "INC-2207: checkout-api is returning HTTP 5xx to about 8% of requests since 14:05 UTC. "
    "Find out why."
)
SERVICE = "checkout-api"

MODEL = os.environ.get("ORCHESTRION_MODEL") or "stand-in:incident-response"


@dataclass(frozen=True)
class Systems:
    """The stand-in observability systems the analysts query."""

    deploy_api_up: bool = False
    """The deploy-history API is down during this incident, as such APIs tend to be."""


def _systems(ctx: RunContext[Systems | None]) -> Systems:
    return ctx.deps or Systems()


@tool
async def search_logs(service: str, minutes: int = 30) -> dict[str, object]:
    """The most frequent error lines of a service over the last minutes.

    Args:
        service: The service, e.g. "checkout-api".
        minutes: How far back to look.
    """
    return {
        "service": service,
        "minutes": minutes,
        "top_errors": [
            {
                "count": 1843,
                "first_seen": "14:05:12Z",
                "line": "upstream payments-gw: timeout after 2000 ms (POST /v2/authorize)",
            },
            {"count": 12, "first_seen": "13:40:03Z", "line": "redis: connection reset by peer"},
        ],
    }


@tool
async def get_metrics(service: str) -> dict[str, object]:
    """Error rate and p99 latency of a service, an hour ago and now.

    Args:
        service: The service, e.g. "checkout-api".
    """
    return {
        "service": service,
        "error_rate_percent": {"an_hour_ago": 0.3, "now": 8.4, "changed_at": "14:05Z"},
        "p99_latency_ms": {"an_hour_ago": 240, "now": 2050},
        "payments_gw_p99_latency_ms": {"an_hour_ago": 1900, "now": 2100},
    }


@tool
async def get_deploy_history(ctx: RunContext[Systems | None], service: str) -> list[dict[str, str]]:
    """Recent deploys of a service and what each changed.

    Args:
        service: The service, e.g. "checkout-api".
    """
    if not _systems(ctx).deploy_api_up:
        raise ConnectionError(
            "deploy-history API unreachable: connection refused (deploys.internal:8443)"
        )
    return [
        {
            "version": "2025.03.14-2",
            "at": "14:02Z",
            "change": "payments-gw client timeout 5000 -> 2000 ms",
        }
    ]


def _analyst(request: ModelRequest, tool_name: str, report: str) -> ModelResponse:
    done = results(request)
    if tool_name not in done:
        service = re.search(r"\b[a-z]+(?:-[a-z]+)+\b", first_text(request))
        arguments = {"service": service.group(0) if service else SERVICE}
        return calls(ToolCall(f"c_{tool_name}", tool_name, dumps_str(arguments)))
    return say(report.format(**{"data": loads(done[tool_name].content)}))


def _logs(request: ModelRequest) -> ModelResponse:
    return _analyst(
        request,
        "search_logs",
        "Logs: {data[top_errors][0][count]} x '{data[top_errors][0][line]}' "
        "since {data[top_errors][0][first_seen]}.",
    )


def _metrics(request: ModelRequest) -> ModelResponse:
    return _analyst(
        request,
        "get_metrics",
        "Metrics: error rate {data[error_rate_percent][an_hour_ago]}% -> "
        "{data[error_rate_percent][now]}% at {data[error_rate_percent][changed_at]}; p99 "
        "{data[p99_latency_ms][an_hour_ago]} -> {data[p99_latency_ms][now]} ms, capped near "
        "2000 ms; payments-gw p99 is {data[payments_gw_p99_latency_ms][now]} ms.",
    )


def _deploys(request: ModelRequest) -> ModelResponse:
    done = results(request)
    if "get_deploy_history" in done:
        deploys = loads(done["get_deploy_history"].content)
        latest = deploys[0]
        return say(f"Deploys: {latest['version']} at {latest['at']}: {latest['change']}.")
    return _analyst(request, "get_deploy_history", "")


def _summarizer(request: ModelRequest) -> ModelResponse:
    try:
        branches = loads(first_text(request))
    except ValueError:
        return say("I expected the analysts' results as JSON and got something else.")
    found = [unprefixed(str(b["output"])) for b in branches if b["ok"]]
    missing = [f"{b['name']} ({b['error']['message']})" for b in branches if not b["ok"]]
    lines = [f"INC-2207 summary from {len(found)} of {len(branches)} analysts."]
    lines += [f"- {f}" for f in found]
    if any("timeout after 2000 ms" in f for f in found):
        deploy = next(
            (re.search(r"Deploys: (\S+)", f) for f in found if f.startswith("Deploys:")), None
        )
        fix = f"roll back {deploy.group(1)}" if deploy else "find what lowered it"
        lines.append(
            "Likely cause: calls to payments-gw time out at 2000 ms while its p99 is about "
            f"2100 ms; {fix} or raise the timeout."
        )
    if missing:
        lines.append("Missing: " + "; ".join(missing) + ". Check recent deploys by hand.")
    return say("\n".join(lines))


def stand_in_policy(request: ModelRequest) -> ModelResponse:
    """One policy for the whole response: the asking agent is known by its tools."""
    tools = offered(request)
    if "search_logs" in tools:
        return _logs(request)
    if "get_metrics" in tools:
        return _metrics(request)
    if "get_deploy_history" in tools:
        return _deploys(request)
    return _summarizer(request)


logs = Agent(
    name="logs",
    instructions="You analyse logs. Search the affected service's logs and report the error that explains the incident, with counts and when it started.",
    model=MODEL,
    tools=[search_logs],
)
metrics = Agent(
    name="metrics",
    instructions="You analyse metrics. Report what changed in the affected service's error rate and latency, and when.",
    model=MODEL,
    tools=[get_metrics],
)
deploys = Agent(
    name="deploys",
    instructions="You analyse deploys. Report the affected service's deploys just before the incident and what they changed.",
    model=MODEL,
    tools=[get_deploy_history],
)
summarizer = Agent(
    name="summarizer",
    instructions=(
        "You lead the incident response. You receive the analysts' results as JSON (one entry "
        "per analyst: ok with its output, or its error). Write a short summary: what each "
        "analyst found, the likely cause, and what is missing because an analyst failed."
    ),
    model=MODEL,
)

response = Concurrent(
    name="incident-response",
    branches=[logs, metrics, deploys],
    aggregator=summarizer,
    min_success=2,
    description="Logs, metrics and deploy analysts at once; a summary from those that succeed.",
)
agent = response  # `orchestrion demo` runs `<demo module>:agent`
