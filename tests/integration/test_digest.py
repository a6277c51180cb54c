"""The moderators' digest and the re-send to deputies: store queries and the email itself."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest
from sqlalchemy import update

from classifiers.base import Verdict
from classifiers.taxonomy import Flag, Severity
from monitor.config import SchoolSettings
from monitor.digest import build_digest, digest_message_id, due_digest, uk_date
from monitor.store import Store
from monitor.store import tables as t
from monitor.store.escalations import (
    OpenCase,
    acknowledge,
    due_for_resend,
    last_digest_date,
    mark_resent,
    open_cases_for_digest,
    record_digest_sent,
)
from tests.integration.test_web_ack import HOSTILE, T0, audit_events, make_escalation

SCHOOL = SchoolSettings(name="Oakfield Primary School", slug="oakfield")
SPAM = Verdict(flags=frozenset({Flag.SPAM}), severity=Severity.LOW)


def digest_of(cases: list[OpenCase], now: datetime = T0) -> EmailMessage:
    return build_digest(
        cases,
        now,
        SCHOOL,
        sender="vigil@oakfield.example.sch.uk",
        recipients=["comms@oakfield.example.sch.uk"],
        message_domain="vigil.invalid",
        base_url="https://vigil.example.sch.uk/",
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    """The decoded plain-text and HTML bodies."""
    parsed = message_from_bytes(message.as_bytes(), policy=default)
    assert isinstance(parsed, EmailMessage)
    plain, rich = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and rich is not None
    return plain.get_content(), rich.get_content()


async def test_open_cases_come_soonest_due_first_with_their_state(store: Store) -> None:
    late = await make_escalation(store, n=1, due=T0 - timedelta(hours=2))
    soon = await make_escalation(store, n=2, due=T0 + timedelta(hours=3), verdict=SPAM)
    later = await make_escalation(store, n=3, due=T0 + timedelta(hours=20), escalate=False)
    closed = await make_escalation(store, n=4, due=T0 - timedelta(hours=9))
    await make_escalation(store, n=5, school="elmwood")  # another school's case
    async with store.transaction() as s:
        await s.execute(update(t.Case).where(t.Case.id == closed.case_id).values(status="closed"))
    await acknowledge(store, late.escalation_id, "Priya Shah", T0)
    cases = await open_cases_for_digest(store, late.school_id)
    assert [c.case_id for c in cases] == [late.case_id, soon.case_id, later.case_id]
    first, second, third = cases
    assert first.flags == ("abusive", "safeguarding") and first.severity == Severity.HIGH
    assert (first.escalation_state, second.escalation_state) == ("acknowledged", "sent")
    assert third.escalation_state is None and third.awaiting_decision == 1
    assert second.flags == ("spam",) and first.response_due_at == T0 - timedelta(hours=2)
    assert first.platform == "facebook" and first.source_kind == "own"


async def test_the_digest_lists_overdue_first_and_never_post_text(store: Store) -> None:
    await make_escalation(store, n=1, due=T0 + timedelta(hours=3), text=HOSTILE)
    await make_escalation(store, n=2, due=T0 - timedelta(hours=2), text=HOSTILE)
    school_id = (await make_escalation(store, n=3, escalate=False, verdict=SPAM)).school_id
    cases = [c for c in await open_cases_for_digest(store, school_id) if c.flags != ("spam",)]
    message = digest_of(cases)
    plain, rich = parts(message)
    for body in (message.as_string(), plain, rich):
        assert "HOSTILE" not in body and "<script" not in body and "onerror" not in body
    assert (
        message["Subject"] == "[Vigil] Daily digest for Oakfield Primary School: 2 open, 1 overdue"
    )
    assert message["Message-ID"] == "<digest-oakfield-20261102@vigil.invalid>"
    assert "By flag: abusive 2, safeguarding 2" in plain
    assert plain.index("Overdue:") < plain.index("Case 2 ") < plain.index("Due:")
    assert plain.index("Due:") < plain.index("Case 1 ")
    assert "overdue since Mon 02 Nov 07:00 UK time (2h 00m)" in plain
    assert "https://vigil.example.sch.uk/cases/2" in plain
    assert rich.index("<h3>Overdue</h3>") < rich.index("Case 2 ") < rich.index("<h3>Due</h3>")
    assert 'href="https://vigil.example.sch.uk/cases/2"' in rich


def test_the_digest_is_deterministic_and_escapes_everything() -> None:
    hostile = OpenCase(
        case_id=7,
        item_id=9,
        platform="<b>x</b>\r\nBcc: victim@example.com",
        source_kind="mention",
        flags=("abusive",),
        severity=2,
        opened_at=T0,
        response_due_at=T0 + timedelta(hours=1),
        escalation_state=None,
        awaiting_decision=0,
    )
    first, second = digest_of([hostile]), digest_of([hostile])
    assert first.as_bytes() == second.as_bytes()
    plain, rich = parts(first)
    assert "<b>x</b>" not in rich and "&lt;b&gt;x&lt;/b&gt;" in rich
    assert "\nBcc:" not in plain and first["Bcc"] is None
    assert "<b>x</b> Bcc: victim@example.com" in plain  # plain text is plain: no markup runs


def test_a_quiet_day_still_gets_a_digest() -> None:
    message = digest_of([])
    plain, _ = parts(message)
    assert message["Subject"].endswith(": 0 open, 0 overdue")
    assert "Open cases: 0 (0 overdue)" in plain and "No open cases." in plain


def test_the_digest_date_is_the_uk_date() -> None:
    summer_night = datetime(2026, 7, 1, 23, 30, tzinfo=UTC)  # 00:30 BST on 2 July
    assert uk_date(summer_night) == date(2026, 7, 2)
    assert "digest-oakfield-20260702@" in digest_of([], summer_night)["Message-ID"]
    assert digest_message_id("oakfield", date(2026, 1, 5), "x.invalid") == (
        "<digest-oakfield-20260105@x.invalid>"
    )
    with pytest.raises(ValueError):
        digest_message_id("oak field>", date(2026, 1, 5), "x.invalid")
    with pytest.raises(ValueError, match="recipient"):
        build_digest(
            [], T0, SCHOOL, sender="v@x", recipients=[], message_domain="x", base_url="https://x"
        )


@pytest.mark.parametrize(
    ("now", "hour", "last", "due"),
    [
        (datetime(2026, 1, 15, 6, 59, tzinfo=UTC), 7, None, False),  # 06:59 GMT
        (datetime(2026, 1, 15, 7, 0, tzinfo=UTC), 7, None, True),
        (datetime(2026, 1, 15, 7, 0, tzinfo=UTC), 7, date(2026, 1, 14), True),
        (datetime(2026, 1, 15, 18, 0, tzinfo=UTC), 7, date(2026, 1, 15), False),  # sent today
        (datetime(2026, 7, 1, 6, 30, tzinfo=UTC), 7, None, True),  # 07:30 BST
        (datetime(2026, 7, 1, 5, 59, tzinfo=UTC), 7, None, False),  # 06:59 BST
        (datetime(2026, 7, 1, 23, 30, tzinfo=UTC), 7, date(2026, 7, 1), False),  # 00:30 BST, 2 Jul
        (datetime(2026, 7, 1, 23, 30, tzinfo=UTC), 0, date(2026, 7, 1), True),
    ],
)
def test_due_digest(now: datetime, hour: int, last: date | None, due: bool) -> None:
    assert due_digest(now, hour, last) is due


async def test_the_last_digest_date_is_remembered(store: Store) -> None:
    school = await store.ensure_school("oakfield", "Oakfield", T0)
    other = await store.ensure_school("elmwood", "Elmwood", T0)
    assert await last_digest_date(store, school) is None
    await record_digest_sent(store, school, date(2026, 11, 1), T0, open_cases=3)
    await record_digest_sent(store, school, date(2026, 11, 2), T0, open_cases=2)
    assert await last_digest_date(store, school) == date(2026, 11, 2)
    assert await last_digest_date(store, other) is None


async def test_unacknowledged_escalations_are_resent_once(store: Store) -> None:
    old = await make_escalation(store, n=1, now=T0)
    acked = await make_escalation(store, n=2, now=T0)
    recent = await make_escalation(store, n=3, now=T0 + timedelta(hours=3))
    queued = await make_escalation(store, n=4, now=T0, sent=False)
    await make_escalation(store, n=5, now=T0, school="elmwood")
    await acknowledge(store, acked.escalation_id, "Priya Shah", T0 + timedelta(hours=1))
    now = T0 + timedelta(hours=4, minutes=1)
    cutoff = now - timedelta(hours=4)  # email.resend_after_hours
    due = await due_for_resend(store, old.school_id, cutoff)
    assert [d.id for d in due] == [old.escalation_id]
    summary = due[0]
    assert summary.case_id == old.case_id and summary.item_id == old.item_id
    assert summary.recipients == ("dsl@oakfield.example.sch.uk",)
    assert summary.flags == ("abusive", "safeguarding") and summary.sent_at == T0
    assert await mark_resent(store, old.escalation_id, now) is True
    assert await mark_resent(store, old.escalation_id, now) is False
    assert await mark_resent(store, acked.escalation_id, now) is False
    assert await mark_resent(store, queued.escalation_id, now) is False
    later = await due_for_resend(store, old.school_id, T0 + timedelta(days=1))
    assert [s.id for s in later] == [recent.escalation_id]  # not queued, acked or resent ones
    (entry,) = await audit_events(store, "escalation_resent")
    assert entry.subject_id == old.escalation_id and entry.actor == "policy"
