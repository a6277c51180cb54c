"""Lexicon rules: versioned TOML phrase lists and spaCy token patterns → signals.

A lexicon file has a top-level ``version = N`` and ``[[entry]]`` tables::

    [[entry]]
    id = "grooming.secret"                 # unique across all files; used by suppress_rules
    phrases = ["our little secret"]        # matched case-insensitively on normalised text;
                                           # "{school}" stands for each of the school's names
    patterns = [[{LOWER = "send"}, {LOWER = "nudes"}]]   # optional spaCy Matcher patterns
    flag = "safeguarding"     # abusive | defamatory | safeguarding | spam | personal_info
    cell = "contact.sexual"
    severity = "high"
    tags = ["child_at_risk"]
    effect = "flag"    # flag (default) | awareness | idiom | marker
    context = true     # false: an awareness context does not suppress this entry
    also = [{flag = "abusive", cell = "conduct.aggressive"}]   # optional extra flag/cell pairs
    promo = true       # promotion: dropped when the school itself posted it, or when every
                       # link in the post goes to the school's own site or a trusted one
    prefilter = ["*", "#"]   # only for patterns without a required word: substrings one of
                             # which the normalised text must hold before they are run
    max_tokens = 3     # the match counts only in a text with at most 3 other tokens

``awareness`` entries mark education/awareness sentences ("e-safety assembly"): context-sensitive
signals in that sentence and the two after it are dropped. ``idiom`` entries ("killed me lol") mask
their own span. ``marker`` entries produce flagless signals the combiner uses (e.g. a child
reference).

Speed: before a text is tokenised, its runs of letters are compared with one trigger word per
phrase and the required words of each token pattern (``normalise.Trigger``); most texts hold
none and cost only their normalisation. Each token pattern runs only when its own trigger is
in the text.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from classifiers.base import Input, NotConfigured, Signal
from classifiers.normalise import (
    Parsed,
    Parser,
    Trigger,
    Triggers,
    normalise_phrase,
    undouble,
)
from classifiers.taxonomy import Cell, Flag, Severity, Tag

__all__ = ["BUILTIN_LEXICONS", "Effect", "LexiconEntry", "RulesDetector", "load_lexicons"]

BUILTIN_LEXICONS = Path(__file__).parent / "lexicons"
_TEXT_KEYS = frozenset({"LOWER", "ORTH", "TEXT", "NORM"})
_ENTRY_KEYS = frozenset(
    {
        "id",
        "phrases",
        "patterns",
        "flag",
        "cell",
        "severity",
        "tags",
        "effect",
        "context",
        "score",
        "also",
        "promo",
        "prefilter",
        "max_tokens",
    }
)
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# Links that are never promotion: the school's own site (its name in the address) and the
# public and school-service sites schools link to.
_TRUSTED_SUFFIXES = (".sch.uk", ".gov.uk", ".nhs.uk", ".ac.uk", ".police.uk", ".org.uk")
_TRUSTED_HOSTS = (
    "parentpay.com", "schoolcloud.co.uk", "classdojo.com", "arbor-education.com", "arbor.sc",
    "schoolmoney.co.uk", "scopay.com", "tapestryjournal.com", "seesaw.me", "forms.gle",
    "docs.google.com", "forms.office.com", "bbc.co.uk", "ofsted.gov.uk", "justgiving.com",
    "eventbrite.co.uk", "nspcc.org.uk", "childline.org.uk", "ceop.police.uk",
    "parentmail.co.uk", "sims.co.uk", "teams.microsoft.com", "school.jotform.com",
)  # fmt: skip


class Effect(StrEnum):
    """What a lexicon entry does when it matches."""

    FLAG = "flag"
    AWARENESS = "awareness"
    IDIOM = "idiom"
    MARKER = "marker"


@dataclass(frozen=True, kw_only=True)
class LexiconEntry:
    """One validated ``[[entry]]`` of a lexicon file."""

    id: str
    source: str
    phrases: tuple[str, ...] = ()
    patterns: tuple[tuple[Mapping[str, Any], ...], ...] = ()
    flag: Flag | None = None
    cell: Cell | None = None
    severity: Severity = Severity.NONE
    tags: frozenset[Tag] = frozenset()
    effect: Effect = Effect.FLAG
    context: bool = True
    score: float | None = None
    also: tuple[tuple[Flag, Cell], ...] = ()  # further (flag, cell) findings for the same match
    promo: bool = False  # dropped for the school's own posts and school links
    prefilter: tuple[str, ...] = ()  # substrings gating patterns that have no required word
    max_tokens: int | None = None  # counts only in a text with at most this many other tokens


def load_lexicons(paths: Iterable[Path]) -> tuple[LexiconEntry, ...]:
    """Read and validate lexicon files; raise NotConfigured naming the file and entry."""
    entries: list[LexiconEntry] = []
    seen: dict[str, str] = {}
    for path in paths:
        for entry in _load_file(path):
            if entry.id in seen:
                raise NotConfigured(
                    f"{path}: entry {entry.id!r} duplicates an entry of {seen[entry.id]}"
                )
            seen[entry.id] = str(path)
            entries.append(entry)
    return tuple(entries)


def _load_file(path: Path) -> list[LexiconEntry]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise NotConfigured(f"{path}: cannot read lexicon: {err}") from err
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise NotConfigured(f"{path}: lexicon needs a top-level integer 'version = N'")
    raw_entries = data.get("entry", [])
    if not isinstance(raw_entries, list):
        raise NotConfigured(f"{path}: 'entry' must be an array of tables ([[entry]])")
    return [_parse_entry(path, i, raw) for i, raw in enumerate(raw_entries)]


def _parse_entry(path: Path, index: int, raw: Any) -> LexiconEntry:
    name = raw.get("id") if isinstance(raw, dict) else None
    where = f"{path}: entry {name!r}" if isinstance(name, str) else f"{path}: entry #{index + 1}"
    try:
        return _build_entry(str(path), raw)
    except (KeyError, TypeError, ValueError) as err:
        raise NotConfigured(f"{where}: {err}") from None


def _build_entry(source: str, raw: Any) -> LexiconEntry:
    if not isinstance(raw, dict):
        raise TypeError("must be a table")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    entry_id = raw["id"]
    if not isinstance(entry_id, str) or not entry_id.strip():
        raise ValueError("'id' must be a non-empty string")
    effect = Effect(raw.get("effect", "flag"))
    entry = LexiconEntry(
        id=entry_id,
        source=source,
        phrases=_strings(raw.get("phrases", []), "phrases"),
        patterns=_patterns(raw.get("patterns", [])),
        flag=Flag(raw["flag"]) if "flag" in raw else None,
        cell=Cell.parse(raw["cell"]) if "cell" in raw else None,
        severity=Severity.parse(raw["severity"]) if "severity" in raw else Severity.NONE,
        tags=frozenset(Tag(t) for t in _strings(raw.get("tags", []), "tags")),
        effect=effect,
        context=_boolean(raw.get("context", True), "context"),
        score=_score(raw.get("score")),
        also=_also(raw.get("also", [])),
        promo=_boolean(raw.get("promo", False), "promo"),
        prefilter=_strings(raw.get("prefilter", []), "prefilter"),
        max_tokens=_count(raw.get("max_tokens")),
    )
    _check_entry(entry)
    return entry


def _check_entry(entry: LexiconEntry) -> None:
    if not entry.phrases and not entry.patterns:
        raise ValueError("needs 'phrases' or 'patterns'")
    if entry.effect is Effect.FLAG and (entry.flag is None or entry.cell is None):
        raise ValueError("a flag entry needs 'flag' and 'cell'")
    if entry.effect is Effect.FLAG and entry.severity is Severity.NONE:
        raise ValueError("a flag entry needs a 'severity' above none")


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise TypeError(f"'{key}' must be a list of non-empty strings")
    return tuple(value)


def _boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"'{key}' must be true or false")
    return value


def _count(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("'max_tokens' must be a whole number, 0 or more")
    return value


def _score(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError("'score' must be a number between 0 and 1")
    return float(value)


def _also(value: Any) -> tuple[tuple[Flag, Cell], ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TypeError("'also' must be a list of {flag = ..., cell = ...} tables")
    out = []
    for pair in value:
        if set(pair) != {"flag", "cell"}:
            raise ValueError("each 'also' table needs exactly 'flag' and 'cell'")
        out.append((Flag(pair["flag"]), Cell.parse(pair["cell"])))
    return tuple(out)


def _patterns(value: Any) -> tuple[tuple[Mapping[str, Any], ...], ...]:
    if not isinstance(value, list):
        raise TypeError("'patterns' must be a list of token-pattern lists")
    out = []
    for pattern in value:
        if not isinstance(pattern, list) or not pattern:
            raise TypeError("each pattern must be a non-empty list of token tables")
        if not all(isinstance(tok, dict) for tok in pattern):
            raise TypeError("each token of a pattern must be a table")
        out.append(tuple(_normalise_token(tok) for tok in pattern))
    return tuple(out)


def _normalise_token(token: Mapping[str, Any]) -> Mapping[str, Any]:
    """Normalise literal text in a token pattern, as the post text is normalised."""
    out: dict[str, Any] = {}
    for key, value in token.items():
        if key in _TEXT_KEYS and isinstance(value, str):
            value = normalise_phrase(value)
        elif key in _TEXT_KEYS and isinstance(value, dict):
            value = {op: _normalise_values(v) for op, v in value.items()}
        out[key] = value
    return out


def _normalise_values(value: Any) -> Any:
    if isinstance(value, list):
        return [normalise_phrase(v) if isinstance(v, str) else v for v in value]
    return normalise_phrase(value) if isinstance(value, str) else value


@dataclass(frozen=True, kw_only=True)
class _Hit:
    entry: LexiconEntry
    start: int  # token offsets in the parsed doc
    end: int


class RulesDetector:
    """Lexicon phrase and token-pattern matching with awareness and idiom suppression."""

    name = "rules"

    def __init__(
        self,
        *,
        parser: Parser | None = None,
        extra_lexicon_files: Sequence[Path] = (),
        suppress_rules: Sequence[str] = (),
        school_names: Sequence[str] = (),
        school_contacts: Sequence[str] = (),
    ) -> None:
        self._parser = parser or Parser()
        self._school_names = (*(n for n in school_names if n.strip()), "the school")
        self._school = _SchoolLinks.from_roster(school_names, school_contacts)
        files = sorted(BUILTIN_LEXICONS.glob("*.toml")) + list(extra_lexicon_files)
        entries = load_lexicons(files)
        self._entries = {e.id: e for e in _without(entries, suppress_rules)}
        self._phrases, self._matchers = self._build_matchers()
        self._elongated = _single_words(self._entries.values())
        self._trigger = Triggers(self._entry_triggers())

    def detect(self, item: Input) -> list[Signal]:
        """Return one signal per surviving lexicon match, spans in the original text."""
        if not self._trigger.found_in(self._parser.normalise(item.text)):
            return []  # no lexicon entry can match: skip tokenising
        parsed = self._parser.parse(item.text)
        hits = _surviving(parsed, self._hits(parsed))
        if any(hit.entry.promo for hit in hits) and self._school.posted_or_linked(item, parsed):
            hits = [hit for hit in hits if not hit.entry.promo]
        return [s for hit in hits for s in self._signals(parsed, hit)]

    def _build_matchers(self) -> tuple[Any, list[_Gated]]:
        from spacy.matcher import PhraseMatcher

        nlp = self._parser.nlp
        phrases = PhraseMatcher(nlp.vocab, attr="LOWER")
        matchers: list[_Gated] = []
        for entry in self._entries.values():
            texts = self._phrase_texts(entry)
            if texts:
                phrases.add(entry.id, [self._parser.make_doc(t) for t in texts])
            matchers.extend(_gated(nlp.vocab, entry, p) for p in entry.patterns)
        return phrases, matchers

    def _phrase_texts(self, entry: LexiconEntry) -> list[str]:
        return sorted({normalise_phrase(t) for p in entry.phrases for t in self._expand(p)})

    def _entry_triggers(self) -> list[Trigger]:
        """One trigger per phrase and pattern of the entries that can produce a signal."""
        triggers = [trigger for trigger, _ in self._matchers]  # idiom/awareness have none
        for entry in self._entries.values():
            if entry.effect in (Effect.FLAG, Effect.MARKER):
                for text in self._phrase_texts(entry):
                    tokens = [[t.text] for t in self._parser.make_doc(text)]
                    triggers.append(Trigger.of_tokens(tokens))
        return triggers

    def _elongated_hits(self, parsed: Parsed) -> list[tuple[int, int, int]]:
        """Elongated words ("noncee", "loserr"): a doubled letter where the lexicon has one."""
        strings = self._parser.nlp.vocab.strings
        hits: list[tuple[int, int, int]] = []
        for word in sorted(parsed.norm.doubled):
            ids = () if word in self._elongated else self._elongated.get(undouble(word), ())
            if not ids:
                continue  # not elongated, or the phrase matcher has found it already
            for match in re.finditer(rf"(?<![a-z]){word}(?![a-z])", parsed.norm.text):
                span = parsed.doc.char_span(match.start(), match.end())
                if span is not None and len(span) == 1:
                    hits.extend((strings.add(entry_id), span.start, span.end) for entry_id in ids)
        return hits

    def _expand(self, phrase: str) -> list[str]:
        if "{school}" not in phrase:
            return [phrase]
        return [phrase.replace("{school}", name) for name in self._school_names]

    def _hits(self, parsed: Parsed) -> list[_Hit]:
        vocab = self._parser.nlp.vocab
        doc = parsed.doc
        raw = list(self._phrases(doc))
        raw.extend(self._elongated_hits(parsed))
        for trigger, matcher in self._matchers:
            if trigger.found_in(parsed.norm):
                raw.extend(matcher(doc))
        unique = {(vocab.strings[m], s, e) for m, s, e in raw}
        hits = [_Hit(entry=self._entries[i], start=s, end=e) for i, s, e in unique]
        return _longest_per_entry(hits)

    def _signals(self, parsed: Parsed, hit: _Hit) -> list[Signal]:
        start, end = parsed.char_span(hit.start, hit.end)
        entry = hit.entry
        pairs = [(entry.flag, entry.cell), *entry.also]
        return [
            Signal(
                detector=self.name,
                flag=flag,
                cell=cell,
                severity=entry.severity,
                span=(start, end),
                text=parsed.original[start:end],
                score=entry.score,
                tags=entry.tags,
                rule=entry.id,
            )
            for flag, cell in pairs
        ]


@dataclass(frozen=True, kw_only=True)
class _SchoolLinks:
    """Who the school is, for promotion entries.

    ``slugs`` are its names squashed ("oakfieldprimary"), matched against a post's author;
    ``domains`` are the hosts of its published contacts (emails and web addresses). A link is
    the school's only when its host is one of those domains: a name inside a link proves
    nothing ("oakfield-refunds.example" is how phishing pages look).
    """

    slugs: tuple[str, ...]
    domains: tuple[str, ...] = ()

    @classmethod
    def from_roster(cls, names: Sequence[str], contacts: Sequence[str] = ()) -> _SchoolLinks:
        slugs = {_NON_ALNUM.sub("", name.lower()) for name in names}
        return cls(
            slugs=tuple(sorted(s for s in slugs if len(s) >= 5)),
            domains=tuple(sorted({d for d in map(_contact_domain, contacts) if d})),
        )

    def posted_or_linked(self, item: Input, parsed: Parsed) -> bool:
        """The school posted this itself, or every link in it is the school's or trusted."""
        if item.source_kind == "own" and item.author and self._named(item.author):
            return True
        text = parsed.norm.text
        if "." not in text and "/" not in text:
            return False  # no link
        links = [t.text for t in parsed.doc if t.like_url]
        return bool(links) and all(self._trusted(link) for link in links)

    def _named(self, value: str) -> bool:
        squashed = _NON_ALNUM.sub("", value.lower())
        return any(slug in squashed for slug in self.slugs)

    def _trusted(self, link: str) -> bool:
        host = _host(link)
        if host.endswith(_TRUSTED_SUFFIXES):
            return True
        trusted = (*self.domains, *_TRUSTED_HOSTS)
        return any(host == h or host.endswith("." + h) for h in trusted)


