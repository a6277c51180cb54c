"""The act stage: run approved actions through the connector, the mailer or the review queue.

Each action row was written (unique per item and kind) before it runs; running it is
idempotent: an escalation email has a stable Message-ID and its own row that records it was
sent, and hide/unhide/delete are idempotent on the platforms. Failures retry with backoff
(``RetryPolicy``); when the attempts run out the action is ``gave_up`` and a human is alerted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from structlog.contextvars import bound_contextvars

from actions.escalate import EscalationSubject, Mailer, OutboxMailer, render_escalation
from actions.policy import ActionKind, escalation_routes
from actions.report import ReportPackSubject, write_report_pack
from actions.responses import ResponseContext, render_public_reply
from actions.states import ActionState
from classifiers.taxonomy import Severity, Tag
from connectors.base import Capability, Connector, ModerationTarget, NotSupported
from monitor.alerts import render_admin_alert
from monitor.config import Secret
from monitor.links import ack_url
from monitor.logging import get_logger
from monitor.pipeline import verdict_from_json
from monitor.retry import RetryPolicy
from monitor.store import ActionRecord, Store, WorkItem

__all__ = ["Executor", "ExecutorSettings"]

log = get_logger(__name__)
_MODERATION = {
    ActionKind.HIDE: Capability.HIDE,
    ActionKind.UNHIDE: Capability.UNHIDE,
    ActionKind.DELETE: Capability.DELETE,
    ActionKind.REPORT: Capability.REPORT,
    ActionKind.REPLY: Capability.REPLY,
}


REASON_QUOTE_LIMIT = 80
_DOING = {
    "hide": "hidden on the platform",
    "unhide": "shown again on the platform",
    "delete": "deleted from the platform",
    "report": "reported (or a report pack written for a person to file)",
    "review": "reviewed by a moderator",
}
# An escalation is never given up: a mail server that is down for a day delays it, never loses
# it. After this many failed tries the admin is told (and the alert kept locally if need be).
ESCALATION_RETRY = RetryPolicy(base=30.0, factor=2.0, cap=900.0, max_attempts=None)
ESCALATION_ALERT_AFTER = 3


def describe_reason(reason: Mapping[str, Any]) -> str:
    """One line of "why flagged": the detector, what it matched (briefly) and the category.

    The escalation renderer leaves reasons out entirely for suspected child imagery.
    """
    quoted = " ".join(str(reason.get("text") or "").split())
    if len(quoted) > REASON_QUOTE_LIMIT:
        quoted = quoted[: REASON_QUOTE_LIMIT - 1] + "…"
    what = f'"{quoted}" → ' if quoted else ""
    return (
        f"{reason.get('detector')}: {what}{reason.get('flag') or '-'} / {reason.get('cell') or '-'}"
    )


def describe_action(action: ActionRecord) -> str:
    """What Vigil has done, or will do, about a post: one line for the DSL email."""
    what = _DOING.get(action.kind, action.kind)
    if action.state == ActionState.DONE.value:
        return f"{action.kind}: done ({what})"
    if action.state in (
        ActionState.APPROVED.value,
        ActionState.RUNNING.value,
        ActionState.FAILED.value,
    ):
        when = " once the evidence is captured" if action.kind in ("hide", "delete") else ""
        return f"{action.kind}: to be {what}{when}"
    if action.state == ActionState.PROPOSED.value:
        return f"{action.kind}: waiting for a moderator to approve"
    return f"{action.kind}: {action.state}"


@dataclass(frozen=True, kw_only=True)
class ExecutorSettings:
    """What the executor needs from config."""

    school_name: str
    school_id: int
    dsl_recipients: tuple[str, ...]
    deputy_recipients: tuple[str, ...] = ()
    link_secret: Secret | None = None  # signs acknowledgement links; None: no links
    admin_recipients: tuple[str, ...]
    sender: str
    message_domain: str
    base_url: str
    reports_dir: Path
    outbox_dir: Path
    excerpt: str = "full"
    published_contacts: tuple[str, ...] = ()
    templates_dir: Path | None = None
    batch_size: int = 20
    action_timeout: float = 60.0


@dataclass(kw_only=True)
class Executor:
    """Claims due actions and runs each one, recording every outcome."""

    store: Store
    connectors: Mapping[int, Connector]  # by source id
    mailer: Mailer
    settings: ExecutorSettings
    retry: RetryPolicy
    clock: Callable[[], datetime]

    @property
    def fallback(self) -> OutboxMailer:
        """Where alerts go when the mail server refuses them: the local outbox."""
        return OutboxMailer(self.settings.outbox_dir)

    async def run_batch(self) -> int:
        """Run one batch of due actions; returns how many were attempted."""
        lease = timedelta(seconds=self.settings.action_timeout * 2 + 30)
        actions = await self.store.claim_due_actions(
            self.settings.batch_size,
            now=self.clock(),
            lease=lease,
            school_id=self.settings.school_id,
        )
        for action in actions:
            with bound_contextvars(action_id=action.id, item_id=action.item_id):
                await self._run(action)
        return len(actions)

    async def _run(self, action: ActionRecord) -> None:
        try:
            async with asyncio.timeout(self.settings.action_timeout):
                result = await self._execute(action)
        except Exception as err:  # any failure is retried, then handed to a human
            await self._failed(action, err)
        else:
            await self.store.finish_action(
                action.id, ActionState.DONE, now=self.clock(), reason="completed", result=result
            )
            log.info("action_done", kind=action.kind, attempts=action.attempts)

    async def _execute(self, action: ActionRecord) -> dict[str, Any]:
        kind = ActionKind(action.kind)
        if kind is ActionKind.REVIEW:
            return {"reviewed": True}
        item = await self.store.item(action.item_id)
        if kind is ActionKind.ESCALATE:
            return await self._escalate(action, item)
        try:
            return await self._moderate(kind, item)
        except NotSupported as err:  # a person has to do it: tell them exactly how
            return await self._report_pack(action, item, str(err))

    async def _reply_text(self, item: WorkItem) -> str:
        """The school's public reply explaining a removal: no names, no repeat of the post."""
        verdict = await self.store.verdict_of(item)
        context = ResponseContext(
            school=self.settings.school_name,
            platform=item.platform,
            posted_at=item.posted_at,
            today=self.clock().date(),
            contacts=self.settings.published_contacts,
            flags=tuple(verdict["flags"]),
        )
        return render_public_reply(context, templates_dir=self.settings.templates_dir)

    async def _report_pack(self, action: ActionRecord, item: WorkItem, why: str) -> dict[str, Any]:
        verdict = await self.store.verdict_of(item)
        subject = ReportPackSubject(
            key=f"case-{action.case_id}-{action.kind}",
            school=self.settings.school_name,
            platform=item.platform,
            external_id=item.external_id,
            permalink=item.permalink,
            author_handle=item.author_handle,
            posted_at=item.posted_at,
            flags=tuple(verdict["flags"]),
            cells=tuple(verdict["cells"]),
            severity=Severity(int(verdict["severity"])).label,
            routes=tuple(escalation_routes(verdict_from_json(verdict)))
            + ((action.route,) if action.route else ()),
            wanted=action.kind,
            why_not=why,
            tags=tuple(verdict["tags"]),
            child_imagery=Tag.CHILD_SEXUAL_IMAGERY.value in verdict["tags"],
        )
        path = await asyncio.to_thread(write_report_pack, self.settings.reports_dir, subject)
        log.info("report_pack_written", kind=action.kind, case_id=action.case_id)
        return {"supported": False, "detail": why, "report_pack": str(path)}

    async def _moderate(self, kind: ActionKind, item: WorkItem) -> dict[str, Any]:
        connector = self.connectors.get(item.source_id)
        if connector is None:
            raise RuntimeError(f"source {item.source_id} is not configured any more")
        capability = _MODERATION[kind]
        if capability not in connector.capabilities:
            raise NotSupported(f"{connector.name} cannot {capability.value}")
        target = ModerationTarget(
            platform=item.platform,
            external_id=item.external_id,
            parent_id=item.parent_id,
            thread_id=item.thread_id,
            account=item.account,
            text=await self._reply_text(item) if kind is ActionKind.REPLY else None,
        )
        result = await connector.moderate(capability, target)
        if not result.supported:
            raise NotSupported(result.detail or f"{connector.name} cannot {capability.value}")
        if not result.done:
            raise RuntimeError(result.detail or f"{capability.value} did not complete")
        return {"platform_call": capability.value, "detail": result.detail}

    async def _escalate(self, action: ActionRecord, item: WorkItem) -> dict[str, Any]:
        verdict = await self.store.verdict_of(item)
        key = f"esc-{action.id}"
        escalation = await self.store.ensure_escalation(
            action,
            recipients=self.settings.dsl_recipients,
            routes=escalation_routes(verdict_from_json(verdict)),
            message_id=f"<{key}@{self.settings.message_domain}>",
            now=self.clock(),
        )
        if escalation.state != "queued":
            return {"escalation_id": escalation.id, "already": escalation.state}
        message = await self.escalation_message(
            action, item, escalation_id=escalation.id, key=key, recipients=escalation.recipients
        )
        await self.mailer.send(message)
        await self.store.mark_escalation_sent(escalation.id, self.clock())
        log.info(
            "escalation_sent", escalation_id=escalation.id, recipients=len(escalation.recipients)
        )
        return {"escalation_id": escalation.id, "message_id": escalation.message_id}

    async def escalation_message(
        self,
        action: ActionRecord,
        item: WorkItem,
        *,
        escalation_id: int,
        key: str,
        recipients: Sequence[str],
        resent_note: str | None = None,
    ) -> EmailMessage:
        """The DSL email for an escalate action (also used to re-send it to the deputies)."""
        verdict = await self.store.verdict_of(item)
        routes = escalation_routes(verdict_from_json(verdict))
        siblings = await self.store.case_actions(action.case_id)
        now = self.clock()
        subject = replace(
            self._subject(key, action, item, verdict, routes, siblings),
            ack_url=ack_url(self.settings.base_url, self.settings.link_secret, escalation_id, now),
            resent_note=resent_note,
        )
        return render_escalation(
            subject,
            sender=self.settings.sender,
            recipients=recipients,
            message_domain=self.settings.message_domain,
            date=now,
        )

    def _subject(
        self,
        key: str,
        action: ActionRecord,
        item: WorkItem,
        verdict: Mapping[str, Any],
        routes: Sequence[str],
        siblings: Sequence[ActionRecord] = (),
    ) -> EscalationSubject:
        reasons = tuple(describe_reason(r) for r in verdict["reasons"])
        spans = tuple(
            (int(r["span"][0]), int(r["span"][1])) for r in verdict["reasons"] if r.get("span")
        )
        return EscalationSubject(
            escalation_key=key,
            school=self.settings.school_name,
            platform=item.platform,
            permalink=item.permalink,
            author_handle=item.author_handle,
            posted_at=item.posted_at,
            text=item.text,
            flags=tuple(verdict["flags"]),
            cells=tuple(verdict["cells"]),
            severity=Severity(int(verdict["severity"])).label,
            reasons=reasons,
            routes=tuple(routes) or ((action.route,) if action.route else ()),
            child_imagery=Tag.CHILD_SEXUAL_IMAGERY.value in verdict["tags"],
            case_url=f"{self.settings.base_url.rstrip('/')}/cases/{action.case_id}",
            actions_taken=tuple(describe_action(a) for a in siblings if a.id != action.id),
            excerpt=self.settings.excerpt,
            redact_spans=spans,
        )

    async def _failed(self, action: ActionRecord, error: Exception) -> None:
        escalation = action.kind == ActionKind.ESCALATE.value
        policy = ESCALATION_RETRY if escalation else self.retry
        delay = policy.next_delay(action.attempts, error)
        if escalation and action.attempts == ESCALATION_ALERT_AFTER:
            await self._alert_escalation_delayed(action, error)
        if delay is None:
            await self._give_up(action, f"{type(error).__name__}: {error}")
            return
        now = self.clock()
        await self.store.finish_action(
            action.id,
            ActionState.FAILED,
            now=now,
            reason="failed; will retry",
            error=f"{type(error).__name__}: {error}",
            next_attempt_at=now + timedelta(seconds=delay),
        )
        log.warning(
            "action_failed",
            kind=action.kind,
            attempts=action.attempts,
            retry_in=round(delay, 1),
            error=type(error).__name__,
            exc_info=not isinstance(error, OSError | TimeoutError),
        )

    async def _alert_escalation_delayed(self, action: ActionRecord, error: Exception) -> None:
        await self.alert_admin(
            key=f"escalation-delayed-{action.id}",
            subject=f"A safeguarding escalation has not been sent yet (case {action.case_id})",
            body=(
                f"Vigil has tried {action.attempts} times to send a safeguarding escalation for "
                f"case {action.case_id} and the mail server has not accepted it "
                f"({type(error).__name__}).\nVigil keeps trying, but the DSL may not know yet: "
                "please check the mail settings and tell the DSL directly.\n"
            ),
        )

    async def _give_up(self, action: ActionRecord, why: str) -> None:
        now = self.clock()
        await self.store.finish_action(
            action.id, ActionState.FAILED, now=now, reason=why, error=why
        )
        await self.store.finish_action(action.id, ActionState.GAVE_UP, now=now, reason=why)
        log.error("action_gave_up", kind=action.kind, attempts=action.attempts, reason=why)
        await self.alert_admin(
            key=f"gave-up-{action.id}",
            subject=f"An action could not be completed (case {action.case_id})",
            body=(
                f"Vigil gave up on a {action.kind} action for case {action.case_id} after "
                f"{action.attempts} attempt(s).\nReason: {why}\n\nPlease handle it by hand: "
                f"{self.settings.base_url.rstrip('/')}/cases/{action.case_id}\n"
            ),
        )

    async def alert_admin(self, *, key: str, subject: str, body: str) -> None:
        """Email the admin contacts; a failure here is logged, never raised."""
        recipients = self.settings.admin_recipients or self.settings.dsl_recipients
        message = render_admin_alert(
            key=key,
            subject=subject,
            body=body,
            sender=self.settings.sender,
            recipients=recipients,
            message_domain=self.settings.message_domain,
            now=self.clock(),
        )
        try:
            await self.mailer.send(message)
        except Exception as err:  # the mail server may be the problem: keep the alert locally
            log.error("admin_alert_failed", error=type(err).__name__, kept_in=str(self.fallback))
            try:
                await self.fallback.send(message)
            except Exception as again:
                log.error("admin_alert_lost", error=type(again).__name__)
