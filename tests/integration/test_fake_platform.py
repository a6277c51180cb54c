"""End to end against a fake Graph API on loopback: the daemon polls a Facebook Page, classifies,
captures evidence, hides an abusive comment through the connector, notices edits and deletions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.store import Store
from monitor.store import tables as t
from monitor.store.migrate import upgrade
from tests.conftest import Clock
from tests.fakeplatform import FakeGraph

ABUSE = "Go back to your own country, you don't belong at Oakfield"
KIND = "Thank you for a brilliant sports day, the children loved it"


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def facebook_settings(make_settings: Callable[..., Settings], graph: FakeGraph) -> Settings:
    return make_settings(
        sources=[
            {
                "name": "facebook",
                "platform": "facebook",
                "kind": "own",
                "account": "oakfieldprimary",
                "credentials": {"access_token_env": "VIGIL_TEST_FB_TOKEN"},
                "options": {"api_base": graph.base_url, "page_id": graph.page_id},
            }
        ],
    )


async def items_by_id(settings: Settings) -> dict[str, t.Item]:
    store = Store.open(settings.database_url())
    try:
        async with store.transaction() as s:
            return {i.external_id: i for i in await s.scalars(select(t.Item))}
    finally:
        await store.close()


async def test_the_daemon_hides_an_abusive_comment_through_the_platform(
    make_settings: Callable[..., Settings],
    graph: FakeGraph,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIGIL_TEST_FB_TOKEN", graph.token)
    graph.add_post("122100000000000001", "Sports day photos are up!", clock() - timedelta(hours=3))
    kind = graph.add_comment(
        "122100000000000001", "987654321000001", KIND, "Parent One", clock() - timedelta(hours=2)
    )
    abuse = graph.add_comment(
        "122100000000000001", "987654321000002", ABUSE, "Someone Else", clock() - timedelta(hours=1)
    )
    settings = facebook_settings(make_settings, graph)
    await upgrade(settings.database_url())

    assert await Daemon(settings, clock=clock).run(once=True) == 0
    hides = [c for c in graph.moderation() if c[0] == "POST"]
    assert [(c[1], c[2].get("is_hidden")) for c in hides] == [(abuse, "true")]
    assert graph.comments[abuse]["is_hidden"] and not graph.comments[kind]["is_hidden"]
    items = await items_by_id(settings)
    assert items[abuse].state == "flagged" and items[kind].state == "clean"

    # Between polls: the kind comment is edited into abuse, the hidden one is deleted.
    graph.edit(kind, ABUSE + " and take your kids with you")
    graph.remove(abuse)
    clock.advance(minutes=20)
    assert await Daemon(settings, clock=clock).run(once=True) == 0
    items = await items_by_id(settings)
    assert items[kind].version == 2 and items[kind].state == "flagged"
    assert items[abuse].gone_at is not None  # kept, marked gone
    assert graph.comments[kind]["is_hidden"]  # the edited comment was hidden too


async def test_an_approved_reply_explains_the_removal_after_the_hide(
    make_settings: Callable[..., Settings],
    graph: FakeGraph,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIGIL_TEST_FB_TOKEN", graph.token)
    post = "122100000000000001"
    graph.add_post(post, "Sports day photos are up!", clock() - timedelta(hours=3))
    graph.add_comment(post, "987654321000002", ABUSE, "Someone Else", clock() - timedelta(hours=1))
    settings = facebook_settings(make_settings, graph)
    await upgrade(settings.database_url())
    await Daemon(settings, clock=clock).run(once=True)
    assert graph.replies == []  # proposed, not automatic
    store = Store.open(settings.database_url())
    try:
        reply = next(a for a in await store.case_actions(1) if a.kind == "reply")
        assert reply.state == "proposed"
        await store.decide_action(reply.id, True, actor="ms.shah", reason="ok", now=clock())
    finally:
        await store.close()
    await Daemon(settings, clock=clock).run(once=True)
    ((replied_to, message),) = graph.replies
    assert replied_to == f"{graph.page_id}_{post}"  # under the post, not the hidden comment
    assert "Oakfield" in message and "country" not in message  # never repeats the comment
