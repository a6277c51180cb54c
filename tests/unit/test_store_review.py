"""The review app's data layer on SQLite and PostgreSQL: queue, case page, decisions,
allow-list (through the real pipeline), audit log and the governors' report."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from actions.evidence import EvidenceWriter
from actions.policy import ActionKind, ProposedAction
from actions.states import ActionState, InvalidTransition
from classifiers import Classifier
from classifiers.base import Verdict
from classifiers.taxonomy import Cell, Flag, Severity
from connectors.base import Capability, Post, SourceKind
from monitor.app import build_classifier_for, policy_settings
from monitor.config import Settings
from monitor.pipeline import Pipeline
from monitor.store import Stage, Store, StoreError, review
from monitor.store import tables as t
from monitor.store.casefile import WITHHELD
from monitor.store.review import QueueFilter
from tests.conftest import Clock

INSULT = "You are a worthless fat pig and everyone hates you"  # abusive, medium
RESPACED = "you are a  WORTHLESS fat pig and  everyone hates   You"  # the same words
COW = "Ms Shah is a useless cow, sack her"  # abusive, medium
SELF_HARM = "I want to kill myself, nobody at this school cares"  # safeguarding, critical
THEFT = "Mr Hughes stole from the PTA fund"  # defamatory, high
SPAM = "Buy cheap followers at spam.example now!!! click here"  # spam, low
CLEAN = "Lovely assembly today, well done everyone"
TEXTS = (INSULT, RESPACED, COW, SELF_HARM, THEFT, SPAM, CLEAN)

_CLASSIFIER: list[Classifier] = []  # the real classifier, built once for the module


@dataclass
class Harness:
    """A school with one source, fed through the real pipeline (no executor)."""

    store: Store
    pipeline: Pipeline
    clock: Clock
    school_id: int
    source_id: int
    n: int = 0

    async def post(
        self,
        text: str,
        *,
        external_id: str | None = None,
        platform: str = "facebook",
        thread_id: str | None = None,
        parent_id: str | None = None,
        author: str = "parent.one",
    ) -> int:
        """Ingest one post (a new one, or an edit of ``external_id``); returns its item id."""
        self.n += 1
        post = Post(
            platform=platform,
            external_id=external_id or f"p{self.n}",
            text=text,
            created_at=self.clock(),
            source_kind=SourceKind.OWN,
            thread_id=thread_id,
            parent_id=parent_id,
            author_handle=author,
            author_name=author.title(),
            permalink=f"https://www.facebook.com/oakfield/posts/{self.n}",
            raw={"id": self.n, "message": text},
        )
        await self.store.record_batch(self.source_id, [post], cursor=None, now=self.clock())
        async with self.store.engine.connect() as conn:
            item_id = await conn.scalar(
                select(t.Item.id).where(t.Item.external_id == post.external_id)
            )
        assert item_id is not None
        return int(item_id)

    async def flagged(self, text: str, **kw: str) -> tuple[int, int]:
        """Post ``text``, drain the pipeline; returns (item id, case id)."""
        item_id = await self.post(text, **kw)
        await self.pipeline.drain()
        return item_id, await case_of(self.store, item_id)


async def case_of(store: Store, item_id: int) -> int:
    async with store.engine.connect() as conn:
        case_id = await conn.scalar(select(t.Case.id).where(t.Case.item_id == item_id))
    assert case_id is not None, f"item {item_id} has no case"
    return int(case_id)


async def audit(store: Store) -> list[t.AuditEntry]:
    async with store.transaction() as s:
        return list(await s.scalars(select(t.AuditEntry).order_by(t.AuditEntry.id)))


async def add_user(store: Store, username: str, now: datetime) -> int:
    async with store.transaction() as s:
        row = t.User(
            username=username,
            display_name=username.replace(".", " ").title(),
            email=f"{username}@oakfield.example.sch.uk",
            role="moderator",
            password_hash=None,
            created_at=now,
        )
        s.add(row)
        await s.flush()
        return row.id


@pytest.fixture
async def h(
    store: Store, make_settings: Callable[..., Settings], clock: Clock, tmp_path: Path
) -> Harness:
    settings = make_settings()
    if not _CLASSIFIER:
        _CLASSIFIER.append(build_classifier_for(settings))
    school_id = await store.ensure_school("oakfield", "Oakfield Primary School", clock())
    source = await store.ensure_source(school_id, "fb", "facebook", "own", clock())
    pipeline = Pipeline(
        store=store,
        classifier=_CLASSIFIER[0],
        policy=policy_settings(settings),
        evidence=EvidenceWriter(tmp_path / "evidence"),
        capabilities={source.id: frozenset(Capability)},
        school_name="Oakfield Primary School",
        school_id=school_id,
        clock=clock,
    )
    return Harness(store, pipeline, clock, school_id, source.id)


# -- the queue ------------------------------------------------------------------------------


async def test_queue_sorts_by_severity_then_due_and_hides_restricted_cases(h: Harness) -> None:
    _, insult = await h.flagged(INSULT)
    _, harm = await h.flagged(SELF_HARM)
    h.clock.advance(hours=1)
    _, cow = await h.flagged(COW)
    _, theft = await h.flagged(THEFT)
    _, spam = await h.flagged(SPAM)
    await h.post(CLEAN)
    await h.pipeline.drain()
    # the later case is due first: it leads among equals
    async with h.store.transaction() as s:
        await s.execute(
            update(t.Case)
            .where(t.Case.id == insult)
            .values(response_due_at=h.clock() + timedelta(days=3))
        )
    rows = await review.queue(h.store, h.school_id, QueueFilter())
    assert [r.case_id for r in rows] == [theft, cow, insult, spam]  # high, medium ×2, low
    assert all(not r.restricted for r in rows)
    first = rows[0]
    assert first.flags == ("defamatory",) and first.severity == Severity.HIGH
    assert first.excerpt == THEFT and first.platform == "facebook"
    assert first.author_handle == "parent.one" and first.status == "open"
    assert next(r for r in rows if r.case_id == insult).awaiting_decision >= 1
    with_dsl = await review.queue(h.store, h.school_id, QueueFilter(restricted=True))
    assert [r.case_id for r in with_dsl] == [harm, theft, cow, insult, spam]
    assert with_dsl[0].restricted and "self_harm" in with_dsl[0].tags
    only = await review.queue(h.store, h.school_id, QueueFilter(restricted_only=True))
    assert [r.case_id for r in only] == [harm]


async def test_queue_filters(h: Harness) -> None:
    _, insult = await h.flagged(INSULT)
    _, theft = await h.flagged(THEFT)
    _, spam = await h.flagged(SPAM)
    _, on_x = await h.flagged(COW, platform="x")
    user = await add_user(h.store, "ms.khan", h.clock())
    await review.assign(h.store, insult, user, actor="ms.khan", now=h.clock())
    await review.close_case(h.store, spam, "no_action", actor="ms.khan", now=h.clock())

    async def ids(**kw: object) -> list[int]:
        rows = await review.queue(h.store, h.school_id, QueueFilter(**kw), user_id=user)  # type: ignore[arg-type]
        return [r.case_id for r in rows]

    assert await ids(flag="abusive") == [insult, on_x]
    assert await ids(flag="spam") == []  # closed
    assert await ids(flag="spam", status="closed") == [spam]
    assert await ids(status="all") == [theft, insult, on_x, spam]
    assert await ids(cell="content.values") == [theft]
    assert await ids(severity=int(Severity.HIGH)) == [theft]
    assert await ids(platform="x") == [on_x]
    assert await ids(assignee="me") == [insult]
    assert await ids(assignee="unassigned") == [theft, on_x]
    assert await ids(flag="personal_info") == []
    rows = await review.queue(h.store, h.school_id, QueueFilter(assignee="me"))
    assert rows == []  # nobody is "me" without a user id
    assert (await review.queue(h.store, h.school_id, QueueFilter(), limit=1))[0].case_id == theft
    with pytest.raises(ValueError, match="status"):
        await review.queue(h.store, h.school_id, QueueFilter(status="pending"))
    with pytest.raises(ValueError, match="assignee"):
        await review.queue(h.store, h.school_id, QueueFilter(assignee="bob"))
    assert await review.queue(h.store, h.school_id + 99, QueueFilter()) == []


async def test_queue_excerpt_is_the_start_of_the_current_text(h: Harness) -> None:
    long = INSULT + ". " + "Honestly " * 40
    item_id, case_id = await h.flagged(long)
    (row,) = await review.queue(h.store, h.school_id, QueueFilter(restricted=True))
    assert row.excerpt == long[:160] and row.item_id == item_id and row.case_id == case_id


async def test_queue_counts_per_tab(h: Harness) -> None:
    _, insult = await h.flagged(INSULT)
    await h.flagged(SELF_HARM)
    await h.flagged(THEFT)
    _, spam = await h.flagged(SPAM)
    me = await add_user(h.store, "ms.khan", h.clock())
    other = await add_user(h.store, "mr.jones", h.clock())
    await review.assign(h.store, insult, me, actor="ms.khan", now=h.clock())
    await review.assign(h.store, spam, other, actor="mr.jones", now=h.clock())
    await review.close_case(h.store, spam, "actioned", actor="mr.jones", now=h.clock())
    moderator = await review.queue_counts(h.store, h.school_id, user_id=me, restricted=False)
    assert moderator == {"open": 2, "mine": 1, "unassigned": 1, "restricted": 0, "closed": 1}
    dsl = await review.queue_counts(h.store, h.school_id, user_id=other, restricted=True)
    assert dsl == {"open": 3, "mine": 0, "unassigned": 2, "restricted": 1, "closed": 1}


# -- the case page -------------------------------------------------------------------------


async def test_case_view_has_text_reasons_thread_actions_and_evidence(h: Harness) -> None:
    root = await h.post(CLEAN, external_id="root", thread_id="root", author="oakfield")
    h.clock.advance(minutes=5)
    reply = await h.post(
        "Thanks, looking forward to it", thread_id="root", parent_id="root", author="jo"
    )
    h.clock.advance(minutes=5)
    harm_item, harm = await h.flagged(SELF_HARM, thread_id="root", parent_id="root")
    h.clock.advance(minutes=5)
    elsewhere = await h.post("Another thread entirely", thread_id="other")
    item_id, case_id = await h.flagged(
        INSULT, external_id="bad", thread_id="root", parent_id="root", author="troll"
    )

    view = await review.case_view(h.store, case_id, h.school_id)
    assert view is not None
    assert (view.case_id, view.item_id, view.status, view.restricted) == (
        case_id,
        item_id,
        "open",
        False,
    )
    assert view.text == INSULT and view.version == 1 and view.verdict_version == 1
    assert [v.text for v in view.versions] == [INSULT]
    assert view.author_handle == "troll" and view.author_name == "Troll"
    assert view.permalink and view.permalink.startswith("https://www.facebook.com/")
    assert view.flags == ("abusive",) and view.severity == Severity.MEDIUM
    assert "conduct.aggressive" in view.cells
    rules = {r.rule for r in view.reasons}
    assert "bullying.insult" in rules
    for reason in view.reasons:
        assert reason.text == INSULT[reason.span[0] : reason.span[1]]
    # the thread: oldest first, without this post; the DSL-only post's text withheld
    assert [p.item_id for p in view.thread] == [root, reply, harm_item]
    assert view.thread[0].text == CLEAN and view.thread[0].author_handle == "oakfield"
    assert SELF_HARM not in {p.text for p in view.thread}
    assert elsewhere not in {p.item_id for p in view.thread}
    hide = next(a for a in view.actions if a.kind == "hide")
    assert hide.state == ActionState.PROPOSED
    assert (hide.id, None, "proposed", "policy") == view.transitions[0][:4]
    assert view.evidence and view.evidence[0].version == 1
    assert {f["kind"] for f in view.evidence[0].files} >= {"raw", "metadata"}
    assert view.escalations == [] and view.notes == []

    # the restricted case (a DSL reads it) shows the thread in full
    harm_view = await review.case_view(h.store, harm, h.school_id)
    assert harm_view is not None and harm_view.restricted
    assert INSULT in {p.text for p in harm_view.thread}

    assert await review.case_view(h.store, case_id, h.school_id + 1) is None
    assert await review.case_view(h.store, 9999, h.school_id) is None


async def test_an_edit_adds_a_version_and_the_view_shows_the_current_one(h: Harness) -> None:
    _, case_id = await h.flagged(INSULT, external_id="e1")
    h.clock.advance(minutes=10)
    await h.post(COW, external_id="e1")
    await h.pipeline.drain()
    view = await review.case_view(h.store, case_id, h.school_id)
    assert view is not None
    assert view.text == COW and view.version == 2 and view.verdict_version == 2
    assert [(v.version, v.text) for v in view.versions] == [(1, INSULT), (2, COW)]
    assert [e.version for e in view.evidence] == [1, 2]
    for reason in view.reasons:
        assert reason.text == COW[reason.span[0] : reason.span[1]]


# -- decisions -----------------------------------------------------------------------------


async def test_notes_assign_and_close(h: Harness) -> None:
    _, case_id = await h.flagged(INSULT)
    user = await add_user(h.store, "ms.khan", h.clock())
    await review.add_note(
        h.store, case_id, author="ms.khan", body="  Spoke to the parent.  ", now=h.clock()
    )
    with pytest.raises(ValueError, match="note"):
        await review.add_note(h.store, case_id, author="ms.khan", body="   ", now=h.clock())
    with pytest.raises(StoreError):
        await review.add_note(h.store, 9999, author="ms.khan", body="x", now=h.clock())
    await review.assign(h.store, case_id, user, actor="ms.khan", now=h.clock())
    with pytest.raises(StoreError, match="user"):
        await review.assign(h.store, case_id, 9999, actor="ms.khan", now=h.clock())
    with pytest.raises(ValueError, match="outcome"):
        await review.close_case(h.store, case_id, "lost", actor="ms.khan", now=h.clock())
    h.clock.advance(minutes=3)
    await review.close_case(h.store, case_id, "actioned", actor="ms.khan", now=h.clock())

    view = await review.case_view(h.store, case_id, h.school_id)
    assert view is not None
    assert view.notes == [("ms.khan", "Spoke to the parent.", h.clock() - timedelta(minutes=3))]
    assert (view.assignee_id, view.assignee) == (user, "Ms Khan")
    assert (view.status, view.outcome, view.closed_by) == ("closed", "actioned", "ms.khan")
    assert view.closed_at == h.clock()

    await review.assign(h.store, case_id, None, actor="ms.khan", now=h.clock())
    view = await review.case_view(h.store, case_id, h.school_id)
    assert view is not None and view.assignee is None
    events = [(e.event, e.subject_id) for e in await audit(h.store) if e.actor == "ms.khan"]
    assert events == [
        ("case_note_added", case_id),
        ("case_assigned", case_id),
        ("case_closed", case_id),
        ("case_assigned", case_id),
    ]
    closed = next(e for e in await audit(h.store) if e.event == "case_closed")
    assert json.loads(closed.detail)["outcome"] == "actioned"


async def test_false_positive_rejects_closes_and_allow_lists_the_text(h: Harness) -> None:
    item_id, case_id = await h.flagged(INSULT)
    (hide,) = [a for a in await h.store.case_actions(case_id) if a.kind == "hide"]
    await review.decide(
        h.store, hide.id, approve=True, actor="ms.khan", reason="nasty", now=h.clock()
    )
    assert not await review.is_allow_listed(h.store, h.school_id, INSULT)

    await review.mark_false_positive(h.store, case_id, actor="ms.khan", now=h.clock())

    actions = await h.store.case_actions(case_id)
    assert actions and all(a.state == ActionState.REJECTED for a in actions)
    view = await review.case_view(h.store, case_id, h.school_id)
    assert view is not None
    assert (view.status, view.outcome, view.closed_by) == ("closed", "false_positive", "ms.khan")
    assert await review.is_allow_listed(h.store, h.school_id, INSULT)
    assert await review.is_allow_listed(h.store, h.school_id, RESPACED)
    assert not await review.is_allow_listed(h.store, h.school_id, COW)
    other_school = await h.store.ensure_school("elmwood", "Elmwood", h.clock())
    assert not await review.is_allow_listed(h.store, other_school, INSULT)
    async with h.store.transaction() as s:
        entry = await s.scalar(select(t.AllowedText))
        assert entry is not None
        assert (entry.school_id, entry.case_id, entry.added_by) == (h.school_id, case_id, "ms.khan")
        assert entry.text_hash == review.allow_list_hash(INSULT)

    # the same words posted again, re-spaced and re-cased, come through clean
    again = await h.post(RESPACED)
    await h.pipeline.drain()
    item = await h.store.item(again)
    verdict = await h.store.verdict_of(item)
    assert item.state == "clean" and item.stage == Stage.DONE
    assert verdict["flags"] == [] and verdict["severity"] == 0
    assert [r["rule"] for r in verdict["reasons"]] == ["allow_list"]
    async with h.store.engine.connect() as conn:
        cases = await conn.scalar(select(t.Case.id).where(t.Case.item_id == again))
    assert cases is None
    # a text not on the list is still classified
    _, cow_case = await h.flagged(COW)
    assert cow_case != case_id

    events = [e.event for e in await audit(h.store) if e.actor == "ms.khan"]
    assert events[-3:] == ["action_rejected", "allow_list_added", "case_closed"]
    assert item_id != again


async def test_a_second_false_positive_for_the_same_words_adds_no_second_entry(
    h: Harness,
) -> None:
    _, first = await h.flagged(INSULT)
    _, second = await h.flagged(RESPACED)  # flagged before anyone marked the first
    await review.mark_false_positive(h.store, first, actor="ms.khan", now=h.clock())
    await review.mark_false_positive(h.store, second, actor="mr.jones", now=h.clock())
    async with h.store.transaction() as s:
        entries = list(await s.scalars(select(t.AllowedText)))
    assert [e.case_id for e in entries] == [first]
    second_events = [e.event for e in await audit(h.store) if e.actor == "mr.jones"]
    assert "allow_list_added" not in second_events and second_events[-1] == "case_closed"


async def test_change_action_rejects_one_and_approves_another(h: Harness) -> None:
    _, case_id = await h.flagged(INSULT)
    (hide,) = [a for a in await h.store.case_actions(case_id) if a.kind == "hide"]
    with pytest.raises(ValueError):
        await review.change_action(
            h.store, hide.id, "hide", actor="ms.khan", reason="x", now=h.clock()
        )
    with pytest.raises(ValueError):
        await review.change_action(
            h.store, hide.id, "explode", actor="ms.khan", reason="x", now=h.clock()
        )
    report = await review.change_action(
        h.store, hide.id, "report", actor="ms.khan", reason="report it", now=h.clock()
    )
    assert (report.kind, report.state) == ("report", ActionState.APPROVED)
    assert (await h.store.action(hide.id)).state == ActionState.REJECTED
    with pytest.raises(StoreError, match="rejected"):
        await review.change_action(
            h.store, hide.id, "delete", actor="ms.khan", reason="x", now=h.clock()
        )
    events = [(e.event, e.subject_id) for e in await audit(h.store) if e.actor == "ms.khan"]
    assert events == [
        ("action_rejected", hide.id),
        ("action_added", report.id),
        ("action_changed", hide.id),
    ]


async def test_decide_and_undo_a_done_hide(h: Harness) -> None:
    _, case_id = await h.flagged(INSULT)
    (hide,) = [a for a in await h.store.case_actions(case_id) if a.kind == "hide"]
    with pytest.raises(StoreError, match="only a done hide"):
        await review.undo_hide(h.store, hide.id, actor="ms.khan", reason="x", now=h.clock())
    approved = await review.decide(
        h.store, hide.id, approve=True, actor="ms.khan", reason="abusive", now=h.clock()
    )
    assert approved.state == ActionState.APPROVED
    with pytest.raises(InvalidTransition):
        await review.decide(
            h.store, hide.id, approve=True, actor="ms.khan", reason="again", now=h.clock()
        )
    (running,) = await h.store.claim_due_actions(10, now=h.clock(), lease=timedelta(minutes=5))
    await h.store.finish_action(running.id, ActionState.DONE, now=h.clock(), reason="hidden")
    unhide = await review.undo_hide(
        h.store, hide.id, actor="ms.khan", reason="it was fine", now=h.clock()
    )
    assert (unhide.kind, unhide.state, unhide.item_id) == ("unhide", "approved", hide.item_id)
    events = [e.event for e in await audit(h.store) if e.actor == "ms.khan"]
    assert events == ["action_approved", "action_added"]


async def test_escalate_to_dsl_adds_one_approved_escalation(h: Harness) -> None:
    _, case_id = await h.flagged(INSULT)
    assert not [a for a in await h.store.case_actions(case_id) if a.kind == "escalate"]
    action = await review.escalate_to_dsl(
        h.store, case_id, actor="ms.khan", reason="worried", now=h.clock()
    )
    assert (action.kind, action.state, action.case_id) == ("escalate", "approved", case_id)
    with pytest.raises(StoreError, match="escalate"):
        await review.escalate_to_dsl(h.store, case_id, actor="ms.khan", reason="x", now=h.clock())
    with pytest.raises(StoreError):
        await review.escalate_to_dsl(h.store, 9999, actor="ms.khan", reason="x", now=h.clock())


async def test_escalation_outcome_is_recorded_and_acknowledges(h: Harness) -> None:
    _, case_id = await h.flagged(SELF_HARM)
    escalation_id = await escalate(h.store, case_id, h.clock())
    with pytest.raises(ValueError, match="outcome"):
        await review.record_escalation_outcome(
            h.store, escalation_id, "shrug", None, actor="ms.shah", now=h.clock()
        )
    with pytest.raises(StoreError):
        await review.record_escalation_outcome(
            h.store, 9999, "nfa", None, actor="ms.shah", now=h.clock()
        )
    h.clock.advance(minutes=12)
    await review.record_escalation_outcome(
        h.store, escalation_id, "ceop", " Report ref 123 ", actor="ms.shah", now=h.clock()
    )
    view = await review.case_view(h.store, case_id, h.school_id)
    assert view is not None
    (row,) = view.escalations
    assert (row.state, row.acknowledged_by, row.acknowledged_at) == (
        "acknowledged",
        "ms.shah",
        h.clock(),
    )
    assert (row.outcome, row.outcome_note, row.outcome_by, row.outcome_at) == (
        "ceop",
        "Report ref 123",
        "ms.shah",
        h.clock(),
    )
    events = [e for e in await audit(h.store) if e.actor == "ms.shah"]
    assert [e.event for e in events] == ["escalation_acknowledged", "escalation_outcome"]
    assert "Report ref" not in events[-1].detail


async def escalate(store: Store, case_id: int, now: datetime) -> int:
    """Run the case's escalate action as far as a queued escalation row."""
    claimed = await store.claim_due_actions(10, now=now, lease=timedelta(minutes=5))
    (action,) = [a for a in claimed if a.case_id == case_id and a.kind == "escalate"]
    row = await store.ensure_escalation(
        action,
        recipients=["dsl@oakfield.example.sch.uk"],
        routes=[],
        message_id=f"<esc-{action.id}@vigil.invalid>",
        now=now,
    )
    return row.id


