"""Light de-obfuscation of post text, keeping a map back to the original offsets.

``normalise("N 0 n c e!!")`` gives the text ``"nonce!!"`` and, for every character of that
text, the index of the original character it came from. The steps, in order:

* zero-width and invisible characters (U+200B..U+200D, U+2060, U+FEFF, soft hyphen, ...) are
  dropped; Cyrillic and Greek look-alikes ("ѕӏаg", "κill") and full-width or stylised letters
  become Latin; accents are removed; everything is lower case;
* three or more single letters separated by spaces, dots, dashes, stars or underscores are
  joined ("k i l l", "n.o.n.c.e");
* leetspeak digits and symbols inside words become letters ("k1ll", "sl@g");
* runs of one letter are cut to two ("killllll" → "kill").

Detectors match on the normalised text and report spans in the original text.

``Parser`` wraps one blank English spaCy pipeline. It tokenises only (no pipeline components
run); sentence boundaries are worked out when a detector first asks for them. It caches the
last normalised text and the last parse, so several detectors classifying the same text
normalise and tokenise it once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

__all__ = [
    "Normalised",
    "Parsed",
    "Parser",
    "Trigger",
    "Triggers",
    "normalise",
    "normalise_phrase",
    "undouble",
]

# Invisible characters used to break words up: zero-width space/non-joiner/joiner, word
# joiner, BOM, soft hyphen, invisible operators, Mongolian vowel separator, bidi marks.
_ZERO_WIDTH = frozenset(
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\u2061\u2062\u2063\u2064\u180e\u200e\u200f\u034f"
)
# Digits and symbols people use for letters; only replaced next to a letter in the same word.
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
_PUNCTUATION = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-"}
# The common Cyrillic and Greek look-alikes of Latin letters (after Unicode's confusables.txt).
_LOOKALIKES = """
    аa вb еe кk мm нh оo рp сc тt уy хx ѕs іi јj һh ԁd ӏl ԛq ԝw ьb гr пn ѵv ɡg
    Аa Вb Еe Кk Мm Нh Оo Рp Сc Тt Уy Хx Ѕs Іi Јj Үy Ԝw Ӏl
    αa βb εe ηn ιi κk νv οo ρp τt υu χx ωw γy ϲc ϳj
    Αa Βb Εe Ζz Ηh Ιi Κk Μm Νn Οo Ρp Τt Υy Χx Ϲc
"""
_HOMOGLYPHS = {
    **{pair[0]: pair[1] for pair in _LOOKALIKES.split()},
    "ı": "i",
    "ℓ": "l",
    "ß": "ss",
}
# Three or more single letters separated by one or two spaces/dots/dashes/stars/underscores.
_SPACED = re.compile(
    r"(?<![\w@$])(?:[a-z013457@$](?:[ .*_-]{1,2}))(?:[a-z013457@$](?:[ .*_-]{1,2})){1,}"
    r"[a-z013457@$](?![\w@$])"
)
_LEET_WORD = re.compile(r"[^ \n\t]*[013457@$!][^ \n\t]*")
_NOT_LEET_WORD = re.compile(r"://|^www\.|^[^@]+@[^@]+\.[a-z]")  # links and email addresses
_NUMBERISH = re.compile(r"[\d.,:]+(?:am|pm|st|nd|rd|th|s)?")
_INTERIOR_LEET = re.compile(r"(?<=[a-z])([013457]+)([a-z]+)")
_SUFFIXES = frozenset({"s", "st", "nd", "rd", "th", "am", "pm", "ths"})
_REPEAT = re.compile(r"([^\W\d_])\1{2,}")
_DOUBLE = re.compile(r"([^\W\d_])\1")
_WORD = re.compile(r"[a-z]+")
_DOUBLE_AZ = re.compile(r"([a-z])\1")

Chars = tuple[str, list[int]]  # text and, per character, its offset in the original


@dataclass(frozen=True, kw_only=True)
class Normalised:
    """Normalised text and, per character, the offset of its source character."""

    text: str
    offsets: tuple[int, ...]
    length: int  # of the original text
    source: str = ""  # the original text

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a ``[start, end)`` span of the normalised text to the original text.

        The end runs on over the original letters cut from a run at the end of the match
        ("nonceeee"), never over invisible characters after it.
        """
        first = self.offsets[start] if start < len(self.offsets) else self.length
        if end <= start:
            return first, first
        last = self.offsets[end - 1] + 1
        following = self.offsets[end] if end < len(self.offsets) else self.length
        if following > last and self.source:
            last = _run_on(self.source, last, following)
        return first, last

    @cached_property
    def words(self) -> frozenset[str]:
        """The words a tokenizer can cut from the text, undoubled too ("loserr" → "loser").

        Runs of letters a-z, and the pieces spaCy cuts some of them into ("dont" → "do",
        "nt"); every token of letters only is one of these.
        """
        words = self.runs.copy()
        glued = _glued()
        for word in [w for w in words if w in glued]:
            words.update(glued[word])
        words.update(_DOUBLE_AZ.sub(r"\1", w) for w in self.doubled)
        return frozenset(words)

    @cached_property
    def runs(self) -> set[str]:
        """The runs of letters a-z in the text."""
        return set(_WORD.findall(self.text))

    @cached_property
    def doubled(self) -> frozenset[str]:
        """The runs of letters a-z in the text that hold a doubled letter ("loserr")."""
        return frozenset(w for w in self.runs if _DOUBLE_AZ.search(w))


