"""Name → class tables for plug-ins: built-ins and outside packages load the same way.

Config names a connector by its short name (``"facebook"``, ``"replay"``), never by import
path. Built-ins are listed here exactly as an outside package would list them in its
``[project.entry-points."vigil.connectors"]`` table.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from connectors.base import Connector

__all__ = [
    "CONNECTOR_GROUP",
    "DEFAULT_CONNECTORS",
    "RegistryError",
    "connector_class",
    "connector_names",
]

CONNECTOR_GROUP = "vigil.connectors"
DEFAULT_CONNECTORS: dict[str, str] = {
    "replay": "connectors.replay:ReplayConnector",
    "facebook": "connectors.facebook:FacebookConnector",
    "instagram": "connectors.instagram:InstagramConnector",
    "x": "connectors.x:XConnector",
    "youtube": "connectors.youtube:YouTubeConnector",
    "rss": "connectors.rss:RssConnector",
    "bluesky": "connectors.bluesky:BlueskyConnector",
    "mastodon": "connectors.mastodon:MastodonConnector",
    "reddit": "connectors.reddit:RedditConnector",
}


class RegistryError(Exception):
    """No plug-in is registered under that name, or it failed to load."""


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)


def _table() -> dict[str, str]:
    table = dict(DEFAULT_CONNECTORS)
    for ep in entry_points(group=CONNECTOR_GROUP):
        table.setdefault(ep.name, ep.value)
    return table


def connector_names() -> list[str]:
    """Every connector name that config may use."""
    return sorted(_table())


def connector_class(name: str) -> type[Connector]:
    """The connector class registered as ``name``."""
    target = _table().get(name)
    if target is None:
        raise RegistryError(f"no connector called {name!r} (known: {', '.join(connector_names())})")
    try:
        cls: type[Connector] = _load(target)
    except (ImportError, AttributeError) as err:
        raise RegistryError(f"connector {name!r} ({target}) failed to load: {err}") from err
    return cls
