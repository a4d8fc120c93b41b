"""Job hunting: parse a resume (typed output), match it to a job with
`search_jobs`, write the cover letter (the Sequential pattern with a function
context policy).

    python examples/job_hunting.py                                     # offline, stand-in model
    ORCHESTRION_MODEL=openai:gpt-4.1-mini python examples/job_hunting.py   # a real model
"""

import asyncio

from orchestrion import Runtime

# The definitions live in the package (orchestrion/demos/job_hunting.py) so that
# `orchestrion demo job-hunting` works from an installed wheel; this file runs them.
from orchestrion.demos.job_hunting import TASK, pipeline


async def main() -> None:
    async with Runtime("memory://") as runtime:
        result = await runtime.run(pipeline, TASK)
        for step in await runtime.history(result.run_id):
            print(f"  {step.status.value:9} {step.key}")
        print(result.output)


if __name__ == "__main__":
    asyncio.run(main())