def _run_on(source: str, last: int, following: int) -> int:
    letter = source[last - 1].lower()
    while last < following and (source[last].lower() == letter or source[last] in _ZERO_WIDTH):
        last += 1
    while source[last - 1] in _ZERO_WIDTH:
        last -= 1
    return last


def normalise(text: str) -> Normalised:
    """Normalise ``text`` for matching; see the module docstring."""
    chars = _fold_text(text)
    chars = _join_spaced(chars)
    chars = _unleet(chars)
    chars = _collapse_repeats(chars)
    return Normalised(text=chars[0], offsets=tuple(chars[1]), length=len(text), source=text)


def undouble(word: str) -> str:
    """Collapse doubled letters too ("noncee" → "nonce"), for elongated single words."""
    return _DOUBLE.sub(r"\1", word)


def normalise_phrase(phrase: str) -> str:
    """Normalise a lexicon phrase the same way as post text, so both sides compare equal."""
    return normalise(phrase).text


def _fold_text(text: str) -> Chars:
    if text.isascii():  # the common case: one character in, one out
        return text.lower(), list(range(len(text)))
    out: list[str] = []
    offsets: list[int] = []
    for i, ch in enumerate(text):
        folded = _fold(ch)
        out.append(folded)
        offsets.extend([i] * len(folded))
    return "".join(out), offsets


@lru_cache(maxsize=4096)
def _fold(ch: str) -> str:
    if ch.isascii():
        return ch.lower()
    if ch in _ZERO_WIDTH or unicodedata.category(ch) == "Cf":
        return ""
    ch = _PUNCTUATION.get(ch, ch)
    ch = _HOMOGLYPHS.get(ch, ch)
    if not ch.isascii():
        compat = unicodedata.normalize("NFKC", ch)  # "ｋ" → "k", "𝐤" → "k", "ﬁ" → "fi"
        base = unicodedata.normalize("NFKD", compat)[:1]  # "é" → "e"
        if compat.isascii() and compat.isalnum():
            ch = compat
        elif base.isascii() and base.isalpha():
            ch = base
        else:
            ch = _HOMOGLYPHS.get(compat, ch)
    return ch.lower()


def _keep(chars: Chars, drop: set[int]) -> Chars:
    text, offsets = chars
    kept = [i for i in range(len(text)) if i not in drop]
    return "".join(text[i] for i in kept), [offsets[i] for i in kept]


def _join_spaced(chars: Chars) -> Chars:
    text = chars[0]
    drop: set[int] = set()
    for match in _SPACED.finditer(text):
        letters = [i for i in range(match.start(), match.end()) if text[i] not in " .*_-"]
        if text[letters[0]] in "ai" and len(letters) >= 5:
            letters = letters[1:]  # "you are a n o n c e": the article stays a word of its own
        if sum(text[i].isalpha() for i in letters) < 2:
            continue
        keep = set(letters)
        drop.update(i for i in range(letters[0], letters[-1]) if i not in keep)
    return _keep(chars, drop) if drop else chars


