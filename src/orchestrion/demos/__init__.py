"""Runnable demos, each offline on a deterministic stand-in model (`orchestrion demo NAME`)."""

DEMOS = {"loan-payoff": "orchestrion.demos.loan_payoff"}
