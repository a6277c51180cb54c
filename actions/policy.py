"""Policy: map a verdict, where it was seen and what the platform allows to proposed actions.

Pure functions only: no I/O, no clock (``now`` is a parameter), deterministic output order.

The rules, in the order they are applied (DOMAIN.md, "Acting" and "Escalating"):

- Suspected sexual imagery of a child: escalate to the DSL at once and do nothing else — no
  hide, no report pack, no review item that could lead someone to open the content.
- Safeguarding (the flag, or a tag that implies it): escalate to the DSL, automatically when the
  severity reaches ``escalate_min_severity``. Routes: LADO for an allegation against staff,
  police for a threat, Prevent for radicalisation, CEOP for grooming (``contact.sexual``).
- Fair criticism or complaint, with no abusive/defamatory/safeguarding flag: never hidden or
  reported, whatever a score says; a person reviews it (and answers it).
- Otherwise each flag asks for the post to come down. On the school's own account, when the
  platform can hide, that is a hide — automatic only where the settings say so (abusive or
  safeguarding at or above their severity, hateful abuse, spam). Anywhere else it is a report
  pack, automatic only for safeguarding. Defamation is always reported to POSH and hidden only
  after a moderator approves.
- A review item is added when a flag is in ``review_flags``, or any action waits for a person.

The policy never proposes ``delete`` (irreversible; a moderator chooses it in the app) or
``unhide``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from classifiers.base import Verdict
from classifiers.combine import MODEL_DETECTORS
from classifiers.taxonomy import Area, Cell, Flag, Severity, Tag, Type
from connectors.base import Capability, SourceKind, require_utc

__all__ = [
    "ActionKind",
    "PolicySettings",
    "ProposedAction",
    "Route",
    "decide",
    "escalation_routes",
    "response_due",
]

UK = ZoneInfo("Europe/London")
WORKING_DAY_START = time(9, 0)


class ActionKind(StrEnum):
    """What can be done about an item."""

    HIDE = "hide"
    UNHIDE = "unhide"
    DELETE = "delete"
    REPORT = "report"
    ESCALATE = "escalate"
    REVIEW = "review"
    REPLY = "reply"  # a public reply saying why a comment was removed; a moderator approves it


class Route(StrEnum):
    """Where a report or escalation is directed."""

    PLATFORM = "platform"
    POSH = "posh"  # Professionals Online Safety Helpline
    CEOP = "ceop"
    IWF_REPORT_REMOVE = "iwf_report_remove"
    LADO = "lado"
    PREVENT = "prevent"
    POLICE = "police"
    REPORT_HARMFUL_CONTENT = "report_harmful_content"


@dataclass(frozen=True, kw_only=True)
class ProposedAction:
    """One action the policy proposes; ``automatic`` actions start approved."""

    kind: ActionKind
    automatic: bool
    reason: str
    route: str | None = None  # a Route value, for report and escalate


@dataclass(frozen=True, kw_only=True)
class PolicySettings:
    """The ``[policy]`` section of config; every field has a default."""

    auto_hide_abusive_min_severity: Severity = Severity.HIGH
    auto_hide_safeguarding_min_severity: Severity = Severity.HIGH
    auto_hide_spam: bool = True
    escalate_min_severity: Severity = (
        Severity.LOW
    )  # safeguarding at or above this → escalate at once
    response_due_hours: int = 24
    review_flags: frozenset[Flag] = frozenset(Flag)  # flags that always get a review item


# Output order: the most urgent first.
_KIND_ORDER = (
    ActionKind.ESCALATE,
    ActionKind.HIDE,
    ActionKind.DELETE,
    ActionKind.REPORT,
    ActionKind.REVIEW,
    ActionKind.REPLY,
    ActionKind.UNHIDE,
)

# Tags that make a verdict a safeguarding matter even when the flag is missing.
_SAFEGUARDING_TAGS = frozenset(
    {
        Tag.CHILD_SEXUAL_IMAGERY,
        Tag.ALLEGATION_AGAINST_STAFF,
        Tag.CHILD_AT_RISK,
        Tag.SELF_HARM,
        Tag.RADICALISATION,
        Tag.THREAT,
    }
)

# Tag → escalation route, in priority order (the first that applies is the action's route).
_TAG_ROUTES: tuple[tuple[Tag, Route], ...] = (
    (Tag.CHILD_SEXUAL_IMAGERY, Route.IWF_REPORT_REMOVE),
    (Tag.CHILD_SEXUAL_IMAGERY, Route.CEOP),
    (Tag.ALLEGATION_AGAINST_STAFF, Route.LADO),
    (Tag.THREAT, Route.POLICE),
    (Tag.RADICALISATION, Route.PREVENT),
)
_GROOMING = Cell(Area.CONTACT, Type.SEXUAL)

_SERIOUS_FLAGS = frozenset({Flag.ABUSIVE, Flag.DEFAMATORY, Flag.SAFEGUARDING})


@dataclass(frozen=True, kw_only=True)
class _Context:
    verdict: Verdict
    settings: PolicySettings
    can_hide: bool  # own account and the platform can hide
    can_reply: bool = False  # own account and the platform can post a reply


def decide(
    verdict: Verdict,
    *,
    source_kind: SourceKind,
    capabilities: frozenset[Capability],
    settings: PolicySettings,
    now: datetime,
) -> tuple[ProposedAction, ...]:
    """Map one verdict to proposed actions: at most one per kind, most urgent first."""
    require_utc(now, "now")
    can_hide = source_kind is SourceKind.OWN and Capability.HIDE in capabilities
    can_reply = can_hide and Capability.REPLY in capabilities
    ctx = _Context(verdict=verdict, settings=settings, can_hide=can_hide, can_reply=can_reply)
    if Tag.CHILD_SEXUAL_IMAGERY in verdict.tags:
        return _merge(_escalation(ctx))
    proposals = [*_escalation(ctx)]
    if _is_fair_criticism(verdict):
        proposals.append(_review("fair criticism or complaint: answer it; never hide it"))
    else:
        proposals.extend(_takedowns(ctx))
    proposals.extend(_reviews(ctx, proposals))
    return _merge(proposals)


def escalation_routes(verdict: Verdict) -> tuple[str, ...]:
    """Every route that applies to a safeguarding verdict, most specific first."""
    routes = [route.value for tag, route in _TAG_ROUTES if tag in verdict.tags]
    if _GROOMING in verdict.cells and Route.CEOP.value not in routes:
        routes.append(Route.CEOP.value)
    return tuple(routes)


def response_due(now: datetime, settings: PolicySettings) -> datetime:
    """When a response is due: ``response_due_hours`` on, or 09:00 UK time the next working day
    if that lands on a weekend. Bank holidays are not known here."""
    due = (require_utc(now, "now") + timedelta(hours=settings.response_due_hours)).astimezone(UK)
    if due.weekday() < 5:
        return require_utc(due)
    monday = due.date() + timedelta(days=7 - due.weekday())
    return require_utc(datetime.combine(monday, WORKING_DAY_START, tzinfo=UK))


def _is_safeguarding(verdict: Verdict) -> bool:
    return Flag.SAFEGUARDING in verdict.flags or bool(verdict.tags & _SAFEGUARDING_TAGS)


def _model_only(verdict: Verdict, flag: Flag) -> bool:
    """Every reason for ``flag`` came from a trained model (no rule agreed)."""
    found = [r for r in verdict.reasons if r.flag is flag]
    return bool(found) and all(r.detector in MODEL_DETECTORS for r in found)


def _is_fair_criticism(verdict: Verdict) -> bool:
    return Tag.FAIR_CRITICISM in verdict.tags and not (
        verdict.flags & _SERIOUS_FLAGS or verdict.tags & _SAFEGUARDING_TAGS
    )


def _escalation(ctx: _Context) -> list[ProposedAction]:
    verdict = ctx.verdict
    if not _is_safeguarding(verdict):
        return []
    routes = escalation_routes(verdict)
    automatic = (
        Tag.CHILD_SEXUAL_IMAGERY in verdict.tags
        or verdict.severity >= ctx.settings.escalate_min_severity
    )
    reason = f"safeguarding concern ({verdict.severity.label}): tell the DSL at once"
    if Tag.CHILD_SEXUAL_IMAGERY in verdict.tags:
        reason = "suspected sexual imagery of a child: DSL only; do not open, view, copy or share"
    if routes:
        reason += "; routes: " + ", ".join(routes)
    return [
        ProposedAction(
            kind=ActionKind.ESCALATE,
            automatic=automatic,
            reason=reason,
            route=routes[0] if routes else None,
        )
    ]


def _takedowns(ctx: _Context) -> list[ProposedAction]:
    verdict, settings = ctx.verdict, ctx.settings
    wanted: list[tuple[str, bool]] = []  # (reason, hide automatically)
    if _is_safeguarding(verdict):
        wanted.append(
            ("safeguarding", verdict.severity >= settings.auto_hide_safeguarding_min_severity)
        )
    if Flag.ABUSIVE in verdict.flags:
        auto = verdict.severity >= settings.auto_hide_abusive_min_severity
        wanted.append(("abusive", auto or Tag.HATE in verdict.tags))
    if Flag.DEFAMATORY in verdict.flags:
        wanted.append(("defamatory: hide only after a moderator approves", False))
    if Flag.SPAM in verdict.flags:
        wanted.append(("spam", settings.auto_hide_spam and not _model_only(verdict, Flag.SPAM)))
    if Flag.PERSONAL_INFO in verdict.flags:
        wanted.append(("personal information", False))
    actions = [_takedown(ctx, reason, auto) for reason, auto in wanted]
    actions.extend(_extra_reports(verdict))
    if ctx.can_reply and wanted and not _is_safeguarding(verdict):
        # The policies ask the school to tell its audience why a comment went; never for a
        # safeguarding matter (a reply draws attention to it) and never without a person.
        actions.append(
            ProposedAction(
                kind=ActionKind.REPLY,
                automatic=False,
                reason="tell the audience why the comment was removed",
            )
        )
    return actions


def _takedown(ctx: _Context, reason: str, auto_hide: bool) -> ProposedAction:
    if ctx.can_hide:
        return ProposedAction(kind=ActionKind.HIDE, automatic=auto_hide, reason=reason)
    reason += "; not on a platform the school controls"
    if Tag.THREAT in ctx.verdict.tags:
        reason += "; threat: the DSL takes it to the police"
    return ProposedAction(
        kind=ActionKind.REPORT,
        automatic=_is_safeguarding(ctx.verdict),
        reason=reason,
        route=_report_route(ctx.verdict),
    )


def _extra_reports(verdict: Verdict) -> list[ProposedAction]:
    """Reports wanted whether or not the post can be hidden."""
    reports = []
    if Flag.DEFAMATORY in verdict.flags:
        reason = "defamatory: report with the Professionals Online Safety Helpline's help"
        reports.append(_report(reason, Route.POSH))
    if Tag.UNDER_13 in verdict.tags:
        reports.append(_report("account appears to belong to a child under 13", Route.PLATFORM))
    return reports


def _report(reason: str, route: Route) -> ProposedAction:
    return ProposedAction(kind=ActionKind.REPORT, automatic=False, reason=reason, route=route)


def _report_route(verdict: Verdict) -> str:
    if Flag.DEFAMATORY in verdict.flags and not _is_safeguarding(verdict):
        return Route.POSH.value
    return Route.PLATFORM.value


def _reviews(ctx: _Context, proposals: Iterable[ProposedAction]) -> list[ProposedAction]:
    listed = sorted(f.value for f in ctx.verdict.flags & ctx.settings.review_flags)
    if listed:
        return [_review("flagged " + ", ".join(listed))]
    if any(not p.automatic for p in proposals):
        return [_review("an action waits for a moderator")]
    return []


def _review(reason: str) -> ProposedAction:
    return ProposedAction(kind=ActionKind.REVIEW, automatic=False, reason=reason)


def _merge(proposals: Iterable[ProposedAction]) -> tuple[ProposedAction, ...]:
    """One action per kind: automatic if any rule says so, reasons joined, first route kept."""
    merged: dict[ActionKind, ProposedAction] = {}
    for action in proposals:
        seen = merged.get(action.kind)
        if seen is None:
            merged[action.kind] = action
            continue
        reason = seen.reason if action.reason in seen.reason else f"{seen.reason}; {action.reason}"
        merged[action.kind] = replace(
            seen,
            automatic=seen.automatic or action.automatic,
            reason=reason,
            route=seen.route or action.route,
        )
    return tuple(merged[kind] for kind in _KIND_ORDER if kind in merged)