def _unleet(chars: Chars) -> Chars:
    text, offsets = chars
    out: list[str] | None = None
    for match in _LEET_WORD.finditer(text):
        word = match.group()
        if not _word_has_letters(word) or _NOT_LEET_WORD.search(word):
            continue
        for j, c in enumerate(word):
            if c in _LEET and _is_leet(word, j):
                out = out if out is not None else list(text)
                out[match.start() + j] = _LEET[c]
    return ("".join(out), offsets) if out is not None else chars


def _is_leet(word: str, j: int) -> bool:
    c = word[j]
    before = word[j - 1] if j > 0 else " "
    after = word[j + 1] if j + 1 < len(word) else " "
    if c in "!$" and not before.isalpha():
        return False  # "hi!" and "$5" stay; "k!ll", "a$$" change
    if c == "!" and not after.isalpha():
        return False
    return before.isalpha() or after.isalpha() or before in _LEET


def _word_has_letters(word: str) -> bool:
    letters = sum(map(str.isalpha, word))
    digits = sum(map(str.isdigit, word))
    # "3pm", "y9", "4th" keep their digits: a word needs more letters than digits + 1,
    # or leet digits between two letters ("u53l3ss", "p4k1s"; not "year7s", "y10th").
    if letters < 2 or _NUMBERISH.fullmatch(word):
        return False
    return letters > digits + 1 or any(
        m.group(2) not in _SUFFIXES or m.end() < len(word) or not word.startswith("y")
        for m in _INTERIOR_LEET.finditer(word)
    )


def _collapse_repeats(chars: Chars) -> Chars:
    """Collapse runs of three or more of one letter to two ("killllll" → "kill")."""
    drop: set[int] = set()
    for match in _REPEAT.finditer(chars[0]):
        drop.update(range(match.start() + 2, match.end()))
    return _keep(chars, drop) if drop else chars


# One required token: alternative words, and a regex of alternative substrings (or None).
Need = tuple[frozenset[str], "re.Pattern[str] | None"]


@dataclass(frozen=True, kw_only=True)
class Trigger:
    """What a normalised text must hold for a phrase or token pattern to match in it.

    Each need is one required token, given as alternative words (compared with the text's
    ``Normalised.words``) and substrings (searched for in the text as they are); every need
    must be met. No needs: always met. A cheap test run before tokenising.
    """

    needs: tuple[Need, ...] = ()

    def found_in(self, norm: Normalised) -> bool:
        """True when ``norm`` may match: every need has a word or substring in it."""
        words = norm.words
        for alternatives, substrings in self.needs:
            if alternatives.isdisjoint(words) and (
                substrings is None or not substrings.search(norm.text)
            ):
                return False
        return True

    @classmethod
    def of_tokens(cls, tokens: Iterable[Iterable[str]]) -> Trigger:
        """The trigger for required tokens, each given as its alternatives."""
        needs: list[Need] = []
        for alternatives in tokens:
            words = frozenset(t for t in alternatives if _WORD.fullmatch(t))
            subs = sorted({t for t in alternatives if not _WORD.fullmatch(t)})
            needs.append((words, re.compile("|".join(map(re.escape, subs))) if subs else None))
        return cls(needs=tuple(needs))

    def anchor(self) -> frozenset[str] | None:
        """The most selective need made of words only (None: there is none)."""
        options = [words for words, subs in self.needs if words and subs is None]
        if not options:
            return None
        return min(options, key=lambda words: (len(words & _COMMON), len(words), sorted(words)))


class Triggers:
    """Many triggers, indexed by word: is any of them met by a text?"""

    def __init__(self, triggers: Iterable[Trigger]) -> None:
        self._by_word: dict[str, list[Trigger]] = {}
        self._other: list[Trigger] = []
        for trigger in triggers:
            anchor = trigger.anchor()
            if anchor is None:
                self._other.append(trigger)
                continue
            for word in anchor:
                self._by_word.setdefault(word, []).append(trigger)

    def found_in(self, norm: Normalised) -> bool:
        """True when at least one trigger is met by ``norm``."""
        for word in norm.words & self._by_word.keys():
            if any(trigger.found_in(norm) for trigger in self._by_word[word]):
                return True
        return any(trigger.found_in(norm) for trigger in self._other)


