"""The moderators' daily digest: every open case, its response-due time, and counts by flag.

The digest carries ids, platforms, flags, severities, due times and links to the cases —
never post text, author handles or media: it goes to a wider list than the DSL email and may
be read on a phone in a staff room. Its Message-ID is fixed per school and UK date, so a
restart on the same day reproduces the same message (and an outbox file is overwritten, not
doubled); the daemon also records each send (``record_digest_sent``) and asks ``due_digest``
before sending.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from actions.escalate import MAIL_POLICY
from classifiers.taxonomy import Severity
from connectors.base import require_utc
from monitor.config import SchoolSettings
from monitor.store.escalations import EscalationState, OpenCase

__all__ = ["build_digest", "case_url", "digest_message_id", "due_digest", "uk_date"]

UK = ZoneInfo("Europe/London")
_SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*")
_ESCALATION_NOTE: dict[str, str] = {
    EscalationState.QUEUED: "DSL email not sent yet",
    EscalationState.SENT: "DSL emailed, not acknowledged",
    EscalationState.ACKNOWLEDGED: "DSL acknowledged",
}
_NO_TEXT = (
    "This digest lists references only, never what was posted. "
    "Open a case in the Vigil review app to see it."
)


def uk_date(now: datetime) -> date:
    """The calendar date in the UK at ``now``."""
    return require_utc(now, "now").astimezone(UK).date()


def due_digest(now: datetime, digest_hour: int, last_sent_date: date | None) -> bool:
    """True once it is ``digest_hour`` or later (UK time) and today's digest has not gone."""
    local = require_utc(now, "now").astimezone(UK)
    if local.hour < digest_hour:
        return False
    return last_sent_date is None or last_sent_date < local.date()


def digest_message_id(school_slug: str, day: date, message_domain: str) -> str:
    """``<digest-<school>-<YYYYMMDD>@domain>``: the same all day, so never two a day."""
    if not _SLUG.fullmatch(school_slug):
        raise ValueError("the school slug must be lower-case letters, digits, '-', '_' or '.'")
    if not _DOMAIN.fullmatch(message_domain):
        raise ValueError("message_domain must be a plain domain name")
    return f"<digest-{school_slug}-{day:%Y%m%d}@{message_domain}>"


def case_url(base_url: str, case_id: int) -> str:
    """The review app's page for one case."""
    return f"{base_url.rstrip('/')}/cases/{case_id}"


def build_digest(
    open_cases: Sequence[OpenCase],
    now: datetime,
    school: SchoolSettings,
    *,
    sender: str,
    recipients: Sequence[str],
    message_domain: str,
    base_url: str,
) -> EmailMessage:
    """The digest email (plain text and escaped HTML) of ``open_cases`` at ``now``."""
    now = require_utc(now, "now")
    if not recipients:
        raise ValueError("the digest needs at least one recipient (email.moderators)")
    cases = sorted(open_cases, key=lambda c: (c.response_due_at, c.case_id))
    day = uk_date(now)
    message = EmailMessage(policy=MAIL_POLICY)
    message["Subject"] = _one_line(
        f"[Vigil] Daily digest for {school.name}: {_headline(cases, now)}"
    )
    message["From"] = _one_line(sender)
    message["To"] = ", ".join(_one_line(r) for r in recipients)
    message["Message-ID"] = digest_message_id(school.slug, day, message_domain)
    message["Date"] = format_datetime(now)
    message["Auto-Submitted"] = "auto-generated"
    plain = _plain(cases, now, school, base_url)
    rich = _html(cases, now, school, base_url)
    message.set_content(plain)
    message.add_alternative(rich, subtype="html")
    digest = hashlib.sha256((plain + rich).encode("utf-8", "surrogatepass")).hexdigest()
    message.set_boundary(f"=_vigil_{digest[:40]}")
    return message


# --- content -------------------------------------------------------------------------------


def _headline(cases: Sequence[OpenCase], now: datetime) -> str:
    overdue = sum(1 for c in cases if c.response_due_at <= now)
    return f"{len(cases)} open, {overdue} overdue"


