"""Light de-obfuscation of post text, keeping a map back to the original offsets.

``normalise("N 0 n c e!!")`` gives the text ``"nonce!!"`` (lower case, spaced letters joined,
leetspeak digits inside words turned into letters, runs of a letter cut to two) and, for
every character of that text, the index of the original character it came from. Detectors
match on the normalised text and report spans in the original text.

``Parser`` wraps one blank English spaCy pipeline (tokenizer + sentencizer) and caches the
last parse, so several detectors classifying the same text tokenise it once.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

__all__ = ["Normalised", "Parsed", "Parser", "normalise", "normalise_phrase", "undouble"]

_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
# Digits and symbols people use for letters; only replaced next to a letter in the same word.
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
_CONFUSABLE = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-"}
# Four or more single letters separated by single spaces/dots: "n o n c e", "k.i.l.l".
_SPACED = re.compile(r"(?<![\w@$])(?:[a-z013457@$][ .*_-]){3,}[a-z013457@$](?![\w@$])")

_LEET_CHAR = re.compile(r"[013457@$!]")
_NUMBERISH = re.compile(r"[\d.,:]+(?:am|pm|st|nd|rd|th|s)?")
_REPEAT = re.compile(r"([^\W\d_])\1{2,}")
_DOUBLE = re.compile(r"([^\W\d_])\1")

Chars = tuple[str, list[int]]  # text and, per character, its offset in the original


@dataclass(frozen=True, kw_only=True)
class Normalised:
    """Normalised text and, per character, the offset of its source character."""

    text: str
    offsets: tuple[int, ...]
    length: int  # of the original text

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a ``[start, end)`` span of the normalised text to the original text.

        The end runs on over original characters dropped inside the match ("nonceeee").
        """
        first = self.offsets[start] if start < len(self.offsets) else self.length
        if end <= start:
            return first, first
        following = self.offsets[end] if end < len(self.offsets) else self.length
        return first, max(self.offsets[end - 1] + 1, following)


def normalise(text: str) -> Normalised:
    """Normalise ``text`` for matching; see the module docstring."""
    chars = _fold_text(text)
    chars = _join_spaced(chars)
    chars = _unleet(chars)
    chars = _collapse_repeats(chars)
    return Normalised(text=chars[0], offsets=tuple(chars[1]), length=len(text))


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


def _fold(ch: str) -> str:
    if ch in _ZERO_WIDTH:
        return ""
    ch = _CONFUSABLE.get(ch, ch)
    if ord(ch) > 127:
        base = unicodedata.normalize("NFKD", ch)[:1]
        if base.isascii() and base.isalpha():
            ch = base
    return ch.lower()


def _keep(chars: Chars, drop: set[int]) -> Chars:
    text, offsets = chars
    kept = [i for i in range(len(text)) if i not in drop]
    return "".join(text[i] for i in kept), [offsets[i] for i in kept]


def _join_spaced(chars: Chars) -> Chars:
    text = chars[0]
    drop: set[int] = set()
    for match in _SPACED.finditer(text):
        start = match.start()
        if text[start] in "ai" and match.end() - start >= 9:
            start += 2  # "you are a n o n c e": the article stays a word of its own
        if sum(ch.isalpha() for ch in text[start : match.end()]) < 2:
            continue
        drop.update(range(start + 1, match.end(), 2))
    return _keep(chars, drop) if drop else chars


def _unleet(chars: Chars) -> Chars:
    text, offsets = chars
    if not _LEET_CHAR.search(text):
        return chars
    out = list(text)
    for match in _LEET_CHAR.finditer(text):
        i = match.start()
        if _is_leet(text, i):
            out[i] = _LEET[text[i]]
    return "".join(out), offsets


def _is_leet(text: str, i: int) -> bool:
    c = text[i]
    before = text[i - 1] if i > 0 else " "
    after = text[i + 1] if i + 1 < len(text) else " "
    if c in "!$" and not before.isalpha():
        return False  # "hi!" and "$5" stay; "k!ll", "a$$" change
    if c == "!" and not after.isalpha():
        return False
    near_letter = before.isalpha() or after.isalpha() or before in _LEET
    return near_letter and _word_has_letters(text, i)


def _word_has_letters(text: str, i: int) -> bool:
    left = max(text.rfind(c, 0, i) for c in " \n\t") + 1
    ends = [e for e in (text.find(c, i) for c in " \n\t") if e != -1]
    word = text[left : min(ends) if ends else len(text)]
    letters = sum(ch.isalpha() for ch in word)
    digits = sum(ch.isdigit() for ch in word)
    # "3pm", "y9", "4th" keep their digits: a word needs more letters than digits + 1.
    return letters >= 2 and letters > digits + 1 and not _NUMBERISH.fullmatch(word)


def _collapse_repeats(chars: Chars) -> Chars:
    """Collapse runs of three or more of one letter to two ("killllll" → "kill")."""
    drop: set[int] = set()
    for match in _REPEAT.finditer(chars[0]):
        drop.update(range(match.start() + 2, match.end()))
    return _keep(chars, drop) if drop else chars


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

    sentences: tuple[int, ...]  # per token, the 0-based index of its sentence

    def sentence_of_char(self, offset: int) -> int:
        """Sentence index of the token covering normalised character ``offset``."""
        token = self.doc.char_span(offset, offset + 1, alignment_mode="expand")
        return self.sentences[token.start] if token is not None and len(token) else 0


class Parser:
    """Blank English spaCy pipeline with a sentencizer, loaded on first use."""

    def __init__(self) -> None:
        self._nlp: Any = None
        self._last: Parsed | None = None

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

    def parse(self, text: str) -> Parsed:
        """Normalise and parse ``text``; the last result is cached."""
        last = self._last  # one read: classify may run in worker threads
        if last is not None and last.original == text:
            return last
        norm = normalise(text)
        doc = self.nlp(norm.text)
        parsed = Parsed(original=text, norm=norm, doc=doc, sentences=_sentence_ids(doc))
        self._last = parsed
        return parsed


def _sentence_ids(doc: Any) -> tuple[int, ...]:
    ids: list[int] = []
    current = -1
    for token in doc:
        if token.i == 0 or token.is_sent_start:
            current += 1
        ids.append(current)
    return tuple(ids)
