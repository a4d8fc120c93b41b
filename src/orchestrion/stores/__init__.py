"""Stores: where runs and their journals live, found by URL scheme."""

from orchestrion.engine.store import DEFAULT_STORE_URL, open_store, register_store
from orchestrion.stores.memory import MemoryStore
from orchestrion.stores.sqlite import SQLiteStore

__all__ = ["DEFAULT_STORE_URL", "MemoryStore", "SQLiteStore", "open_store", "register_store"]