@lru_cache(maxsize=1)
def _glued() -> dict[str, tuple[str, ...]]:
    """Runs of letters spaCy's English tokenizer cuts into pieces: "gonna" → ("gon", "na")."""
    from spacy.attrs import ORTH
    from spacy.lang.en import English

    out: dict[str, tuple[str, ...]] = {}
    for text, tokens in English.Defaults.tokenizer_exceptions.items():
        pieces = tuple(str(t[ORTH]).lower() for t in tokens)
        if len(pieces) > 1 and _WORD.fullmatch(text.lower()):
            out[text.lower()] = pieces
    return out


# Frequent words: a poor choice of anchor for a trigger.
_COMMON_WORDS = """
    the a an i you u to all and of my me it is in on at for with this that he she his her him
    they them we be your ur are so not no do get got go have has had was were will would can
    could should just like what when where how who why now then there here out up down back
    one if or but as by from about into over only want need going gonna take make know see
    come right time people good day nt s m re ve ll d t
"""
_COMMON = frozenset(_COMMON_WORDS.split())


@dataclass(frozen=True, kw_only=True)
class Parsed:
    """One text: the original, its normalised form and the spaCy Doc of the normalised form."""

    original: str
    norm: Normalised
    doc: Any  # spacy.tokens.Doc

    def char_span(self, start_token: int, end_token: int) -> tuple[int, int]:
        """Original-text span of tokens ``[start_token, end_token)`` of ``doc``."""
        span = self.doc[start_token:end_token]
        return self.norm.to_original(span.start_char, span.end_char)

    @cached_property
    def sentences(self) -> tuple[int, ...]:
        """Per token, the 0-based index of its sentence (spaCy's sentencizer rules)."""
        return _sentence_ids(self.doc)

    def sentence_of_char(self, offset: int) -> int:
        """Sentence index of the token covering normalised character ``offset``."""
        token = self.doc.char_span(offset, offset + 1, alignment_mode="expand")
        return self.sentences[token.start] if token is not None and len(token) else 0


class Parser:
    """Blank English spaCy tokenizer, loaded on first use, with a one-text cache."""

    def __init__(self) -> None:
        self._nlp: Any = None
        self._last: Parsed | None = None
        self._last_norm: Normalised | None = None

    @property
    def nlp(self) -> Any:
        """The spaCy Language object (built lazily; no model download is needed)."""
        if self._nlp is None:
            import spacy

            nlp = spacy.blank("en")
            nlp.add_pipe("sentencizer")
            self._nlp = nlp
        return self._nlp

    def make_doc(self, text: str) -> Any:
        """Tokenise ``text`` without running the pipeline (for phrase patterns)."""
        return self.nlp.make_doc(text)

    def normalise(self, text: str) -> Normalised:
        """``normalise(text)``; the last result is cached."""
        last = self._last_norm  # one read: classify may run in worker threads
        if last is not None and last.source == text:
            return last
        norm = normalise(text)
        self._last_norm = norm
        return norm

    def parse(self, text: str) -> Parsed:
        """Normalise and tokenise ``text``; the last result is cached."""
        last = self._last
        if last is not None and last.original == text:
            return last
        norm = self.normalise(text)
        parsed = Parsed(original=text, norm=norm, doc=self.nlp.make_doc(norm.text))
        self._last = parsed
        return parsed


def _sentence_ids(doc: Any) -> tuple[int, ...]:
    """Sentence numbers as spaCy's Sentencizer sets them, without running it on every text."""
    from spacy.attrs import IS_PUNCT, ORTH

    punct = _punct_ids()
    ids: list[int] = []
    current = 0
    seen_period = False
    for orth, is_punct in doc.to_array([ORTH, IS_PUNCT]).tolist():
        in_punct = orth in punct
        if seen_period and not is_punct and not in_punct:
            current += 1
            seen_period = False
        elif in_punct:
            seen_period = True
        ids.append(current)
    return tuple(ids)


@lru_cache(maxsize=1)
def _punct_ids() -> frozenset[int]:
    from spacy.pipeline import Sentencizer
    from spacy.strings import get_string_id

    return frozenset(get_string_id(c) for c in Sentencizer.default_punct_chars)
