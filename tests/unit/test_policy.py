"""actions.policy: the decision table, routes and the response-due clock."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from actions.policy import (
    ActionKind,
    PolicySettings,
    ProposedAction,
    Route,
    decide,
    escalation_routes,
    response_due,
)
from classifiers.base import Signal, Verdict
from classifiers.taxonomy import Cell, Flag, Severity, Tag
from connectors.base import Capability, SourceKind

NOW = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)  # a Wednesday
# Every moderation call except REPLY: the tables below are about takedowns; replies have their own.
ALL_CAPS = frozenset(Capability) - {Capability.REPLY}
WITH_REPLY = frozenset(Capability)
ALL = ALL_CAPS
REPORT_ONLY = frozenset({Capability.REPORT})
NO_CAPS: frozenset[Capability] = frozenset()
NO = NO_CAPS
OWN, MENTION = SourceKind.OWN, SourceKind.MENTION

S = Severity
E, H, R, V = ActionKind.ESCALATE, ActionKind.HIDE, ActionKind.REPORT, ActionKind.REVIEW
AUTO, ASK = True, False


def verdict(
    *flags: Flag,
    sev: Severity = Severity.MEDIUM,
    tags: tuple[Tag, ...] = (),
    cells: tuple[str, ...] = (),
) -> Verdict:
    return Verdict(
        flags=frozenset(flags),
        severity=sev,
        tags=frozenset(tags),
        cells=frozenset(Cell.parse(c) for c in cells),
    )


v = verdict  # short alias for the tables
PS = PolicySettings


def run(
    v: Verdict,
    source: SourceKind = OWN,
    caps: frozenset[Capability] = ALL_CAPS,
    settings: PolicySettings | None = None,
) -> tuple[ProposedAction, ...]:
    return decide(
        v, source_kind=source, capabilities=caps, settings=settings or PolicySettings(), now=NOW
    )


def shape(actions: tuple[ProposedAction, ...]) -> list[tuple[ActionKind, bool]]:
    return [(a.kind, a.automatic) for a in actions]


CSI, FC, LADO = Tag.CHILD_SEXUAL_IMAGERY, Tag.FAIR_CRITICISM, Tag.ALLEGATION_AGAINST_STAFF
RAD, THR, U13 = Tag.RADICALISATION, Tag.THREAT, Tag.UNDER_13
SG, AB, DF, SP, PI = (
    Flag.SAFEGUARDING,
    Flag.ABUSIVE,
    Flag.DEFAMATORY,
    Flag.SPAM,
    Flag.PERSONAL_INFO,
)

TABLE = [
    # id, verdict, source, capabilities, expected [(kind, automatic)]
    ("clean", v(sev=S.NONE), OWN, ALL, []),
    ("sg-high-own", v(SG, sev=S.HIGH), OWN, ALL, [(E, AUTO), (H, AUTO), (V, ASK)]),
    ("sg-medium-own", v(SG), OWN, ALL, [(E, AUTO), (H, ASK), (V, ASK)]),
    ("sg-high-mention", v(SG, sev=S.HIGH), MENTION, ALL, [(E, AUTO), (R, AUTO), (V, ASK)]),
    ("sg-own-cannot-hide", v(SG, sev=S.HIGH), OWN, REPORT_ONLY, [(E, AUTO), (R, AUTO), (V, ASK)]),
    ("sg-low-own-no-caps", v(SG, sev=S.LOW), OWN, NO, [(E, AUTO), (R, AUTO), (V, ASK)]),
    ("sg-none-severity", v(SG, sev=S.NONE), OWN, ALL, [(E, ASK), (H, ASK), (V, ASK)]),
    ("abusive-high-own", v(AB, sev=S.HIGH), OWN, ALL, [(H, AUTO), (V, ASK)]),
    ("abusive-critical-own", v(AB, sev=S.CRITICAL), OWN, ALL, [(H, AUTO), (V, ASK)]),
    ("abusive-medium-own", v(AB), OWN, ALL, [(H, ASK), (V, ASK)]),
    ("abusive-hate-low-own", v(AB, sev=S.LOW, tags=(Tag.HATE,)), OWN, ALL, [(H, AUTO), (V, ASK)]),
    ("abusive-high-mention", v(AB, sev=S.HIGH), MENTION, ALL, [(R, ASK), (V, ASK)]),
    ("abusive-own-report-only", v(AB, sev=S.CRITICAL), OWN, REPORT_ONLY, [(R, ASK), (V, ASK)]),
    ("defamatory-own", v(DF, sev=S.HIGH), OWN, ALL, [(H, ASK), (R, ASK), (V, ASK)]),
    ("defamatory-mention", v(DF, sev=S.HIGH), MENTION, ALL, [(R, ASK), (V, ASK)]),
    ("spam-own", v(SP, sev=S.LOW), OWN, ALL, [(H, AUTO), (V, ASK)]),
    ("spam-mention", v(SP, sev=S.LOW), MENTION, NO, [(R, ASK), (V, ASK)]),
    ("personal-info-own", v(PI, sev=S.HIGH), OWN, ALL, [(H, ASK), (V, ASK)]),
    ("abusive-and-spam-own", v(AB, SP), OWN, ALL, [(H, AUTO), (V, ASK)]),
    ("fair-criticism", v(sev=S.NONE, tags=(FC,)), OWN, ALL, [(V, ASK)]),
    ("fair-criticism-spam-score", v(SP, sev=S.CRITICAL, tags=(FC,)), OWN, ALL, [(V, ASK)]),
    ("fair-criticism-personal-info", v(PI, tags=(FC,)), MENTION, NO, [(V, ASK)]),
    ("fair-criticism-but-abusive", v(AB, sev=S.HIGH, tags=(FC,)), OWN, ALL, [(H, AUTO), (V, ASK)]),
    ("child-imagery-own", v(SG, sev=S.CRITICAL, tags=(CSI,)), OWN, ALL, [(E, AUTO)]),
    ("child-imagery-tag-only", v(sev=S.NONE, tags=(CSI,)), MENTION, ALL, [(E, AUTO)]),
    ("child-imagery-and-abusive", v(AB, SP, sev=S.CRITICAL, tags=(CSI,)), OWN, ALL, [(E, AUTO)]),
    ("allegation-mention", v(SG, tags=(LADO,)), MENTION, NO, [(E, AUTO), (R, AUTO), (V, ASK)]),
    ("radicalisation-tag-only", v(tags=(RAD,)), OWN, ALL, [(E, AUTO), (H, ASK), (V, ASK)]),
    ("threat-mention", v(AB, tags=(THR,)), MENTION, NO, [(E, AUTO), (R, AUTO), (V, ASK)]),
    ("under-13-mention", v(sev=S.NONE, tags=(U13,)), MENTION, NO, [(R, ASK), (V, ASK)]),
    ("under-13-own", v(sev=S.NONE, tags=(U13,)), OWN, ALL, [(R, ASK), (V, ASK)]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("vd", "source", "caps", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in TABLE],
)
def test_decision_table(
    vd: Verdict,
    source: SourceKind,
    caps: frozenset[Capability],
    expected: list[tuple[ActionKind, bool]],
) -> None:
    assert shape(run(vd, source, caps)) == expected


SETTINGS_TABLE = [
    ("spam-not-auto", PS(auto_hide_spam=False), v(SP), [(H, ASK), (V, ASK)]),
    ("no-review-flags-auto", PS(review_flags=frozenset()), v(SP), [(H, AUTO)]),
    ("no-review-flags-waiting", PS(review_flags=frozenset()), v(AB), [(H, ASK), (V, ASK)]),
    ("abusive-threshold-medium", PS(auto_hide_abusive_min_severity=S.MEDIUM), v(AB),
     [(H, AUTO), (V, ASK)]),
    ("sg-threshold-medium", PS(auto_hide_safeguarding_min_severity=S.MEDIUM), v(SG),
     [(E, AUTO), (H, AUTO), (V, ASK)]),
    ("escalate-threshold-high", PS(escalate_min_severity=S.HIGH), v(SG),
     [(E, ASK), (H, ASK), (V, ASK)]),
    ("child-imagery-ignores-thresholds", PS(escalate_min_severity=S.CRITICAL), v(tags=(CSI,)),
     [(E, AUTO)]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "vd", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in SETTINGS_TABLE],
)
def test_settings_table(
    settings: PolicySettings, vd: Verdict, expected: list[tuple[ActionKind, bool]]
) -> None:
    assert shape(run(vd, OWN, ALL_CAPS, settings)) == expected


ROUTE_TABLE = [
    ("child-imagery", v(SG, tags=(CSI,)), MENTION, E, Route.IWF_REPORT_REMOVE),
    ("allegation", v(SG, tags=(LADO,)), OWN, E, Route.LADO),
    ("radicalisation", v(SG, tags=(RAD,)), OWN, E, Route.PREVENT),
    ("threat", v(SG, tags=(THR,)), OWN, E, Route.POLICE),
    ("grooming", v(SG, cells=("contact.sexual",)), OWN, E, Route.CEOP),
    ("plain-safeguarding", v(SG), OWN, E, None),
    ("defamatory-own", v(DF), OWN, R, Route.POSH),
    ("defamatory-mention", v(DF), MENTION, R, Route.POSH),
    ("abusive-mention", v(AB), MENTION, R, Route.PLATFORM),
    ("sg-mention", v(SG, DF), MENTION, R, Route.PLATFORM),
    ("under-13", v(tags=(U13,)), MENTION, R, Route.PLATFORM),
]  # fmt: skip


@pytest.mark.parametrize(
    ("vd", "source", "kind", "route"),
    [pytest.param(*row[1:], id=row[0]) for row in ROUTE_TABLE],
)
def test_routes(vd: Verdict, source: SourceKind, kind: ActionKind, route: Route | None) -> None:
    caps = NO_CAPS if source is MENTION else ALL_CAPS
    action = next(a for a in run(vd, source, caps) if a.kind is kind)
    assert action.route == route


def test_threat_names_the_police_in_report_and_escalation() -> None:
    actions = run(verdict(AB, sev=S.HIGH, tags=(Tag.THREAT,)), MENTION, NO_CAPS)
    assert all("police" in a.reason for a in actions if a.kind in {E, R})


def test_child_imagery_reason_warns_not_to_open() -> None:
    (action,) = run(verdict(tags=(Tag.CHILD_SEXUAL_IMAGERY,)))
    assert "do not open" in action.reason
    assert "iwf_report_remove" in action.reason and "ceop" in action.reason


def test_escalation_routes_lists_every_route_in_priority_order() -> None:
    tags = (Tag.RADICALISATION, Tag.THREAT, Tag.ALLEGATION_AGAINST_STAFF)
    v = verdict(SG, tags=tags, cells=("contact.sexual",))
    assert escalation_routes(v) == ("lado", "police", "prevent", "ceop")
    child = verdict(tags=(Tag.CHILD_SEXUAL_IMAGERY,), cells=("contact.sexual",))
    assert escalation_routes(child) == ("iwf_report_remove", "ceop")
    assert escalation_routes(verdict(SG)) == ()


SAMPLE_TAGS = [(), (Tag.FAIR_CRITICISM,), (Tag.HATE,), (Tag.THREAT,), (Tag.CHILD_SEXUAL_IMAGERY,)]
FLAG_SETS = [combo for n in range(len(Flag) + 1) for combo in itertools.combinations(list(Flag), n)]


@pytest.mark.parametrize("tags", SAMPLE_TAGS, ids=lambda t: "-".join(t) or "no-tags")
def test_invariants_over_all_combinations(tags: tuple[Tag, ...]) -> None:
    kind_order = [E, H, ActionKind.DELETE, R, V, ActionKind.REPLY, ActionKind.UNHIDE]
    for flags, severity, source, caps in itertools.product(
        FLAG_SETS, list(Severity), [OWN, MENTION], [ALL_CAPS, REPORT_ONLY, NO_CAPS]
    ):
        vd = verdict(*flags, sev=severity, tags=tags)
        actions = run(vd, source, caps)
        kinds = [a.kind for a in actions]
        assert len(kinds) == len(set(kinds))
        assert kinds == sorted(kinds, key=kind_order.index)
        assert ActionKind.DELETE not in kinds and ActionKind.UNHIDE not in kinds
        if H in kinds:
            assert source is OWN and Capability.HIDE in caps
        if Tag.CHILD_SEXUAL_IMAGERY in tags:
            assert shape(actions) == [(E, AUTO)]
        if Tag.FAIR_CRITICISM in tags and not set(flags) & {AB, DF, SG}:
            assert kinds == [V]
        if R in kinds and Flag.SAFEGUARDING not in flags and Tag.THREAT not in tags:
            assert not next(a for a in actions if a.kind is R).automatic
        assert actions == run(vd, source, caps)  # deterministic


def test_decide_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(
            verdict(AB),
            source_kind=OWN,
            capabilities=ALL_CAPS,
            settings=PolicySettings(),
            now=datetime(2025, 1, 1),
        )


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


DUE_TABLE = [
    ("weekday", utc(2025, 3, 12, 10, 0), 24, utc(2025, 3, 13, 10, 0)),
    ("friday-winter", utc(2025, 1, 10, 10, 0), 24, utc(2025, 1, 13, 9, 0)),
    ("friday-summer-bst", utc(2025, 7, 11, 10, 0), 24, utc(2025, 7, 14, 8, 0)),
    ("saturday", utc(2025, 1, 11, 12, 0), 24, utc(2025, 1, 13, 9, 0)),
    ("sunday-lands-monday", utc(2025, 1, 12, 12, 0), 24, utc(2025, 1, 13, 12, 0)),
    ("thursday-late-bst-lands-saturday-uk", utc(2025, 7, 10, 23, 30), 24, utc(2025, 7, 14, 8, 0)),
    ("sunday-late-bst-lands-tuesday-uk", utc(2025, 7, 13, 23, 30), 24, utc(2025, 7, 14, 23, 30)),
    ("48-hours", utc(2025, 3, 12, 10, 0), 48, utc(2025, 3, 14, 10, 0)),
    ("48-hours-into-weekend", utc(2025, 3, 13, 10, 0), 48, utc(2025, 3, 17, 9, 0)),
    ("clocks-go-forward", utc(2025, 3, 28, 12, 0), 24, utc(2025, 3, 31, 8, 0)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("now", "hours", "expected"), [pytest.param(*row[1:], id=row[0]) for row in DUE_TABLE]
)
def test_response_due(now: datetime, hours: int, expected: datetime) -> None:
    due = response_due(now, PolicySettings(response_due_hours=hours))
    assert due == expected
    assert due.utcoffset() == timedelta(0)


def test_response_due_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        response_due(datetime(2025, 1, 1), PolicySettings())


@pytest.mark.parametrize(
    ("flags", "severity", "tags", "expected"),
    [
        ((AB,), Severity.HIGH, (), True),  # an abusive comment is hidden: say why, once approved
        ((Flag.SPAM,), Severity.LOW, (), True),
        ((SG,), Severity.HIGH, (), False),  # never draw attention to a safeguarding matter
        ((AB,), Severity.HIGH, (Tag.THREAT,), False),  # a threat is a safeguarding matter
        ((), Severity.NONE, (Tag.FAIR_CRITICISM,), False),  # nothing hidden, nothing to explain
    ],
)
def test_a_public_reply_is_proposed_only_after_a_takedown_and_never_automatic(
    flags: tuple[Flag, ...], severity: Severity, tags: tuple[Tag, ...], expected: bool
) -> None:
    actions = run(verdict(*flags, sev=severity, tags=tags), OWN, WITH_REPLY)
    replies = [a for a in actions if a.kind is ActionKind.REPLY]
    assert bool(replies) is expected
    assert all(not a.automatic for a in replies)
    assert not [
        a
        for a in run(verdict(*flags, sev=severity, tags=tags), MENTION, WITH_REPLY)
        if a.kind is ActionKind.REPLY
    ]


def _spam_reason(detector: str) -> Signal:
    return Signal(
        detector=detector,
        flag=Flag.SPAM,
        cell=Cell.parse("content.commercial"),
        severity=Severity.LOW,
        span=(0, 4),
        text="spam",
        rule=f"{detector}.spam",
    )


@pytest.mark.parametrize(
    ("detectors", "expected"),
    [
        (("textcat",), [(H, ASK), (V, ASK)]),  # the model's guess alone: a moderator decides
        (("rules", "textcat"), [(H, AUTO), (V, ASK)]),
        (("rules",), [(H, AUTO), (V, ASK)]),
    ],
)
def test_spam_found_only_by_the_model_is_never_hidden_automatically(
    detectors: tuple[str, ...], expected: list[tuple[ActionKind, bool]]
) -> None:
    vd = replace(verdict(SP, sev=S.LOW), reasons=tuple(_spam_reason(d) for d in detectors))
    assert shape(run(vd, OWN, ALL)) == expected
