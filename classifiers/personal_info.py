"""Personal information: phone numbers, emails, postcodes, street addresses, offered social
handles, and a pupil named in full with their year group or class, or named with a location
or routine.

Works on the original text with regular expressions, so spans are exact. The school's
published contacts (``Roster.published_contacts``: phone numbers, emails, its address or
postcode, its handles) are not personal information. A named child together with a
location or routine ("Lily in Year 3 walks home alone at 3.15") is also a safeguarding signal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from classifiers.base import Input, Roster, Signal
from classifiers.taxonomy import Cell, Flag, Severity, Tag

__all__ = ["PersonalInfoDetector"]

_CELL = Cell.parse("content.commercial")
_CHILD_RISK_CELL = Cell.parse("contact.aggressive")
_SEP = r"[\s.-]?"
_MOBILE = re.compile(
    rf"(?<![\d+])(?:(?:\+|00)44\s?(?:\(0\)\s?)?7\d{{3}}|\(?07\d{{3}}\)?){_SEP}\d{{3}}{_SEP}\d{{3}}(?!\d)"
)
_LANDLINE = re.compile(
    rf"(?<![\d+])(?:(?:\+|00)44\s?(?:\(0\)\s?)?|\(?0)[123]\d{{1,3}}\)?{_SEP}\d{{3,4}}{_SEP}\d{{3,4}}(?!\d)"
)
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_POSTCODE = re.compile(r"\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[A-Z]{2}\b")
_SUFFIX = (
    r"(?:Road|Rd|Street|St|Lane|Ln|Avenue|Ave|Close|Drive|Dr|Way|Crescent|Cres|Court|Ct|Gardens|"
    r"Gdns|Place|Pl|Grove|Terrace|Hill|Park|Row|View|Walk|Mews|Square|Sq|Rise|Green|Parade|Vale|"
    r"Croft|Meadows?|Fields|Gate|Estate|Flats)"
)
# Not a scoreline: "6-0 Ashby Vale" is a result against Ashby Vale, not house 0.
_STREET = re.compile(
    rf"(?<!\d[-–])(?<!\d [-–] )\b\d{{1,4}}[A-Za-z]?,?\s+(?:[A-Z][a-z]+\s+){{1,3}}{_SUFFIX}\b"
)
_STREET_LOWER = re.compile(
    rf"(?i)\b(?:lives?|living|address|house|home)\b[^.!?\n]{{0,20}}?\b(\d{{1,4}}[a-z]?,?\s+(?:[a-z]+\s+){{1,3}}{_SUFFIX})\b"
)
_PLATFORM = r"(?:snap(?:chat)?|sc|insta(?:gram)?|ig|tik\s?tok|tt|discord|kik|telegram|whatsapp)"
_HANDLE_MINE = re.compile(
    rf"(?i)\bmy\s+(?:{_PLATFORM}|user\s?name|handle|account)\s*(?:name\s*)?(?:is|:|=|-)?\s*(?P<h>@?[A-Za-z0-9._]{{3,30}})"
)
_HANDLE_ADD = re.compile(
    r"(?i)\b(?:add|follow|dm|message|msg|hmu|hit me up)\s+(?:me\s+)?(?:on|at)\s+"
    rf"{_PLATFORM}\s*[:\-]?\s*"
    rf"(?:(?:it'?s|its|is)\s+)?(?P<h>@?[A-Za-z0-9._]{{3,30}})"
)
_AT_HANDLE = re.compile(r"(?<![\w@.])@(?P<h>[A-Za-z0-9_.]{2,30})")
_OFFER = re.compile(rf"(?i)\b(?:add me|follow me|dm me|message me|hmu|{_PLATFORM})\b")
_YEAR = (
    r"(?:(?:[Yy]ear|[Yy]r|Y)\s?(?:1[0-3]|[1-9])\b|[Rr]eception|[Nn]ursery"
    r"|[Cc]lass\s+[A-Z0-9]\w*|\b[1-6][A-Z]\b)"
)
_NAME = r"(?P<name>[A-Z][a-z]{1,15}(?:\s[A-Z][a-z]{1,20})?)(?![A-Za-z])"
_CHILD_NAMED = (
    re.compile(rf"{_NAME}(?:,\s?|\s(?:who\s)?(?:is\s)?(?:in|from|of)\s|\s\(|\s){_YEAR}\)?"),
    # "Year 6 girl Ava", "Year 6's Jack": without the noun or the possessive, "Year 10 Business
    # Studies" would be a pupil.
    re.compile(rf"{_YEAR}(?:'s\s|\s(?:pupil|girl|boy|student|child|kid)\s){_NAME}"),
)
_ROUTINE = re.compile(
    r"(?i)\b(?:walks?|walking|cycles?|cycling|goes|gets|takes)\s(?:herself\s|himself\s)?"
    r"(?:home|to school|back)\b"
    r"|\b(?:alone|on (?:her|his) own|by (?:her|him)self|unaccompanied)\b"
    r"|\bat \d{1,2}[.:]\d{2}\b|\b\d{1,2}(?:[.:]\d{2})?\s?(?:am|pm)\b"
    r"|\bevery (?:day|morning|afternoon|evening"
    r"|(?:mon|tues|wednes|thurs|fri|satur|sun)day)\b"
    r"|\blives (?:on|at|in|near|next to|opposite|round)\b|\bbus stop\b|\bschool gates?\b"
    r"|\bafter[ -]?school club\b|\bat the park\b|\bon (?:mon|tues|wednes|thurs|fri|satur|sun)days\b"
)
_PRAISE = re.compile(
    r"(?i)\b(?:congratulations|congrats|well done|proud|award|awarded|winner|won|wins?|"
    r"shortlisted|selected|star of the week|certificate|achievement|achieved|brilliant|"
    r"fantastic|amazing|outstanding|excellent|celebrat\w*|medal|trophy|champion\w*|"
    r"goals?|scored|saved|hat-?trick|semi-?final|final|victory|player of the match|"
    r"smashed it|what a game|nerves of steel|superstar|legend)\b"
)
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)|\n")
_STREET_NAMED = re.compile(
    rf"\b(?:lives?|living|staying)\b[^.!?\n]{{0,30}}?\b(?:on|in|at|off)\s+((?:[A-Z][a-z]+\s+){{1,3}}{_SUFFIX})\b"
)
_OWN_PLACE = re.compile(
    r"(?i)\b(?:my|our) (?:house|home|flat|address) is\b[^.!?\n]{0,40}"
    r"|\bi live (?:on|at|in|near|next to|opposite|by|above|round)\b[^.!?\n]{0,30}"
)
_SELF_AGE = re.compile(
    r"(?i)\b(?:i'?m|i am|im)\s"
    r"(?:(?P<age>[5-9]|1[0-2])(?:\s?(?:yrs?|years?)(?: old)?)?"
    r"(?![\d.:%]|\s?(?:am|pm|mins?|minutes|hours|km|miles|quid|p)\b)"
    r"|in (?:year|yr|y)\s?(?P<year>[1-7])\b)"
)
# Capitalised words that start sentences or name things, never a pupil's first name.
_COMMON_WORDS = """
    year yr class reception nursery the my our his her their mr mrs ms miss dr sir mx and but
    so if when what who where why how is in on at from of a an this that these those every all
    whichever whoever which any some no another one each both either neither your lovely
    monday tuesday wednesday thursday friday saturday sunday mon tue tues wed weds thu thur
    thurs fri sat sun january february march april may june
    july august september october november december today tomorrow yesterday please thanks hi
    hello dear congratulations well done pupil girl boy student child kid school team key stage
    sats week term half spring summer autumn christmas easter sports day whatsapp group chat
    found parents everyone can could would will should does did do has have
    history english maths science geography art music drama french spanish computing
