"""Runnable demos, each offline on a deterministic stand-in model (`orchestrion demo NAME`).

Each module has `TASK` (the demo's input), `agent` (what the demo runs: an agent
or a pattern) and `stand_in_policy` (what `stand-in:<name>` answers)."""

DEMOS = {  # `orchestrion demo` with no name runs the loan team
    "loan-team": "orchestrion.demos.loan_team",
    "loan-payoff": "orchestrion.demos.loan_payoff",
    "support-triage": "orchestrion.demos.support_triage",
    "incident-response": "orchestrion.demos.incident_response",
    "payroll-help": "orchestrion.demos.payroll_help",
    "document-processing": "orchestrion.demos.document_processing",
    "job-hunting": "orchestrion.demos.job_hunting",
    "research-loop": "orchestrion.demos.research_loop",
}