def _flag_counts(cases: Sequence[OpenCase]) -> list[tuple[str, int]]:
    counts = Counter(flag for case in cases for flag in case.flags)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _facts(case: OpenCase, now: datetime) -> list[str]:
    """One case's line, as plain strings (escaped later for HTML)."""
    facts = [
        f"Case {case.case_id} (item {case.item_id})",
        f"{case.platform} ({'own account' if case.source_kind == 'own' else 'public mention'})",
        ", ".join(case.flags) or "no flags",
        _severity(case.severity),
        _due(case.response_due_at, now),
    ]
    if case.escalation_state:
        facts.append(_ESCALATION_NOTE.get(case.escalation_state, case.escalation_state))
    if case.awaiting_decision:
        facts.append(f"{case.awaiting_decision} action(s) awaiting a moderator")
    return [_one_line(f) for f in facts]


def _severity(value: int) -> str:
    try:
        return Severity(value).label
    except ValueError:
        return str(value)


def _due(due: datetime, now: datetime) -> str:
    local = due.astimezone(UK)
    when = f"{local:%a %d %b %H:%M} UK time"
    if due <= now:
        return f"overdue since {when} ({_span(now - due)})"
    return f"due {when} (in {_span(due - now)})"


def _span(delta: timedelta) -> str:
    hours, rest = divmod(int(delta.total_seconds()) // 60, 60)
    return f"{hours}h {rest:02d}m"


def _sections(cases: Sequence[OpenCase], now: datetime) -> list[tuple[str, list[OpenCase]]]:
    overdue = [c for c in cases if c.response_due_at <= now]
    due = [c for c in cases if c.response_due_at > now]
    return [(title, group) for title, group in (("Overdue", overdue), ("Due", due)) if group]


def _intro(cases: Sequence[OpenCase], now: datetime, school: SchoolSettings) -> list[str]:
    local = now.astimezone(UK)
    flags = ", ".join(f"{flag} {n}" for flag, n in _flag_counts(cases)) or "-"
    return [
        _one_line(f"Vigil daily digest for {school.name}, {local:%A %d %B %Y} (UK time)."),
        f"Open cases: {len(cases)} ({sum(1 for c in cases if c.response_due_at <= now)} overdue)",
        _one_line(f"By flag: {flags}"),
    ]


def _plain(cases: Sequence[OpenCase], now: datetime, school: SchoolSettings, base: str) -> str:
    lines = [*_intro(cases, now, school), ""]
    if not cases:
        lines.append("No open cases.")
    for title, group in _sections(cases, now):
        lines.append(f"{title}:")
        for case in group:
            lines.append("- " + " · ".join(_facts(case, now)))
            lines.append(f"  {_one_line(case_url(base, case.case_id))}")
        lines.append("")
    lines += ["", _NO_TEXT]
    return "\n".join(lines) + "\n"


def _html(cases: Sequence[OpenCase], now: datetime, school: SchoolSettings, base: str) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html><html><body>"]
    parts += [f"<p>{esc(line)}</p>" for line in _intro(cases, now, school)]
    if not cases:
        parts.append("<p>No open cases.</p>")
    for title, group in _sections(cases, now):
        parts.append(f"<h3>{esc(title)}</h3><ul>")
        for case in group:
            facts = " · ".join(esc(f) for f in _facts(case, now))
            parts.append(f"<li>{facts} — {_link(case_url(base, case.case_id))}</li>")
        parts.append("</ul>")
    parts += [f"<p>{esc(_NO_TEXT)}</p>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _link(url: str) -> str:
    quoted = html.escape(_one_line(url), quote=True)
    if re.match(r"https?://", url, flags=re.IGNORECASE):
        return f'<a href="{quoted}">open case</a>'
    return quoted


def _one_line(value: str) -> str:
    """Header- and line-safe: control characters (CR, LF, ...) become spaces."""
    cleaned = "".join(" " if ord(ch) < 32 or ord(ch) == 127 else ch for ch in value)
    return " ".join(cleaned.split())
