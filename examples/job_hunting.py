"""Job hunting: parse a resume (typed output), match it to a job with
`search_jobs`, write the cover letter (the Sequential pattern with a function
context policy).

    python examples/job_hunting.py                                     # offline, stand-in model
    ORCHESTRION_MODEL=openai:gpt-4.1-mini python examples/job_hunting.py   # a real model
"""

import asyncio

# The definitions live in the package (orchestrion/demos/job_hunting.py) so that
# `orchestrion demo job-hunting` works from an installed wheel; this file runs them.
from orchestrion.demos.job_hunting import TASK, pipeline
from orchestrion.demos.runner import run_example

if __name__ == "__main__":
    asyncio.run(run_example(pipeline, TASK))