def _host(link: str) -> str:
    host = link.lower().split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].rstrip(".")
    return host.removeprefix("www.")


def _contact_domain(contact: str) -> str:
    """The host of a published email or web address; "" for a phone number or postal address."""
    value = contact.strip().lower()
    if "@" in value:
        return value.rsplit("@", 1)[1].strip(". ")
    if "." in value and " " not in value:
        return _host(value)
    return ""


# One spaCy Matcher per token pattern, run only when the text holds one of the words the
# pattern cannot match without (its trigger): a Matcher pays for every pattern on every
# token, and most texts contain none of the trigger words.
_Gated = tuple[Trigger, Any]


def _gated(vocab: Any, entry: LexiconEntry, pattern: Sequence[Mapping[str, Any]]) -> _Gated:
    from spacy.matcher import Matcher

    matcher = Matcher(vocab)
    try:
        matcher.add(entry.id, [[dict(tok) for tok in pattern]])
    except (ValueError, KeyError, TypeError) as err:
        raise NotConfigured(f"{entry.source}: entry {entry.id!r}: bad pattern: {err}") from None
    required = [words for tok in pattern if (words := _required_words(tok)) is not None]
    if entry.prefilter:
        required.append(frozenset(s.lower() for s in entry.prefilter))
    return Trigger.of_tokens(required), matcher


