"""Stores: where runs and their journals live, found by URL scheme."""

from orchestrion.stores.memory import MemoryStore
from orchestrion.engine.store import DEFAULT_STORE_URL, open_store, register_store

__all__ = ["DEFAULT_STORE_URL", "MemoryStore", "open_store", "register_store"]
