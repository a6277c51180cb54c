"""Normalisation throughput: recorded platform payloads → Post, per connector, on one core.

Run:  .venv/bin/python bench/connectors.py [--items 20000]
Mapping only (JSON already parsed; no network): the target is ≥ 20,000 posts/s per connector.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "fixtures"

from connectors import bluesky, facebook, instagram, mastodon, reddit, rss, x, youtube  # noqa: E402
from connectors.base import SourceKind  # noqa: E402

OWN, MENTION = SourceKind.OWN, SourceKind.MENTION


def load(platform: str, name: str) -> Any:
    return json.loads((FIXTURES / platform / name).read_text())


def cases() -> dict[str, tuple[list[Any], Callable[[Any], object]]]:
    """Connector → (payload items, the function that turns one into a Post)."""
    tweets = load("x", "search_recent.json")
    users = {u["id"]: u for u in tweets.get("includes", {}).get("users", [])}
    media = {m["media_key"]: m for m in tweets.get("includes", {}).get("media", [])}
    threads = load("youtube", "comment_threads_list.json")["items"]
    return {
        "facebook": (
            load("facebook", "post_comments.json")["data"],
            lambda i: facebook.parse_comment(i, thread="t", kind=OWN, account="p"),
        ),
        "instagram": (
            load("instagram", "media_comments.json")["data"],
            lambda i: instagram.parse_comment(
                i, thread="m", parent="m", link=None, kind=OWN, account="a"
            ),
        ),
        "x": (
            tweets["data"],
            lambda i: x.tweet_to_post(i, users=users, media=media, kind=MENTION, account="a"),
        ),
        "youtube": (
            [t["snippet"]["topLevelComment"] for t in threads],
            lambda i: youtube.comment_to_post(i, kind=OWN, account="c"),
        ),
        "mastodon": (
            load("mastodon", "tag_timeline.json"),
            lambda i: mastodon.status_to_post(i, MENTION),
        ),
        "reddit": (
            load("reddit", "search_listing.json")["data"]["children"],
            lambda i: reddit.thing_to_post(i, MENTION),
        ),
        **extra_cases(),
    }


def extra_cases() -> dict[str, tuple[list[Any], Callable[[Any], object]]]:
    """Feeds are parsed by feedparser first; Bluesky's post views come from a search page."""
    import feedparser

    now = datetime.now(UTC)
    feed = (FIXTURES / "rss" / "google_alerts_feed.atom.xml").read_bytes()
    entries = [rss._jsonable(e) for e in feedparser.parse(io.BytesIO(feed)).entries]
    views = load("bluesky", "search_posts.json")["posts"]
    return {
        "rss": (entries, lambda e: rss.entry_to_post(e, kind=MENTION, account="alerts", now=now)),
        "bluesky": (
            views,
            lambda v: bluesky.post_view_to_post(v, kind=MENTION, account="a", now=now),
        ),
    }


def rate(items: list[Any], convert: Callable[[Any], object], total: int) -> float:
    batch = (items * (total // max(len(items), 1) + 1))[:total]
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for item in batch:
            convert(item)
        best = max(best, total / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args()
    for name, (items, convert) in cases().items():
        per_second = rate(items, convert, args.items)
        print(f"{name:<10} {per_second:>10,.0f} posts/s ({len(items)} fixture items)")


if __name__ == "__main__":
    main()