async def test_no_audit_entry_holds_post_text(h: Harness) -> None:
    _, insult = await h.flagged(INSULT)
    _, theft = await h.flagged(THEFT)
    await review.add_note(h.store, insult, author="a", body=f"quote: {INSULT}", now=h.clock())
    await review.escalate_to_dsl(h.store, theft, actor="a", reason="staff", now=h.clock())
    await review.mark_false_positive(h.store, insult, actor="a", now=h.clock())
    await review.close_case(h.store, theft, "referred", actor="a", now=h.clock())
    logged = json.dumps([(e.actor, e.event, e.detail) for e in await audit(h.store)])
    assert "allow_list_added" in logged
    assert [x for x in TEXTS if x in logged or x.lower() in logged] == []


# -- the audit log -------------------------------------------------------------------------


async def test_audit_rows_filter_and_csv_is_injection_safe(h: Harness) -> None:
    sid = h.school_id
    t0 = h.clock()
    hostile = '=HYPERLINK("https://evil.example","x")'
    for minutes, actor, event in [
        (0, "ms.khan", "case_assigned"),
        (10, hostile, "case_note_added"),
        (20, "ms.khan", "case_closed"),
        (30, "@sum", "case_closed"),
    ]:
        await h.store.audit(
            school_id=sid,
            actor=actor,
            event=event,
            subject_type="case",
            subject_id=minutes,
            detail={"why": "-1+2" if minutes == 30 else "ok"},
            now=t0 + timedelta(minutes=minutes),
        )
    other = await h.store.ensure_school("elmwood", "Elmwood", t0)
    await h.store.audit(
        school_id=other,
        actor="ms.khan",
        event="case_closed",
        subject_type="case",
        subject_id=1,
        detail={},
        now=t0,
    )

    everything = await review.audit_rows(h.store, sid)
    assert [r.subject_id for r in everything] == [30, 20, 10, 0]  # newest first, one school
    by_actor = await review.audit_rows(h.store, sid, actor="ms.khan")
    assert [r.subject_id for r in by_actor] == [20, 0]
    by_event = await review.audit_rows(h.store, sid, event="case_closed")
    assert [r.subject_id for r in by_event] == [30, 20]
    window = await review.audit_rows(
        h.store, sid, since=t0 + timedelta(minutes=10), until=t0 + timedelta(minutes=30)
    )
    assert [r.subject_id for r in window] == [20, 10]
    assert [r.subject_id for r in await review.audit_rows(h.store, sid, limit=1)] == [30]
    assert everything[0].detail == {"why": "-1+2"} and everything[0].at == t0 + timedelta(
        minutes=30
    )

    parsed = list(csv.reader(io.StringIO(review.audit_csv(everything))))
    assert parsed[0] == ["id", "at", "actor", "event", "subject_type", "subject_id", "detail"]
    assert [row[2] for row in parsed[1:]] == ["'@sum", "ms.khan", "'" + hostile, "ms.khan"]
    assert parsed[1][6] == '{"why": "-1+2"}'
    assert parsed[4][1] == "2026-11-02T09:00:00+00:00"  # UK time (GMT in November)
    for row in parsed:
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row)


