"""Document processing: extract an invoice's fields (typed output), validate
them, summarize them for accounts payable (the Sequential pattern, each step
seeing the whole transcript).

    python examples/document_processing.py                                     # offline, stand-in model
    ORCHESTRION_MODEL=openai:gpt-4.1-mini python examples/document_processing.py   # a real model
"""

import asyncio

# The definitions live in the package (orchestrion/demos/document_processing.py) so that
# `orchestrion demo document-processing` works from an installed wheel; this file runs them.
from orchestrion.demos.document_processing import TASK, pipeline
from orchestrion.demos.runner import run_example

if __name__ == "__main__":
    asyncio.run(run_example(pipeline, TASK))