def _required_words(token: Mapping[str, Any]) -> frozenset[str] | None:
    if token.get("OP", "1") not in ("1", "+"):
        return None
    value = token.get("LOWER")
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, dict) and set(value) == {"IN"} and isinstance(value["IN"], list):
        return frozenset(v for v in value["IN"] if isinstance(v, str))
    return None


def _single_words(entries: Iterable[LexiconEntry]) -> dict[str, tuple[str, ...]]:
    """One-word phrases without doubled letters, by word → entry ids."""
    words: dict[str, list[str]] = {}
    for entry in entries:
        for phrase in entry.phrases:
            word = normalise_phrase(phrase)
            if word.isalpha() and undouble(word) == word:
                words.setdefault(word, []).append(entry.id)
    return {w: tuple(ids) for w, ids in words.items()}


def _without(entries: Sequence[LexiconEntry], suppress: Sequence[str]) -> list[LexiconEntry]:
    ids = [e.id for e in entries]
    for rule in suppress:
        if not fnmatch.filter(ids, rule):
            raise NotConfigured(f"suppress_rules: no lexicon entry matches {rule!r}")
    return [e for e in entries if not any(fnmatch.fnmatchcase(e.id, r) for r in suppress)]


def _longest_per_entry(hits: Iterable[_Hit]) -> list[_Hit]:
    """Drop a hit inside a longer hit of the same entry; order by position then id."""
    ordered = sorted(hits, key=lambda h: (h.entry.id, -(h.end - h.start), h.start))
    kept: list[_Hit] = []
    for hit in ordered:
        if not any(_same_entry_overlap(hit, k) for k in kept):
            kept.append(hit)
    return sorted(kept, key=lambda h: (h.start, h.end, h.entry.id))