"""
_NOT_NAMES = frozenset(_COMMON_WORDS.split())
_HANDLE_WORDS = frozenset(
    {"is", "was", "name", "account", "gone", "got", "dead", "hacked", "the", "and"}
)


@dataclass(frozen=True, kw_only=True)
class _Found:
    rule: str
    span: tuple[int, int]
    severity: Severity


class PersonalInfoDetector:
    """Regex-based personal information detection, minus the school's own published contacts."""

    name = "personal_info"

    def __init__(self, roster: Roster) -> None:
        self._published = _Published.from_roster(roster)
        self._not_names = _NOT_NAMES | _roster_words(roster)

    def detect(self, item: Input) -> list[Signal]:
        """Return personal-information (and child-at-risk) signals with original spans."""
        text = item.text
        found = [*self._contacts(text), *self._handles(text)]
        found.sort(key=lambda f: f.span)
        kept = _drop_nested(found)
        signals = [self._signal(text, f) for f in kept]
        located = any(f.rule == "personal_info.address" for f in kept)
        signals.extend(self._children(text))
        signals.extend(_self_disclosed_child(text, located))
        return signals

    def _contacts(self, text: str) -> Iterator[_Found]:
        for match in _MOBILE.finditer(text):
            if not self._published.has_phone(match.group()):
                yield _Found(
                    rule="personal_info.phone", span=match.span(), severity=Severity.MEDIUM
                )
        for match in _LANDLINE.finditer(text):
            if _landline_ok(match.group()) and not self._published.has_phone(match.group()):
                yield _Found(
                    rule="personal_info.phone", span=match.span(), severity=Severity.MEDIUM
                )
        for match in _EMAIL.finditer(text):
            if not self._published.has_text(match.group()):
                yield _Found(
                    rule="personal_info.email", span=match.span(), severity=Severity.MEDIUM
                )
        yield from self._places(text)

    def _places(self, text: str) -> Iterator[_Found]:
        spans = [m.span() for m in _POSTCODE.finditer(text)]
        postcodes = [s for s in spans if not self._published.has_text(text[s[0] : s[1]])]
        for span in postcodes:
            yield _Found(rule="personal_info.postcode", span=span, severity=Severity.MEDIUM)
        streets = [m.span() for m in _STREET.finditer(text)]
        streets += [m.span(1) for m in _STREET_LOWER.finditer(text)]
        streets += [m.span(1) for m in _STREET_NAMED.finditer(text)]
        streets += [m.span() for m in _OWN_PLACE.finditer(text)]
        for span in sorted(set(streets)):
            if not self._published.has_text(text[span[0] : span[1]]):
                yield _Found(rule="personal_info.address", span=span, severity=Severity.MEDIUM)

    def _handles(self, text: str) -> Iterator[_Found]:
        for regex in (_HANDLE_MINE, _HANDLE_ADD):
            for match in regex.finditer(text):
                if _looks_like_handle(match.group("h")) and not self._published.has_text(
                    match.group("h")
                ):
                    yield _Found(
                        rule="personal_info.handle", span=match.span("h"), severity=Severity.LOW
                    )
        if _OFFER.search(text):
            for match in _AT_HANDLE.finditer(text):
                if not self._published.has_text(match.group()):
                    yield _Found(
                        rule="personal_info.handle", span=match.span(), severity=Severity.LOW
                    )

    def _children(self, text: str) -> list[Signal]:
        signals: list[Signal] = []
        matches = sorted(
            (m for r in _CHILD_NAMED for m in r.finditer(text)), key=lambda m: m.span()
        )
        for match in matches:
            name = match.group("name")
            if not name or _first_word(name) in self._not_names or _heading(text, match):
                continue
            routine = _routine_near(text, match)
            if routine is None and (" " not in name or _praise_near(text, match)):
                # A first name and year group ("Kai (Y9) with a hat-trick"), or a pupil praised
                # by full name, with no location or routine: ordinary news, not personal
                # information. A full name and year group in any other post still is.
                continue
            signals.append(self._signal(text, _child_found(match)))
            if routine is not None:
                signals.append(_child_at_risk(text, match.span(), routine.span()))
        return signals

    def _signal(self, text: str, found: _Found) -> Signal:
        start, end = found.span
        return Signal(
            detector=self.name,
            flag=Flag.PERSONAL_INFO,
            cell=_CELL,
            severity=found.severity,
            span=(start, end),
            text=text[start:end],
            rule=found.rule,
        )


