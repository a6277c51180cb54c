"""Signals from all detectors → one Verdict.

flags and tags are unions, cells the union of every signal's cell, severity the maximum
(several high signals stay high; critical comes only from the signals themselves or the
rules below), scores per flag combine the signals as independent evidence
(``1 - Π(1 - p)``), a flagless signal with a score (a model's raw label score, e.g. rule
``detoxify.threat``) keeps it under its rule id, and reasons are the signals sorted by span.

Combination rules:

* a nude/sexual image mention plus a reference to a child (a "year 9 girl", "my daughter",
  a named pupil) → child sexual imagery: safeguarding, ``conduct.sexual``, critical;
* any other sexual finding (explicit content, image requests, paying for pictures) plus a
  clear reference to a minor ("year 8", "my daughter", "pupils", a named pupil, "i'm 12")
  → sexual content involving a child: safeguarding, ``contact.sexual``, critical;
* a threat plus a reference to a child → safeguarding, ``contact.aggressive``, high;
* in spam or a grooming approach, the phone number, email or handle is the sender's own
  contact (evidence), not someone's personal information: those signals are dropped;
* when the people detector read a post as criticism of a named person and nothing but a
  trained model says it is defamatory, the model must be confident
  (``CRITICISM_MODEL_BAR``): "Mr Hughes never replies about the trip money" is a complaint,
  however much its words look like the fraud allegations the model learnt from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from classifiers.base import Signal, Verdict
from classifiers.taxonomy import Cell, Flag, Severity, Tag

__all__ = ["CRITICISM_MODEL_BAR", "DEFAULT_SCORES", "MODEL_DETECTORS", "combine"]

# Detectors whose signals are a trained model's guess over the whole text, not a matched span.
MODEL_DETECTORS = frozenset({"textcat"})
# A model's defamation score needed to overrule the people detector's "criticism" reading.
CRITICISM_MODEL_BAR = 0.8

DEFAULT_SCORES = {
    Severity.NONE: 0.0,
    Severity.LOW: 0.35,
    Severity.MEDIUM: 0.6,
    Severity.HIGH: 0.8,
    Severity.CRITICAL: 0.97,
}
_IMAGE_RULES = frozenset({"sexual.nudes"})
_SEXUAL_RULES = ("sexual.", "exploitation.pay_for_images", "grooming.images")
_NOT_SEXUAL_CHILD = frozenset({"sexual.nudes", "sexual.adult_spam"})
_MINOR_RULES = ("child.minor", "personal_info.child_named", "personal_info.under_13")
_CHILD_RULE_PREFIXES = ("child.", "personal_info.child_named", "personal_info.under_13")
_SENDER_CONTACT_RULES = frozenset(
    {"personal_info.phone", "personal_info.email", "personal_info.handle"}
)
_GROOMING = Cell.parse("contact.sexual")


def combine(signals: Iterable[Signal]) -> Verdict:
    """Merge detector signals into a Verdict (deterministic for any input order)."""
    found = _without_doubtful_defamation(_without_sender_contacts(sorted(signals, key=_order)))
    found = _dedupe(found + _derived(found))
    reasons = tuple(s for s in found if s.flag is not None or s.tags)
    flagged = [s for s in found if s.flag is not None]
    severity = max((s.severity for s in flagged), default=Severity.NONE)
    return Verdict(
        flags=frozenset(s.flag for s in flagged if s.flag is not None),
        cells=frozenset(s.cell for s in found if s.cell is not None),
        severity=severity,
        scores=_scores(flagged) | _label_scores(found),
        reasons=reasons,
        tags=frozenset(t for s in reasons for t in s.tags),
    )


def _order(signal: Signal) -> tuple[int, int, str, str, int]:
    return (signal.span[0], signal.span[1], signal.detector, signal.rule, -signal.severity)


def _without_sender_contacts(signals: list[Signal]) -> list[Signal]:
    if not any(_is_solicitation(s) for s in signals):
        return signals
    return [s for s in signals if s.rule not in _SENDER_CONTACT_RULES]


def _without_doubtful_defamation(signals: list[Signal]) -> list[Signal]:
    if not any(Tag.FAIR_CRITICISM in s.tags for s in signals):
        return signals
    if any(s.flag is Flag.DEFAMATORY and s.detector not in MODEL_DETECTORS for s in signals):
        return signals
    return [s for s in signals if not _weak_model_defamation(s)]


def _weak_model_defamation(signal: Signal) -> bool:
    return (
        signal.flag is Flag.DEFAMATORY
        and signal.detector in MODEL_DETECTORS
        and (signal.score or 0.0) < CRITICISM_MODEL_BAR
    )


def _is_solicitation(signal: Signal) -> bool:
    grooming = signal.flag is Flag.SAFEGUARDING and signal.cell == _GROOMING
    return signal.flag is Flag.SPAM or grooming


def _derived(signals: Sequence[Signal]) -> list[Signal]:
    children = [s for s in signals if s.rule.startswith(_CHILD_RULE_PREFIXES)]
    if not children:
        return []
    out = [_imagery(s) for s in signals if s.rule in _IMAGE_RULES]
    out += [_threat_to_child(s) for s in signals if _is_threat(s)]
    if any(s.rule.startswith(_MINOR_RULES) for s in children):
        out += [_sexual_child(s) for s in signals if _is_sexual(s)]
    return out


def _is_sexual(signal: Signal) -> bool:
    return (
        signal.flag is not None
        and signal.rule.startswith(_SEXUAL_RULES)
        and signal.rule not in _NOT_SEXUAL_CHILD
    )


def _sexual_child(source: Signal) -> Signal:
    return _derive(
        source,
        cell="contact.sexual",
        severity=Severity.CRITICAL,
        tags={Tag.CHILD_AT_RISK},
        rule="combine.sexual_child",
    )


def _is_threat(signal: Signal) -> bool:
    return Tag.THREAT in signal.tags and signal.flag is Flag.ABUSIVE


def _imagery(source: Signal) -> Signal:
    return _derive(
        source,
        cell="conduct.sexual",
        severity=Severity.CRITICAL,
        tags={Tag.CHILD_SEXUAL_IMAGERY, Tag.CHILD_AT_RISK},
        rule="combine.child_sexual_imagery",
    )


def _threat_to_child(source: Signal) -> Signal:
    return _derive(
        source,
        cell="contact.aggressive",
        severity=max(source.severity, Severity.HIGH),
        tags={Tag.THREAT, Tag.CHILD_AT_RISK},
        rule="combine.threat_to_child",
    )


def _derive(source: Signal, *, cell: str, severity: Severity, tags: set[Tag], rule: str) -> Signal:
    return Signal(
        detector="combine",
        flag=Flag.SAFEGUARDING,
        cell=Cell.parse(cell),
        severity=severity,
        span=source.span,
        text=source.text,
        tags=frozenset(tags),
        rule=rule,
    )


def _dedupe(signals: Sequence[Signal]) -> list[Signal]:
    """Drop a signal whose span lies inside another of the same flag, cell and ≥ severity."""
    kept = [
        s
        for i, s in enumerate(signals)
        if not any(_covers(o, s, i < j) for j, o in enumerate(signals) if j != i)
    ]
    return sorted(kept, key=_order)


def _covers(outer: Signal, inner: Signal, inner_first: bool) -> bool:
    if outer.flag != inner.flag or outer.cell != inner.cell or outer.flag is None:
        return False
    if outer.detector != inner.detector:
        return False  # a whole-text model signal must not hide a rule's exact span
    if not (outer.span[0] <= inner.span[0] and inner.span[1] <= outer.span[1]):
        return False
    if outer.severity < inner.severity or not inner.tags <= outer.tags:
        return False
    if outer.span == inner.span and outer.severity == inner.severity and outer.tags == inner.tags:
        return not inner_first  # identical findings: keep the first one only
    return True


def _scores(signals: Sequence[Signal]) -> dict[str, float]:
    misses: dict[str, float] = {}
    for signal in signals:
        if signal.flag is None:
            continue
        p = signal.score if signal.score is not None else DEFAULT_SCORES[signal.severity]
        misses[signal.flag.value] = misses.get(signal.flag.value, 1.0) * (1.0 - p)
    return {flag: round(1.0 - miss, 6) for flag, miss in sorted(misses.items())}


def _label_scores(signals: Sequence[Signal]) -> dict[str, float]:
    """Flagless signals carrying a score: a model's per-label output, under the rule id."""
    out: dict[str, float] = {}
    for signal in signals:
        if signal.flag is None and signal.score is not None and signal.rule:
            out[signal.rule] = max(out.get(signal.rule, 0.0), round(signal.score, 6))
    return dict(sorted(out.items()))
