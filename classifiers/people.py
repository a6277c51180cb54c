"""Named people and defamation: allegations stated as fact about staff, governors or the school.

A target is a roster name or alias ("Mrs Whitfield", "Sarah Whitfield"), a title + surname,
a generic role ("the head", "a teacher", "the governors") or the school itself. An allegation
(theft, harming children, "nonce", drunk at work, lying, covering up, fiddling results,
affairs, ...) in the same sentence as a target — or in the next sentence through a pronoun —
is flagged ``defamatory``. When a person is said to have harmed a child, the allegation is
also a ``safeguarding`` signal tagged ``allegation_against_staff`` (LADO route).
Criticism of decisions, communication, organisation or results gets a flagless signal tagged
``fair_criticism`` so that the policy never hides it automatically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from classifiers.base import Input, Roster, Signal
from classifiers.normalise import Parsed, Parser, normalise_phrase
from classifiers.taxonomy import Cell, Flag, Severity, Tag

__all__ = ["PeopleDetector"]

_TITLES = ("mr", "mrs", "ms", "miss", "dr", "mx", "sir")
_ROLES = (
    "the head", "head teacher", "headteacher", "the headmaster", "headmaster", "headmistress",
    "the deputy", "deputy head", "teacher", "teachers", "class teacher", "form tutor",
    "the caretaker",
    "caretaker", "the cook", "school cook", "dinner lady", "dinner ladies", "lunchtime supervisor",
    "governor", "governors", "the governors", "chair of governors", "office staff",
    "office manager",
    "receptionist", "staff", "staff member", "member of staff", "the dsl", "senco", "the senco",
    "teaching assistant", "the ta", "slt", "senior leadership", "senior leadership team",
    "pta treasurer", "pta chair", "the principal", "principal", "the coach", "sports coach",
    "pe teacher", "minibus driver", "the bursar", "bursar", "trustees", "the trust",
)  # fmt: skip
_SCHOOL = ("the school", "this school", "that school", "the academy", "this academy")
_PRONOUNS = frozenset({"he", "she", "him", "her", "his", "they", "them", "their", "hes", "shes"})
_NEGATORS = frozenset({"not", "n't", "never", "no", "nt", "nothing", "nobody", "neither"})
_OTHER_ACTORS = frozenset({
    "boy", "girl", "child", "kid", "pupil", "student", "someone", "somebody", "parent", "man",
    "woman", "lad", "classmate", "boys", "girls", "kids", "pupils", "students", "mum", "dad",
    "stranger", "another", "i", "we", "somebody's", "someones",
})  # fmt: skip
_HEDGES = (
    "i heard", "heard that", "rumour", "rumours", "rumor", "rumors", "allegedly", "apparently",
    "people are saying", "people say", "someone said", "is it true", "supposedly", "word is",
    "might have", "may have", "i think", "not sure if", "could be",
)  # fmt: skip
_CRITICISM = (
    "badly organised", "poorly organised", "badly organized", "poorly organized", "disorganised",
    "disorganized", "poor communication", "communication is poor", "communication is terrible",
    "communication has been", "no communication", "lack of communication", "disappointed",
    "disappointing", "never replies", "never reply", "never replied", "didn't reply", "no reply",
    "no response", "ignored my email", "ignored my emails", "ignores my emails", "not good enough",
    "unacceptable", "shambles", "poor results", "terrible results", "results are poor",
    "results were poor", "should have told us", "last minute", "short notice", "not happy",
    "unhappy", "frustrated", "frustrating", "let down", "let us down", "waste of money",
    "too expensive", "overpriced", "complaint", "complain", "badly run", "badly managed",
    "poorly managed", "poor leadership", "requires improvement", "ofsted", "chaotic",
    "not listening", "doesn't listen", "don't listen", "no one listens", "poor decision",
    "bad decision", "wrong decision", "ridiculous", "no notice", "was poor", "is poor",
    "been poor", "chaos", "sort it out", "is a joke", "what a joke", "should consider her position",
    "should consider his position", "lost its way", "proper explanation", "an explanation",
    "more notice", "where it went", "where the money went", "accounts be published", "been mixed",
    "not acceptable", "very poor",
    "so poor", "need to improve", "needs to improve", "could do better", "not impressed",
    "badly handled", "poorly handled", "no explanation", "still waiting", "waiting for a reply",
)  # fmt: skip


class Kind(StrEnum):
    """Allegation categories; the harm ones also go to the DSL/LADO."""

    THEFT = "theft"
    CHILD_HARM = "child_harm"
    CHILD_SEXUAL = "child_sexual"
    DRUNK = "drunk"
    DISHONEST = "dishonest"
    COVER_UP = "cover_up"
    RESULTS = "results"
    AFFAIR = "affair"
    CRIMINAL = "criminal"
    MISCONDUCT = "misconduct"


_ALLEGATIONS: dict[Kind, tuple[str, ...]] = {
    Kind.THEFT: (
        "stealing", "stole", "steals", "thief", "theft", "nicking", "nicked money",
        "pocketing", "pocketed", "embezzling", "embezzled", "embezzlement", "fraud", "fraudster",
        "fiddling the books", "fiddled the books", "money laundering", "taking money from",
        "took money from", "helping herself to", "helping himself to", "corrupt", "bribe",
        "bribes", "bribed", "kickbacks", "fiddling the pta", "fiddles the", "backhanders", "crook",
        "pocketed thousands", "on the take",
        "takes cash", "takes money", "taking cash", "took cash", "nicks", "pockets the",
        "pockets money", "sells it on", "selling it on", "sells pupils", "sells kids",
        "sells children", "sells our", "fiddles", "skims", "misuses the money", "spends the money",
    ),
    Kind.CHILD_HARM: (
        "hit a child", "hits the children", "hits children", "hit my son", "hit my daughter",
        "hit my child", "hitting children", "hitting kids", "hits kids",
        # "slapped" needs its object: "the panto absolutely slapped" is praise.
        "slapped my", "slapped a", "slapped him", "slapped her", "slapped the", "slapped one",
        "slaps the kids", "slaps children", "slaps pupils",
        "grabbed my", "grabbed a child", "grabbed him by", "grabbed her by", "shoved my",
        "pushed my son", "pushed my daughter", "kicked my", "assaulted", "abused", "abusing",
        "abuses", "locked my son", "locked my daughter", "hurt my son", "hurt my daughter",
        "hurts children", "hurting children", "beats the kids", "bullies children",
        "bullies the kids",
        "shouts at children until", "dragged my", "punched",
        "shoved a", "shoved", "pushed a", "grabbed a", "threw a", "hit a year", "hits pupils",
        "smacked", "manhandled", "restrains", "locked a",
    ),
    Kind.CHILD_SEXUAL: (
        "nonce", "paedo", "pedo", "peado", "paedophile", "pedophile", "kiddy fiddler", "perv",
        "pervert", "sex offender", "predator", "child abuser", "child molester", "touched my",
        "touched a", "touched her", "touched him", "touching children", "touching kids",
        "touches the girls", "touching the girls", "touching the boys", "touching pupils",
        "inappropriate with", "inappropriately touch", "molested", "molesting", "groomed",
        "grooming children", "grooming pupils", "grooming girls", "grooming boys",
        "relationship with a pupil", "relationship with a student", "messaging pupils",
        "sent messages to pupils", "sleeping with a pupil", "sexual messages", "sexting pupils",
        "messages girls", "messaging girls", "messages the girls", "messages boys", "messages kids",
        "messages children", "messaging kids", "dms girls", "dms kids", "dming girls",
        "messaging year", "messages year", "messaging pupils on", "been messaging", "in his car",
        "in her car", "on their own in", "alone with girls", "alone with boys", "extra tutoring",
        "private tutoring", "snapchat with pupils", "follows pupils", "late at night",
    ),
    Kind.DRUNK: (
        "drunk at work", "drunk at school", "turned up drunk", "was drunk", "is drunk",
        "always drunk", "smells of alcohol", "smelt of alcohol", "stinks of booze", "hungover",
        "alcoholic", "on drugs", "high at work", "takes drugs", "cokehead", "coke head",
        "drug addict", "drinking at work", "drinking on the job", "drunk",
    ),
    Kind.DISHONEST: (
        "not qualified", "unqualified", "fake qualifications", "fake degree", "no qualifications",
        "liar", "lying", "lied", "tells lies", "compulsive liar", "forged", "falsified",
        "isn't even a qualified", "isnt even a qualified", "isn't qualified", "isnt qualified",
        "not even a qualified", "not even qualified", "isn't even qualified",
        "not a qualified teacher",
        "faked", "fakes", "falsifies", "falsifying", "fabricated", "marks girls down",
        "marks boys down", "marks down", "on purpose", "struck off", "excludes kids whose",
        "excludes children whose", "gossips about", "reported five times", "been reported",
        "doctors the", "cooks the books",
    ),
    Kind.COVER_UP: (
        "covered up", "cover up", "covering up", "cover-up", "swept under the carpet",
        "swept it under the carpet", "sweep it under the carpet", "hushed up", "hushing up",
        "covered it up", "covers up", "buried the", "covers for her", "covers for him",
        "covering for her", "covering for him", "covered for her", "covered for him",
    ),
    Kind.RESULTS: (
        "fiddled the sats", "fiddled the results", "fiddling the results", "fiddling results",
        "cheated on the sats", "cheating on the sats", "cheated the sats", "made up the results",
        "doctored the results", "changed the marks", "fake results", "rigged the", "fiddled the",
        "cheats on", "cheated on", "giving the kids the answers", "gave the kids the answers",
        "giving them the answers", "gave them the answers", "fiddled their", "fiddling their",
        "fiddle their", "rigged their", "doctored their",
    ),
    Kind.AFFAIR: (
        "having an affair", "had an affair", "an affair with", "sleeping with", "shagging",
        "slept with", "cheating on his wife", "cheating on her husband",
    ),
    Kind.CRIMINAL: (
        "is a racist", "is racist", "are racist", "a racist", "is a criminal", "criminal record",
        "was arrested", "got arrested",
        "should be in prison", "should be locked up", "going to prison", "police are investigating",
        "sacked from his last school", "sacked from her last school", "got sacked for",
        "is a bully", "bullying staff",
    ),
    Kind.MISCONDUCT: (
        "safeguarding files", "confidential files", "reads out kids", "reads out children",
        "jump the sen waiting list", "jump the waiting list", "jump the queue", "jump the list",
        "guinea pigs", "paid per child", "gets paid per", "sex positions",
        "teaching 5 year olds sex",
        "plays favourites", "favouritism", "backhander", "breaks confidentiality",
        "leaks confidential", "shares confidential", "fakes the register", "fiddles the register",
        "medical files", "bets on", "picks the team", "drink driving", "drink-driving",
        "done for", "been suspended", "suspended pending", "told to keep quiet", "shut down by",
        "failing safeguarding", "for every kid", "for every child", "per pupil they",
        "move kids up", "moves kids up", "pupils' data", "pupils data", "kids' data",
        "to advertisers", "down the pub", "sen register", "they've known", "theyve known",
    ),
}  # fmt: skip
_KINDS = frozenset(kind.value for kind in Kind)
_HARM = frozenset({Kind.CHILD_HARM, Kind.CHILD_SEXUAL})
_PERSON_ONLY = frozenset({Kind.CHILD_HARM, Kind.CHILD_SEXUAL, Kind.DRUNK, Kind.AFFAIR})
_HIGH = frozenset({Kind.CHILD_HARM, Kind.CHILD_SEXUAL, Kind.THEFT, Kind.COVER_UP})
_DEFAMATION_CELL = Cell.parse("content.values")
_SAFEGUARDING_CELLS = {
    Kind.CHILD_HARM: Cell.parse("contact.aggressive"),
    Kind.CHILD_SEXUAL: Cell.parse("contact.sexual"),
}


@dataclass(frozen=True, kw_only=True)
class _Match:
    label: str  # "person", "school", "criticism", "hedge" or an allegation Kind value
    start: int
    end: int
    sentence: int


class PeopleDetector:
    """Defamation about identifiable staff or the school, and fair criticism markers."""

    name = "people"

    def __init__(self, roster: Roster, *, parser: Parser | None = None) -> None:
        self._parser = parser or Parser()
        self._matcher = self._build_matcher(roster)

    def detect(self, item: Input) -> list[Signal]:
        """Return defamation, staff-allegation and fair-criticism signals."""
        parsed = self._parser.parse(item.text)
        matches = self._matches(parsed)
        signals = [self._criticism(parsed, m) for m in matches if m.label == "criticism"]
        for allegation in (m for m in matches if m.label in _KINDS):
            signals.extend(self._allegation(parsed, matches, allegation))
        return signals

    def _build_matcher(self, roster: Roster) -> Any:
        from spacy.matcher import PhraseMatcher

        matcher = PhraseMatcher(self._parser.nlp.vocab, attr="LOWER")
        groups: dict[str, Iterable[str]] = {
            "person": _person_names(roster),
            "school": (*_SCHOOL, roster.school_name, *roster.school_aliases),
            "criticism": _CRITICISM,
            "hedge": _HEDGES,
            **{kind.value: phrases for kind, phrases in _ALLEGATIONS.items()},
        }
        for label, phrases in groups.items():
            texts = sorted({normalise_phrase(p) for p in phrases if p.strip()})
            matcher.add(label, [self._parser.make_doc(t) for t in texts])
        return matcher

    def _matches(self, parsed: Parsed) -> list[_Match]:
        strings = self._parser.nlp.vocab.strings
        found = sorted(self._matcher(parsed.doc), key=lambda m: (m[1], -m[2]))
        out: list[_Match] = []
        for match_id, start, end in found:
            label = strings[match_id]
            if any(m.label == label and m.start <= start and end <= m.end for m in out):
                continue  # "the head teacher" inside "head teacher" etc.
            out.append(_Match(label=label, start=start, end=end, sentence=parsed.sentences[start]))
        return out

    def _criticism(self, parsed: Parsed, match: _Match) -> Signal:
        start, end = parsed.char_span(match.start, match.end)
        return Signal(
            detector=self.name,
            flag=None,
            cell=None,
            severity=Severity.NONE,
            span=(start, end),
            text=parsed.original[start:end],
            tags=frozenset({Tag.FAIR_CRITICISM}),
            rule="people.fair_criticism",
        )

    def _allegation(
        self, parsed: Parsed, matches: Sequence[_Match], allegation: _Match
    ) -> list[Signal]:
        kind = Kind(allegation.label)
        target = _target_for(parsed, matches, allegation, kind)
        if target is None or _negated(parsed, allegation) or _passive(parsed, allegation):
            return []
        hedged = _hedged(parsed, matches, allegation)
        start = (
            min(target.start, allegation.start) if target.sentence == allegation.sentence else None
        )
        first = allegation.start if start is None else start
        span = parsed.char_span(first, max(allegation.end, target.end if start is not None else 0))
        signals = [self._defamation(parsed, span, kind, hedged, target)]
        if kind in _HARM and target.label == "person":
            signals.append(self._staff_harm(parsed, span, kind))
        return signals

    def _defamation(
        self, parsed: Parsed, span: tuple[int, int], kind: Kind, hedged: bool, target: _Match
    ) -> Signal:
        severity = Severity.HIGH if kind in _HIGH else Severity.MEDIUM
        if hedged:
            severity = Severity(max(Severity.LOW, severity - 1))
        harm = kind in _HARM and target.label == "person"
        return Signal(
            detector=self.name,
            flag=Flag.DEFAMATORY,
            cell=_DEFAMATION_CELL,
            severity=severity,
            span=span,
            text=parsed.original[span[0] : span[1]],
            tags=frozenset({Tag.ALLEGATION_AGAINST_STAFF}) if harm else frozenset(),
            rule=f"people.allegation.{kind.value}",
        )

    def _staff_harm(self, parsed: Parsed, span: tuple[int, int], kind: Kind) -> Signal:
        return Signal(
            detector=self.name,
            flag=Flag.SAFEGUARDING,
            cell=_SAFEGUARDING_CELLS[kind],
            severity=Severity.HIGH,
            span=span,
            text=parsed.original[span[0] : span[1]],
            tags=frozenset({Tag.ALLEGATION_AGAINST_STAFF, Tag.CHILD_AT_RISK}),
            rule=f"people.staff_harm.{kind.value}",
        )


def _person_names(roster: Roster) -> list[str]:
    names: list[str] = list(_ROLES)
    for member in roster.staff:
        names.append(member.name)
        names.extend(member.aliases)
        parts = member.name.split()
        if len(parts) >= 2:
            names.extend(f"{title} {parts[-1]}" for title in _TITLES)
            names.extend(f"{title}. {parts[-1]}" for title in _TITLES)
    return names


def _target_for(
    parsed: Parsed, matches: Sequence[_Match], allegation: _Match, kind: Kind
) -> _Match | None:
    labels = ("person",) if kind in _PERSON_ONLY else ("person", "school")
    same = [m for m in matches if m.label in labels and m.sentence == allegation.sentence]
    # An actor before the allegation with the target after it ("someone stole a bike from the
    # school"); for harm, any other actor between them ("Mr Hughes said a boy hit my son").
    same = [
        m
        for m in same
        if not (
            (kind in _HARM or m.start > allegation.start) and _actor_between(parsed, m, allegation)
        )
    ]
    if same:
        before = [m for m in same if m.start < allegation.start]
        return before[-1] if before else same[0]
    if not _pronoun_before(parsed, allegation):
        return None
    earlier = [
        m
        for m in matches
        if m.label in labels and allegation.sentence - 2 <= m.sentence < allegation.sentence
    ]
    return earlier[-1] if earlier else None


def _actor_between(parsed: Parsed, target: _Match, allegation: _Match) -> bool:
    """Someone else is the actor: "Mr Hughes said a boy hit my son", "a boy punched Mr Hughes"."""
    if target.start < allegation.start:
        between = parsed.doc[target.end : allegation.start]
    else:
        first = next(i for i, s in enumerate(parsed.sentences) if s == allegation.sentence)
        between = parsed.doc[first : allegation.start]
    return any(t.lower_ in _OTHER_ACTORS for t in between)


def _passive(parsed: Parsed, allegation: _Match) -> bool:
    """The named person is the victim: "Mr Hughes was assaulted by a parent"."""
    return allegation.end < len(parsed.doc) and parsed.doc[allegation.end].lower_ == "by"


def _pronoun_before(parsed: Parsed, allegation: _Match) -> bool:
    sentence = parsed.sentences[allegation.start]
    tokens = parsed.doc[: allegation.end]
    return any(t.lower_ in _PRONOUNS and parsed.sentences[t.i] == sentence for t in tokens)


def _negated(parsed: Parsed, allegation: _Match) -> bool:
    window = parsed.doc[max(0, allegation.start - 3) : allegation.start]
    return any(t.lower_ in _NEGATORS for t in window)


def _hedged(parsed: Parsed, matches: Sequence[_Match], allegation: _Match) -> bool:
    if any(m.label == "hedge" and m.sentence == allegation.sentence for m in matches):
        return True
    sentence = [t for t in parsed.doc if parsed.sentences[t.i] == allegation.sentence]
    return any(t.text == "?" for t in sentence)