@dataclass(frozen=True, kw_only=True)
class _Published:
    phones: frozenset[str]
    texts: tuple[str, ...]

    @classmethod
    def from_roster(cls, roster: Roster) -> _Published:
        phones = {_phone_digits(c) for c in roster.published_contacts}
        return cls(
            phones=frozenset(p for p in phones if len(p) >= 10),
            texts=tuple(_squash(c) for c in roster.published_contacts),
        )

    def has_phone(self, number: str) -> bool:
        return _phone_digits(number) in self.phones

    def has_text(self, value: str) -> bool:
        needle = _squash(value).lstrip("@")
        return bool(needle) and any(needle in text for text in self.texts)


def _phone_digits(value: str) -> str:
    """Digits in national form: "+44 (0)1632 960123" and "01632-960123" → "01632960123"."""
    digits = re.sub(r"\D", "", value)
    for prefix in ("0044", "44"):
        if digits.startswith(prefix) and len(digits) > 11:
            return "0" + digits[len(prefix) :].lstrip("0")
    return digits


def _landline_ok(number: str) -> bool:
    return len(_phone_digits(number)) in (10, 11)


def _squash(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip().lower()


def _looks_like_handle(handle: str) -> bool:
    bare = handle.lstrip("@")
    if bare.lower() in _HANDLE_WORDS:
        return False
    return handle.startswith("@") or bool(re.search(r"[0-9._]", bare))


def _roster_words(roster: Roster) -> frozenset[str]:
    words: set[str] = set()
    for member in roster.staff:
        for name in (member.name, *member.aliases):
            words.update(w.lower() for w in name.split())
    for name in (roster.school_name, *roster.school_aliases):
        words.update(w.lower() for w in name.split())
    return frozenset(words)


def _first_word(name: str) -> str:
    return name.split()[0].lower()


def _child_found(match: re.Match[str]) -> _Found:
    return _Found(rule="personal_info.child_named", span=match.span(), severity=Severity.MEDIUM)


def _heading(text: str, match: re.Match[str]) -> bool:
    """A subject or group heading ("History Year 10:"), not a named pupil."""
    return text[match.end() : match.end() + 1] == ":"


def _praise_near(text: str, match: re.Match[str]) -> bool:
    """Praise or celebration in the same sentence as the named pupil."""
    starts = [m.end() for m in _SENTENCE_END.finditer(text, 0, match.start())]
    start = starts[-1] if starts else 0
    following = _SENTENCE_END.search(text, match.end())
    end = following.start() if following else len(text)
    return _PRAISE.search(text, start, end) is not None


def _routine_near(text: str, match: re.Match[str]) -> re.Match[str] | None:
    """A routine or location marker in the same sentence as the named child."""
    starts = [m.end() for m in _SENTENCE_END.finditer(text, 0, match.start())]
    start = starts[-1] if starts else 0
    following = _SENTENCE_END.search(text, match.end())
    end = following.start() if following else len(text)
    return _ROUTINE.search(text, start, end)


def _child_at_risk(text: str, span: tuple[int, int], other: tuple[int, int]) -> Signal:
    start, end = min(span[0], other[0]), max(span[1], other[1])
    return Signal(
        detector="personal_info",
        flag=Flag.SAFEGUARDING,
        cell=_CHILD_RISK_CELL,
        severity=Severity.HIGH,
        span=(start, end),
        text=text[start:end],
        tags=frozenset({Tag.CHILD_AT_RISK}),
        rule="personal_info.child_routine",
    )


def _drop_nested(found: list[_Found]) -> list[_Found]:
    """A landline regex can match inside a mobile number; keep the outer span once."""
    kept: list[_Found] = []
    for item in found:
        if any(k.span[0] <= item.span[0] and item.span[1] <= k.span[1] for k in kept):
            continue
        kept = [k for k in kept if not (item.span[0] <= k.span[0] and k.span[1] <= item.span[1])]
        kept.append(item)
    return kept


def _self_disclosed_child(text: str, located: bool) -> list[Signal]:
    """A child giving their age or year group: under 13; at risk if they say where they live."""
    match = _SELF_AGE.search(text)
    if match is None:
        return []
    signals = [
        Signal(
            detector="personal_info",
            flag=None,
            cell=None,
            severity=Severity.NONE,
            span=match.span(),
            text=match.group(),
            tags=frozenset({Tag.UNDER_13}),
            rule="personal_info.under_13",
        )
    ]
    if located:
        signals.append(_child_at_risk(text, match.span(), match.span()))
    return signals
