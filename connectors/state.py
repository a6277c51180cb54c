"""Connector cursors as small JSON documents, and noticing posts that disappeared.

A connector's cursor is whatever it needs to resume (a ``since`` time, a page token, ETags)
plus, for own-account sources, the ids it saw last time in each watched thread: a later full
read of that thread that lacks an id means the post was deleted or hidden by someone else,
and the store marks it gone (never deletes it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from connectors.base import Cursor

__all__ = ["MAX_WATCHED_THREADS", "read_state", "track_thread", "write_state"]

MAX_WATCHED_THREADS = 50  # the newest threads whose replies are re-read each poll


def read_state(cursor: Cursor) -> dict[str, Any]:
    """The cursor's JSON state; an empty or unreadable cursor starts afresh."""
    if not cursor.value:
        return {}
    try:
        state = json.loads(cursor.value)
    except json.JSONDecodeError:
        return {}
    return state if isinstance(state, dict) else {}


def write_state(state: Mapping[str, Any]) -> Cursor:
    """A cursor holding ``state`` (canonical JSON)."""
    return Cursor(value=json.dumps(state, sort_keys=True, separators=(",", ":")))


def track_thread(watched: dict[str, list[str]], thread_id: str, seen: Iterable[str]) -> list[str]:
    """Record the ids now seen in a thread; return those seen last time but gone now."""
    now = list(dict.fromkeys(seen))
    before = watched.get(thread_id, [])
    gone = [i for i in before if i not in set(now)]
    watched[thread_id] = now
    return gone


def prune_threads(watched: dict[str, list[str]], keep: Iterable[str]) -> dict[str, list[str]]:
    """Only the threads still watched (the newest ``MAX_WATCHED_THREADS``)."""
    wanted = list(keep)[:MAX_WATCHED_THREADS]
    return {t: watched[t] for t in wanted if t in watched}


__all__ += ["prune_threads"]
