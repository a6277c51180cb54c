"""The replay connector: pages, cursors, edits as versions, deletions, simulated time, rejects."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Capability, Cursor, ModerationTarget, SourceContext, SourceKind
from connectors.replay import ReplayConnector


def event(
    op: str, external_id: str, at: str = "2026-11-02T09:00:00Z", **extra: Any
) -> dict[str, Any]:
    base = {"op": op, "platform": "facebook", "external_id": external_id, "at": at}
    if op == "post":
        base |= {"text": f"post {external_id}", "created_at": at}
    return base | extra


def connector(
    tmp_path: Path, events: list[dict[str, Any] | str], **options: Any
) -> ReplayConnector:
    path = tmp_path / "feed.jsonl"
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events))
    context = SourceContext(
        source_name="replay",
        kind=SourceKind.OWN,
        options={"path": str(path), **options},
        clock=lambda: datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
    )
    return ReplayConnector.from_context(context)


async def test_pages_follow_the_cursor_until_exhausted(tmp_path: Path) -> None:
    replay = connector(tmp_path, [event("post", str(n)) for n in range(5)], page_size=2)
    seen, cursor, pages = [], Cursor(), 0
    while True:
        batch = await replay.fetch(cursor)
        seen += [p.external_id for p in batch.posts]
        cursor, pages = batch.cursor, pages + 1
        if batch.exhausted:
            break
    assert seen == ["0", "1", "2", "3", "4"] and pages == 3 and cursor.value == "5"
    assert (await replay.fetch(cursor)).posts == ()


async def test_an_edit_ends_the_page_so_it_becomes_its_own_version(tmp_path: Path) -> None:
    replay = connector(
        tmp_path,
        [
            event("post", "a"),
            event("edit", "a", text="edited", updated_at="2026-11-02T10:00:00Z"),
            event("delete", "a"),
        ],
    )
    first = await replay.fetch(Cursor())
    second = await replay.fetch(first.cursor)
    third = await replay.fetch(second.cursor)
    assert [p.text for p in first.posts] == ["post a"] and not first.exhausted
    assert [p.text for p in second.posts] == ["edited"]
    assert second.posts[0].updated_at == datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    assert second.posts[0].raw["text"] == "edited"
    assert third.posts == () and third.gone == ("a",) and third.exhausted


async def test_respect_times_holds_back_future_events(tmp_path: Path) -> None:
    replay = connector(
        tmp_path,
        [event("post", "now"), event("post", "later", at="2026-11-03T09:00:00Z")],
        respect_times=True,
    )
    batch = await replay.fetch(Cursor())
    assert [p.external_id for p in batch.posts] == ["now"] and not batch.exhausted
    assert (await replay.fetch(batch.cursor)).posts == ()


async def test_malformed_lines_are_rejected_with_their_line_and_replay_goes_on(
    tmp_path: Path,
) -> None:
    replay = connector(
        tmp_path,
        [
            "{broken",
            event("edit", "never-posted"),
            event("post", "ok"),
            event("post", "naive", created_at="2026-11-02T09:00:00"),
        ],
    )
    batch = await replay.fetch(Cursor())
    assert [p.external_id for p in batch.posts] == ["ok"]
    assert [r.error.split(":")[0] for r in batch.rejects] == ["line 1", "line 2", "line 4"]
    assert batch.rejects[0].payload == "{broken" and batch.exhausted


@pytest.mark.parametrize(
    "options, message",
    [
        ({"path": ""}, "options.path"),
        ({"page_size": 0}, "options.page_size"),
    ],
)
def test_bad_options_name_the_option(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    context = SourceContext(
        source_name="r", kind=SourceKind.OWN, options={"path": str(tmp_path / "x.jsonl"), **options}
    )
    with pytest.raises(ValueError, match=message):
        ReplayConnector.from_context(context)


async def test_moderation_calls_are_recorded_not_sent(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    replay = connector(tmp_path, [event("post", "a")], moderation_log=str(log))
    result = await replay.moderate(
        Capability.HIDE, ModerationTarget(platform="facebook", external_id="a")
    )
    assert result.supported and result.done
    assert json.loads(log.read_text()) == {
        "call": "hide",
        "external_id": "a",
        "platform": "facebook",
    }


async def test_check_fails_when_the_file_is_missing(tmp_path: Path) -> None:
    context = SourceContext(
        source_name="r", kind=SourceKind.OWN, options={"path": str(tmp_path / "no")}
    )
    with pytest.raises(FileNotFoundError):
        await ReplayConnector.from_context(context).check()
