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

``awareness`` entries mark education/awareness sentences ("e-safety assembly"): context-sensitive
signals in that sentence and the next are dropped. ``idiom`` entries ("killed me lol") mask
their own span. ``marker`` entries produce flagless signals the combiner uses (e.g. a child
reference).
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from classifiers.base import Input, NotConfigured, Signal
from classifiers.normalise import Parsed, Parser, normalise_phrase, undouble
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
    }
)


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
    ) -> None:
        self._parser = parser or Parser()
        self._school_names = (*(n for n in school_names if n.strip()), "the school")
        files = sorted(BUILTIN_LEXICONS.glob("*.toml")) + list(extra_lexicon_files)
        entries = load_lexicons(files)
        self._entries = {e.id: e for e in _without(entries, suppress_rules)}
        self._phrases, self._matchers = self._build_matchers()
        self._elongated = _single_words(self._entries.values())

    def detect(self, item: Input) -> list[Signal]:
        """Return one signal per surviving lexicon match, spans in the original text."""
        parsed = self._parser.parse(item.text)
        hits = self._hits(parsed.doc)
        return [s for hit in _surviving(parsed, hits) for s in self._signals(parsed, hit)]

    def _build_matchers(self) -> tuple[Any, list[_Gated]]:
        from spacy.matcher import PhraseMatcher

        nlp = self._parser.nlp
        phrases = PhraseMatcher(nlp.vocab, attr="LOWER")
        matchers: list[_Gated] = []
        for entry in self._entries.values():
            if entry.phrases:
                texts = {normalise_phrase(t) for p in entry.phrases for t in self._expand(p)}
                docs = [self._parser.make_doc(t) for t in sorted(texts)]
                phrases.add(entry.id, docs)
            matchers.extend(_gated(nlp.vocab, entry, p) for p in entry.patterns)
        return phrases, matchers

    def _elongated_hits(self, doc: Any) -> list[tuple[int, int, int]]:
        """Elongated words ("noncee", "loserr"): a doubled letter where the lexicon has one."""
        strings = self._parser.nlp.vocab.strings
        hits: list[tuple[int, int, int]] = []
        for token in doc:
            if token.lower_ in self._elongated:
                continue  # the phrase matcher has found it already
            for entry_id in self._elongated.get(undouble(token.lower_), ()):
                hits.append((strings.add(entry_id), token.i, token.i + 1))
        return hits

    def _expand(self, phrase: str) -> list[str]:
        if "{school}" not in phrase:
            return [phrase]
        return [phrase.replace("{school}", name) for name in self._school_names]

    def _hits(self, doc: Any) -> list[_Hit]:
        vocab = self._parser.nlp.vocab
        raw = list(self._phrases(doc))
        raw.extend(self._elongated_hits(doc))
        words = {t.lower_ for t in doc}
        for gate, matcher in self._matchers:
            if gate is None or not gate.isdisjoint(words):
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


# One spaCy Matcher per token pattern, run only when the doc holds one of the words the
# pattern cannot match without (its "gate"): a Matcher pays for every pattern on every token,
# and most texts contain none of the gate words. None means "always run".
_Gated = tuple[frozenset[str] | None, Any]
_COMMON_WORDS = (
    "the a an i you u to all and of my me it is in on at for with this that he she his her"
)
_COMMON = frozenset(_COMMON_WORDS.split()) | {"him", "they", "them", "we", "be"}


def _gated(vocab: Any, entry: LexiconEntry, pattern: Sequence[Mapping[str, Any]]) -> _Gated:
    from spacy.matcher import Matcher

    matcher = Matcher(vocab)
    try:
        matcher.add(entry.id, [[dict(tok) for tok in pattern]])
    except (ValueError, KeyError, TypeError) as err:
        raise NotConfigured(f"{entry.source}: entry {entry.id!r}: bad pattern: {err}") from None
    return _gate(pattern), matcher


def _gate(pattern: Sequence[Mapping[str, Any]]) -> frozenset[str] | None:
    """The most selective set of words one required token of the pattern must be."""
    options = [words for tok in pattern if (words := _required_words(tok)) is not None]
    if not options:
        return None
    return min(options, key=lambda words: (len(words & _COMMON), len(words)))


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
        sentence = parsed.sentences[hit.start]
        if hit.entry.context and (sentence in aware or sentence - 1 in aware):
            continue
        out.append(hit)
    return out
