"""Follow-ups that run on the clock: re-sending escalations nobody acknowledged to the deputy
DSLs, and the moderators' daily digest of open items and their response-due times.

Both are idempotent across restarts: a re-send is recorded per escalation (``resent_at``) and
has its own stable Message-ID; a digest is recorded per school and UK date, with a Message-ID
made of the two. Sending happens before recording, so a crash in between can repeat an email,
never lose one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.config import Settings
from monitor.digest import build_digest, due_digest, uk_date
from monitor.executor import Executor
from monitor.logging import get_logger
from monitor.store import Store
from monitor.store.escalations import (
    EscalationSummary,
    due_for_resend,
    last_digest_date,
    mark_resent,
    open_cases_for_digest,
    record_digest_sent,
)

__all__ = ["FollowUp"]

log = get_logger(__name__)
NO_DEPUTIES = (
    "Nobody has acknowledged a safeguarding escalation and no deputy DSL address is configured "
    "(email.deputy_dsl), so it was re-sent to the DSL list. Please make sure someone has seen it.\n"
)


@dataclass(kw_only=True)
class FollowUp:
    """The clock-driven emails of one school."""

    store: Store
    executor: Executor
    settings: Settings
    school_id: int

    async def run(self, now: datetime) -> None:
        """Everything that is due at ``now``; a failure is logged and retried next time."""
        try:
            async with self.store.follow_up_lock(self.school_id) as held:
                if not held:  # another process is doing it (several processes on PostgreSQL)
                    return
                await self.resend_unacknowledged(now)
                await self.send_digest_if_due(now)
        except Exception as err:  # the next run tries again; nothing is marked done unsent
            log.error("follow_up_failed", error=type(err).__name__)

    async def resend_unacknowledged(self, now: datetime) -> int:
        """Re-send, once, every escalation still unacknowledged after ``resend_after_hours``."""
        older_than = now - timedelta(hours=self.settings.email.resend_after_hours)
        sent = 0
        for escalation in await due_for_resend(self.store, self.school_id, older_than):
            await self._resend(escalation, now)
            sent += 1
        return sent

    async def _resend(self, escalation: EscalationSummary, now: datetime) -> None:
        deputies = self.executor.settings.deputy_recipients
        recipients = deputies or self.executor.settings.dsl_recipients
        sent_at = escalation.sent_at.strftime("%H:%M UTC on %d %B") if escalation.sent_at else "?"
        note = (
            f"This was sent to the DSL at {sent_at} and nobody has acknowledged it since. "
            "You are receiving it as a deputy DSL."
        )
        action = await self.store.action(escalation.action_id)
        item = await self.store.item(escalation.item_id)
        message = await self.executor.escalation_message(
            action,
            item,
            escalation_id=escalation.id,
            key=f"esc-{action.id}-resend",
            recipients=recipients,
            resent_note=note,
        )
        await self.executor.mailer.send(message)
        await mark_resent(self.store, escalation.id, now)
        log.warning("escalation_resent", escalation_id=escalation.id, to_deputies=bool(deputies))
        if not deputies:
            await self.executor.alert_admin(
                key=f"no-deputies-{escalation.id}",
                subject=f"Unacknowledged escalation, no deputy DSLs (case {escalation.case_id})",
                body=NO_DEPUTIES,
            )

    async def send_digest_if_due(self, now: datetime) -> bool:
        """The daily digest to the moderators, once per UK day after ``digest_hour``."""
        email = self.settings.email
        if not email.moderators:
            return False
        if not due_digest(
            now, email.digest_hour, await last_digest_date(self.store, self.school_id)
        ):
            return False
        cases = await open_cases_for_digest(self.store, self.school_id)
        message = build_digest(
            cases,
            now,
            self.settings.school,
            sender=email.sender,
            recipients=email.moderators,
            message_domain=email.message_domain,
            base_url=self.settings.web.base_url,
        )
        await self.executor.mailer.send(message)
        await record_digest_sent(
            self.store, self.school_id, uk_date(now), now, open_cases=len(cases)
        )
        log.info("digest_sent", open_cases=len(cases))
        return True
