"""The store on SQLite and PostgreSQL: ingest, versions, stages, actions, evidence chain, audit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from actions.evidence import EvidenceRecord
from actions.policy import ActionKind, ProposedAction
from actions.states import ActionState, InvalidTransition
from classifiers.base import Verdict
from classifiers.taxonomy import Cell, Flag, Severity
from connectors.base import Media, Post, SourceKind
from monitor.store import Stage, Store
from tests.conftest import Clock

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def post(n: int, text: str = "hello", **kw: object) -> Post:
    return Post(
        platform="facebook",
        external_id=f"c{n}",
        text=text,
        created_at=T0,
        source_kind=SourceKind.OWN,
        raw={"id": f"c{n}", "message": text},
        **kw,
    )  # type: ignore[arg-type]


ABUSIVE = Verdict(
    flags=frozenset({Flag.ABUSIVE}),
    cells=frozenset({Cell.parse("conduct.aggressive")}),
    severity=Severity.HIGH,
)


async def source_id(store: Store) -> int:
    school = await store.ensure_school("oakfield", "Oakfield Primary School", T0)
    return (await store.ensure_source(school, "fb", "facebook", "own", T0)).id


async def test_ingest_is_an_upsert_and_edits_become_versions(store: Store) -> None:
    sid = await source_id(store)
    counts = await store.record_batch(sid, [post(1), post(2)], cursor="c1", now=T0)
    assert (counts.new, counts.edited) == (2, 0)
    again = await store.record_batch(sid, [post(1), post(2, "hello edited")], cursor="c2", now=T0)
    assert (again.new, again.edited, again.unchanged) == (0, 1, 1)
    media = await store.record_batch(
        sid, [post(1, media=(Media(url="https://x/1.jpg", type="image"),))], cursor="c3", now=T0
    )
    assert media.edited == 1  # a media change is an edit too
    state = await store.source_state(sid)
    assert state.cursor == "c3" and state.items_seen == 2
    summary = await store.summary()
    assert summary["items"] == 2 and summary["versions"] == 4


async def test_gone_items_are_marked_never_deleted(store: Store) -> None:
    sid = await source_id(store)
    await store.record_batch(sid, [post(1)], cursor=None, now=T0)
    counts = await store.record_batch(sid, [], gone=["c1", "unknown"], cursor=None, now=T0)
    assert counts.gone == 1
    summary = await store.summary()
    assert summary["items"] == 1 and summary["gone"] == 1


async def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Post(
            platform="x",
            external_id="1",
            text="",
            created_at=datetime(2026, 1, 1),
            source_kind=SourceKind.OWN,
        )


async def test_stages_move_items_and_verdicts_are_unique(store: Store) -> None:
    sid = await source_id(store)
    await store.record_batch(sid, [post(1, "nice"), post(2, "nasty")], cursor=None, now=T0)
    async with store.claim_items(Stage.CLASSIFY, 10) as claim:
        items = {i.external_id: i for i in claim.items}
        assert set(items) == {"c1", "c2"}
        assert items["c1"].posted_at.tzinfo is not None  # read back aware, on SQLite too
        await claim.record_verdict(items["c1"], Verdict(), T0)
        await claim.record_verdict(items["c2"], ABUSIVE, T0)
    async with store.claim_items(Stage.CLASSIFY, 10) as claim:
        assert claim.items == []
    with pytest.raises(IntegrityError):
        async with store.claim_items(Stage.DECIDE, 10) as claim:
            (item,) = claim.items
            await claim.record_verdict(item, ABUSIVE, T0)  # second verdict for the same version


async def test_decisions_are_idempotent_per_item_and_kind(store: Store) -> None:
    sid = await source_id(store)
    await store.record_batch(sid, [post(1, "nasty")], cursor=None, now=T0)
    async with store.claim_items(Stage.CLASSIFY, 10) as claim:
        await claim.record_verdict(claim.items[0], ABUSIVE, T0)
    proposals = [
        ProposedAction(kind=ActionKind.HIDE, automatic=True, reason="abusive"),
        ProposedAction(kind=ActionKind.REVIEW, automatic=False, reason="check"),
    ]
    async with store.claim_items(Stage.DECIDE, 10) as claim:
        item = claim.items[0]
        first = await claim.record_decision(
            item, severity=3, proposals=proposals, response_due=T0, now=T0
        )
        second = await claim.record_decision(
            item, severity=3, proposals=proposals, response_due=T0, now=T0
        )
    assert first == second
    summary = await store.summary()
    assert summary["actions"] == {"hide:approved": 1, "review:proposed": 1}


async def _flagged_item_with_actions(store: Store) -> int:
    sid = await source_id(store)
    await store.record_batch(sid, [post(1, "nasty")], cursor=None, now=T0)
    async with store.claim_items(Stage.CLASSIFY, 10) as claim:
        await claim.record_verdict(claim.items[0], ABUSIVE, T0)
    proposals = [
        ProposedAction(kind=ActionKind.HIDE, automatic=True, reason="abusive"),
        ProposedAction(kind=ActionKind.ESCALATE, automatic=True, reason="dsl"),
    ]
    async with store.claim_items(Stage.DECIDE, 10) as claim:
        await claim.record_decision(
            claim.items[0], severity=3, proposals=proposals, response_due=T0, now=T0
        )
    return sid


def fake_record(prev: str, n: int) -> EvidenceRecord:
    return EvidenceRecord(
        files=(), prev_hash=prev, entry_hash=f"{n:064x}", captured_at=T0, metadata={}
    )


async def test_hide_waits_for_evidence_and_leases_expire(store: Store) -> None:
    await _flagged_item_with_actions(store)
    lease = timedelta(minutes=5)
    due = await store.claim_due_actions(10, now=T0, lease=lease)
    assert [a.kind for a in due] == ["escalate"]  # hide is not due: no evidence yet
    assert await store.claim_due_actions(10, now=T0, lease=lease) == []  # leased
    async with store.claim_items(Stage.EVIDENCE, 10) as claim:

        async def capture(prev: str) -> EvidenceRecord:
            return fake_record(prev, 1)

        await claim.record_evidence(claim.items[0], capture, T0)
    hide = await store.claim_due_actions(10, now=T0, lease=lease)
    assert [a.kind for a in hide] == ["hide"]
    # the process running the escalation "died": after the lease it is claimable again
    resumed = await store.claim_due_actions(10, now=T0 + lease + timedelta(seconds=1), lease=lease)
    by_kind = {a.kind: a for a in resumed}
    assert set(by_kind) == {"escalate", "hide"} and by_kind["escalate"].attempts == 2
    done = await store.finish_action(
        by_kind["escalate"].id, ActionState.DONE, now=T0, reason="sent"
    )
    assert done.state == "done"
    with pytest.raises(InvalidTransition):
        await store.finish_action(done.id, ActionState.RUNNING, now=T0, reason="again")


async def test_evidence_chain_links_entries_in_order(store: Store) -> None:
    sid = await source_id(store)
    await store.record_batch(sid, [post(1, "a"), post(2, "b")], cursor=None, now=T0)
    async with store.claim_items(Stage.CLASSIFY, 10) as claim:
        for item in claim.items:
            await claim.record_verdict(item, ABUSIVE, T0)
    async with store.claim_items(Stage.DECIDE, 10) as claim:
        for item in claim.items:
            await claim.record_decision(item, severity=3, proposals=[], response_due=T0, now=T0)
    seen: list[str] = []
    async with store.claim_items(Stage.EVIDENCE, 10) as claim:
        for n, item in enumerate(claim.items, start=1):

            async def capture(prev: str, n: int = n) -> EvidenceRecord:
                seen.append(prev)
                return fake_record(prev, n)

            await claim.record_evidence(item, capture, T0)
            await claim.record_evidence(
                item, capture, T0
            )  # a second capture of a version is a no-op
    assert seen == ["0" * 64, f"{1:064x}"]


async def test_audit_log_is_append_only(store: Store) -> None:
    await store.audit(
        school_id=None,
        actor="test",
        event="hello",
        subject_type="none",
        subject_id=None,
        detail={},
        now=T0,
    )
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with store.transaction() as s:
                await s.execute(text(statement))


async def test_poll_failures_and_pauses_are_recorded(store: Store, clock: Clock) -> None:
    sid = await source_id(store)
    before = await store.record_poll_failure(
        sid, "AuthFailed: expired", now=T0, pause_reason="auth_failed"
    )
    assert before.failing_since is None
    state = await store.source_state(sid)
    assert state.pause_reason == "auth_failed" and state.consecutive_failures == 1
    await store.resume_source(sid, "cli", T0)
    assert (await store.source_state(sid)).pause_reason is None


@pytest.mark.postgres
async def test_postgres_claims_skip_locked_rows(postgres_url: str) -> None:
    from monitor.store.migrate import upgrade

    await upgrade(postgres_url)
    store = Store.open(postgres_url)
    try:
        sid = await source_id(store)
        await store.record_batch(sid, [post(n) for n in range(10)], cursor=None, now=T0)
        entered, release = asyncio.Event(), asyncio.Event()

        async def first() -> list[str]:
            async with store.claim_items(Stage.CLASSIFY, 4) as claim:
                entered.set()
                await release.wait()
                return [i.external_id for i in claim.items]

        task = asyncio.create_task(first())
        await entered.wait()
        async with store.claim_items(Stage.CLASSIFY, 10) as claim:
            other = [i.external_id for i in claim.items]
        release.set()
        mine = await task
        assert len(mine) == 4 and len(other) == 6 and not set(mine) & set(other)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_lets_one_process_poll_a_source_at_a_time(postgres_url: str) -> None:
    from monitor.store.migrate import upgrade

    await upgrade(postgres_url)
    first, second = Store.open(postgres_url), Store.open(postgres_url)  # two "processes"
    try:
        sid = await source_id(first)
        async with first.source_lock(sid) as held, second.source_lock(sid) as also:
            assert held and not also
        async with second.source_lock(sid) as now_free:
            assert now_free
    finally:
        await first.close()
        await second.close()


async def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    from monitor.store.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"
    await upgrade(url)
    writer, reader = Store.open(url), Store.open(url, busy_timeout=0.2)
    try:
        sid = await source_id(writer)
        async with writer.claim_items(Stage.CLASSIFY, 10):  # holds the write lock, like a batch
            state = await asyncio.wait_for(reader.source_state(sid), timeout=5)
            assert state.name == "fb"
            with pytest.raises(DBAPIError, match="locked"):  # a second writer does wait
                await reader.record_poll_failure(sid, "x", now=T0)
    finally:
        await writer.close()
        await reader.close()