# -- the governors' report -----------------------------------------------------------------

SUMMER = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)  # BST: UK days start at 23:00 UTC
ABUSIVE_MEDIUM = Verdict(
    flags=frozenset({Flag.ABUSIVE}),
    cells=frozenset({Cell.parse("conduct.aggressive")}),
    severity=Severity.MEDIUM,
)
DEFAMATORY_HIGH = Verdict(
    flags=frozenset({Flag.DEFAMATORY, Flag.ABUSIVE}),
    cells=frozenset({Cell.parse("content.values"), Cell.parse("conduct.aggressive")}),
    severity=Severity.HIGH,
)
SPAM_LOW = Verdict(
    flags=frozenset({Flag.SPAM}),
    cells=frozenset({Cell.parse("content.commercial")}),
    severity=Severity.LOW,
)


async def hand_built_case(
    store: Store,
    school_id: int,
    n: int,
    *,
    opened: datetime,
    verdict: Verdict,
    kind: ActionKind = ActionKind.ESCALATE,
    done_after: timedelta | None = None,
    ack_after: timedelta | None = None,
) -> int:
    """A case opened at ``opened`` with one automatic action, done and acknowledged when told."""
    source = await store.ensure_source(school_id, "fb", "facebook", "own", opened)
    post = Post(
        platform="facebook",
        external_id=f"g{n}",
        text=f"post {n}",
        created_at=opened,
        source_kind=SourceKind.OWN,
    )
    await store.record_batch(source.id, [post], cursor=None, now=opened)
    async with store.claim_items(Stage.CLASSIFY, 10, school_id=school_id) as claim:
        (item,) = claim.items
        await claim.record_verdict(item, verdict, opened)
    async with store.claim_items(Stage.DECIDE, 10, school_id=school_id) as claim:
        case_id = await claim.record_decision(
            claim.items[0],
            severity=int(verdict.severity),
            proposals=[ProposedAction(kind=kind, automatic=True, reason="test")],
            response_due=opened + timedelta(hours=24),
            now=opened,
        )
    if done_after is None:
        return case_id
    (action,) = await store.claim_due_actions(10, now=opened, lease=timedelta(days=1))
    await store.finish_action(
        action.id, ActionState.DONE, now=opened + done_after, reason="completed"
    )
    if ack_after is not None:
        escalation = await store.ensure_escalation(
            action, recipients=["dsl@x.example"], routes=[], message_id=f"<g{n}@x>", now=opened
        )
        await review.record_escalation_outcome(
            store, escalation.id, "nfa", None, actor="ms.shah", now=opened + ack_after
        )
    return case_id