def _same_entry_overlap(a: _Hit, b: _Hit) -> bool:
    return a.entry.id == b.entry.id and a.start < b.end and b.start < a.end


def _surviving(parsed: Parsed, hits: Sequence[_Hit]) -> list[_Hit]:
    """Flag and marker hits not masked by an idiom nor in (or just after) an awareness sentence."""
    idioms = [(h.start, h.end) for h in hits if h.entry.effect is Effect.IDIOM]
    aware = {parsed.sentences[h.start] for h in hits if h.entry.effect is Effect.AWARENESS}
    out = []
    for hit in hits:
        if hit.entry.effect not in (Effect.FLAG, Effect.MARKER):
            continue
        if any(hit.start < e and s < hit.end for s, e in idioms):
            continue
        limit = hit.entry.max_tokens
        if limit is not None and len(parsed.doc) - (hit.end - hit.start) > limit:
            continue
        if aware and hit.entry.context and _near(parsed.sentences[hit.start], aware):
            continue
        out.append(hit)
    return out


def _near(sentence: int, aware: set[int]) -> bool:
    """In an awareness sentence, the one before it ("... 'free Xbox' giveaways. It's a scam,
    don't click") or one of the two after it (an assembly post's later lines)."""
    return any(sentence - back in aware for back in range(-1, 3))
