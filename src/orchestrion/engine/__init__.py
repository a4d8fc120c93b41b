"""The engine: replaying orchestration code against a run's journal."""