async def test_governors_report_counts_and_medians(store: Store) -> None:
    school = await store.ensure_school("oakfield", "Oakfield Primary School", SUMMER)
    m = timedelta(minutes=1)
    await hand_built_case(
        store, school, 1, opened=SUMMER, verdict=ABUSIVE_MEDIUM, done_after=20 * m, ack_after=10 * m
    )
    await hand_built_case(
        store,
        school,
        2,
        opened=SUMMER + 60 * m,
        verdict=DEFAMATORY_HIGH,
        done_after=40 * m,
        ack_after=30 * m,
    )
    await hand_built_case(
        store,
        school,
        3,
        opened=SUMMER + 120 * m,
        verdict=DEFAMATORY_HIGH,
        done_after=60 * m,
        ack_after=80 * m,
    )
    # 00:30 on 1 July in the UK; a review done at once does not count as acting
    fp = await hand_built_case(
        store,
        school,
        4,
        opened=datetime(2026, 6, 30, 23, 30, tzinfo=UTC),
        verdict=SPAM_LOW,
        kind=ActionKind.REVIEW,
        done_after=m,
    )
    await review.close_case(store, fp, "false_positive", actor="ms.khan", now=SUMMER)
    # 00:30 on 2 July in the UK: outside the period
    await hand_built_case(
        store, school, 5, opened=datetime(2026, 7, 1, 23, 30, tzinfo=UTC), verdict=SPAM_LOW
    )

    report = await review.governors_report(store, school, date(2026, 7, 1), date(2026, 7, 1))
    assert report.cases == 4
    assert report.by_cell == {
        "conduct.aggressive": 3,
        "content.commercial": 1,
        "content.values": 2,
    }
    assert report.by_severity == {"low": 1, "medium": 1, "high": 2}
    assert report.median_act_minutes == 40.0  # 20, 40, 60 (the review is left out)
    assert report.median_ack_minutes == 30.0  # 10, 30, 80
    assert (report.false_positives, report.false_positive_rate) == (1, 0.25)

    june = await review.governors_report(store, school, date(2026, 6, 1), date(2026, 6, 30))
    assert (june.cases, june.median_ack_minutes, june.false_positive_rate) == (0, None, 0.0)
    with pytest.raises(ValueError):
        await review.governors_report(store, school, date(2026, 7, 2), date(2026, 7, 1))

    rows = list(csv.reader(io.StringIO(review.report_csv(report))))
    assert rows[0] == ["section", "name", "value"]
    assert ["period", "start", "2026-07-01"] in rows
    assert ["cases", "total", "4"] in rows
    assert ["cell", "content.values", "2"] in rows
    assert ["severity", "high", "2"] in rows
    assert ["timing", "median_minutes_to_act", "40.0"] in rows
    assert ["timing", "median_minutes_to_acknowledge", "30.0"] in rows
    assert ["false_positives", "rate", "0.2500"] in rows


