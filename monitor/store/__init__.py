"""The store: the only package that talks to the database (SQLAlchemy 2 async)."""

from monitor.store.convert import ActionRecord, EscalationRecord, SourceState, WorkItem
from monitor.store.db import UNREACHABLE
from monitor.store.facade import IngestCounts, ItemClaim, ItemState, Stage, Store, StoreError
from monitor.store.migrate import upgrade

__all__ = [
    "UNREACHABLE",
    "ActionRecord",
    "EscalationRecord",
    "IngestCounts",
    "ItemClaim",
    "ItemState",
    "SourceState",
    "Stage",
    "Store",
    "StoreError",
    "WorkItem",
    "upgrade",
]
