"""Incident response: logs, metrics and deploy-history analysts work the same
incident at once; the deploy API is down, so a summarizer works from the two
that succeeded (the Concurrent pattern, min_success=2).

    python examples/incident_response.py                                     # offline, stand-in model
    ORCHESTRION_MODEL=openai:gpt-4.1-mini python examples/incident_response.py   # a real model
"""

import asyncio

# The definitions live in the package (orchestrion/demos/incident_response.py) so that
# `orchestrion demo incident-response` works from an installed wheel; this file runs them.
from orchestrion.demos.incident_response import TASK, response
from orchestrion.demos.runner import run_example

if __name__ == "__main__":
    asyncio.run(run_example(response, TASK))