async def test_a_safeguarding_post_edited_into_something_harmless_stays_restricted(
    h: Harness,
) -> None:
    """Its earlier text and evidence are still in the case: only a DSL may read them."""
    item_id, case_id = await h.flagged(SELF_HARM, external_id="sg1", thread_id="t9")
    h.clock.advance(minutes=10)
    await h.post("Lovely sports day, thank you all", external_id="sg1", thread_id="t9")
    await h.pipeline.drain()
    view = await review.case_view(h.store, case_id, h.school_id)
    assert view is not None and view.flags == () and view.restricted
    moderator = await review.queue(h.store, h.school_id, review.QueueFilter(status="all"))
    assert case_id not in [row.case_id for row in moderator]
    dsl = await review.queue(
        h.store, h.school_id, review.QueueFilter(status="all", restricted=True)
    )
    assert [row.restricted for row in dsl if row.case_id == case_id] == [True]
    counts = await review.queue_counts(h.store, h.school_id, user_id=None, restricted=False)
    assert counts["open"] + counts["closed"] == len(moderator)
    # and a neighbour in the thread sees its text withheld
    _, other_case = await h.flagged(INSULT, thread_id="t9")
    other = await review.case_view(h.store, other_case, h.school_id)
    assert other is not None and not other.restricted
    assert [p.text for p in other.thread if p.item_id == item_id] == [WITHHELD]
