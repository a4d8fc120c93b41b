"""Models: the `Model` protocol, provider adapters and the string registry."""

from orchestrion.models.base import Model
from orchestrion.models.registry import infer_model, register_provider

__all__ = ["Model", "infer_model", "register_provider"]
