"""Mention detection in raw questions from the entity vocabulary and an alias table.

The rules (docs/linking.md has them with examples):

1. Surface forms: every entity's name with a trailing parenthetical removed ("Georgia (country)"
   -> "Georgia") and a trailing ", qualifier" removed when the qualifier is itself an entity's
   name ("Springfield, Illinois" -> "Springfield": the qualifier is a mention of its own, as in
   training; "Bonaire, Saint Eustatius and Saba" stays whole), plus every alias of the alias table.
2. Normalisation, the same for surface forms and questions: Unicode NFKD with combining marks
   dropped (accents), case folded, clause punctuation (``, ; : ! ?``) kept as its own token,
   every other non-alphanumeric character a space, whitespace collapsed. A possessive "'s" thus
   becomes a separate "s" token and never blocks a match ("tonga's" -> "tonga s").
3. Filters: a surface form shorter than ``min_chars`` (normalised) or in the stop-list (function
   words, question words, "us") is dropped, and counted.
4. Matching: every occurrence on token boundaries (an Aho–Corasick automaton over the normalised
   question), then longest first, leftmost among equals, non-overlapping.

A detected span keeps every entity that has the surface form (homonyms): the markers do not need
the entity (in evaluation mode the memory read chooses), the candidates are only reported.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Mapping

logger = logging.getLogger(__name__)

CLAUSE_PUNCTUATION = frozenset(",;:!?")
#: Words that are never a mention on their own (normalised form). Function words and question
#: words of English questions, plus "us" (the pronoun, not the country).
STOP_WORDS = frozenset("""
a an the of in on at to by for from with as and or but not no nor is are was were be been being
am do does did has have had it its this that these those there here what which who whom whose
where when why how whats wheres whos i me my we us our you your he him his she her they them their
s t d ll m re ve can could will would shall should may might must one some any all each
""".split())
DEFAULT_MIN_CHARS = 2
_PARENTHETICAL = re.compile(r"\s*\([^()]*\)\s*$")
_QUALIFIER = re.compile(r",\s[^,]+$")


@dataclass(frozen=True)
class DetectedMention:
    """A span of the original question (``text[start:end]``) and the entities with that form."""

    start: int
    end: int
    text: str
    candidates: tuple[int, ...]


_ASCII_TOKEN = re.compile(r"[a-z0-9]+|[,;:!?]")


def normalize(text: str) -> tuple[str, list[int], list[int]]:
    """The normalised text and, per normalised character, the original start/end offsets.

    Spaces of the output map to the position of the separator they replace; callers only map
    the first and last character of a match, which are never spaces.
    """
    return _normalize_ascii(text) if text.isascii() else _normalize_general(text)


def _normalize_general(text: str) -> tuple[str, list[int], list[int]]:
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []

    def space(at: int) -> None:
        if out and out[-1] != " ":
            out.append(" ")
            starts.append(at)
            ends.append(at)

    for i, ch in enumerate(text):
        if ch in CLAUSE_PUNCTUATION:
            space(i)
            out.append(ch)
            starts.append(i)
            ends.append(i + 1)
            space(i + 1)
            continue
        for piece in unicodedata.normalize("NFKD", ch):
            if unicodedata.combining(piece):
                continue
            for low in piece.casefold():
                if low.isalnum():
                    out.append(low)
                    starts.append(i)
                    ends.append(i + 1)
                else:
                    space(i)
    if out and out[-1] == " ":
        out.pop()
        starts.pop()
        ends.pop()
    return "".join(out), starts, ends


def _normalize_ascii(text: str) -> tuple[str, list[int], list[int]]:
    """:func:`normalize` for ASCII text (no accents, one character per character): the same
    result from a regex over the lowercased text, several times faster."""
    parts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for match in _ASCII_TOKEN.finditer(text.lower()):
        a, b = match.span()
        if parts:
            starts.append(a - 1)
            ends.append(a - 1)
        parts.append(match.group())
        starts.extend(range(a, b))
        ends.extend(range(a + 1, b + 1))
    return " ".join(parts), starts, ends


def normalize_text(text: str) -> str:
    """:func:`normalize` without the offsets (surface forms)."""
    if text.isascii():
        return " ".join(_ASCII_TOKEN.findall(text.lower()))
    return _normalize_general(text)[0]


def strip_parenthetical(name: str) -> str:
    """``"Georgia (U.S. state)"`` -> ``"Georgia"`` (repeatedly, for nested trailing groups)."""
    previous = None
    while previous != name:
        previous = name
        name = _PARENTHETICAL.sub("", name)
    return name.strip() or previous.strip()


def name_surface(name: str, qualifiers: frozenset[str] | None = None) -> str:
    """An entity name as a surface form: trailing parenthetical removed, and a trailing
    ", qualifier" removed when ``qualifiers`` (normalised entity names; None = any) has it."""
    name = strip_parenthetical(name)
    match = _QUALIFIER.search(name)
    if match is None or not name[:match.start()].strip():
        return name
    if qualifiers is not None and normalize_text(match.group(0)[1:]) not in qualifiers:
        return name
    return name[:match.start()].strip()


@dataclass
class SurfaceStats:
    """What building the table kept and dropped (logged; nothing is dropped silently)."""

    forms: int = 0
    dropped_short: int = 0
    dropped_stop_word: int = 0


class MentionDetector:
    """Longest non-overlapping surface-form matches on token boundaries (see the module doc).

    ``backend``: ``"ahocorasick"`` (pyahocorasick automaton, one pass over the question) or
    ``"ngram"`` (a dict lookup of every token n-gram up to the longest form; the simple
    alternative ``benchmarks/bench_mentions.py`` measures against).
    """

    def __init__(self, names: Mapping[int, str], aliases: Mapping[int, Iterable[str]] | None = None,
                 *, min_chars: int = DEFAULT_MIN_CHARS, stop_words: Iterable[str] = STOP_WORDS,
                 backend: str = "ahocorasick"):
        if backend not in ("ahocorasick", "ngram"):
            raise ValueError(f"backend must be 'ahocorasick' or 'ngram', got {backend!r}")
        self.backend = backend
        self.min_chars = min_chars
        self.stop_words = frozenset(stop_words)
        self.stats = SurfaceStats()
        table: dict[str, list[int]] = {}
        bare = {int(i): strip_parenthetical(name) for i, name in names.items()}
        normalised = {i: normalize_text(name) for i, name in bare.items()}
        qualifiers = frozenset(normalised.values())
        for entity_id, name in bare.items():
            if "," in name:  # maybe "name, qualifier": normalise the surface that remains
                self._add(table, normalize_text(name_surface(name, qualifiers)), entity_id)
            else:
                self._add(table, normalised[entity_id], entity_id)
        for entity_id, values in (aliases or {}).items():
            for value in values:
                self._add(table, normalize_text(value), int(entity_id))
        self.forms = {form: tuple(ids) for form, ids in table.items()}
        self.stats.forms = len(self.forms)
        self.max_tokens = max((form.count(" ") + 1 for form in self.forms), default=0)
        self._automaton = self._build_automaton() if backend == "ahocorasick" else None
        logger.info("Mention detector: %d surface forms (%d too short, %d stop words dropped)",
                    self.stats.forms, self.stats.dropped_short, self.stats.dropped_stop_word)

    def _add(self, table: dict[str, list[int]], form: str, entity_id: int) -> None:
        """Add a normalised surface form unless a filter drops it."""
        if len(form.replace(" ", "")) < self.min_chars:
            self.stats.dropped_short += 1
            return
        if form in self.stop_words:
            self.stats.dropped_stop_word += 1
            return
        ids = table.setdefault(form, [])
        if entity_id not in ids:
            ids.append(entity_id)

    def _build_automaton(self):
        import ahocorasick

        automaton = ahocorasick.Automaton()
        for form, ids in self.forms.items():
            automaton.add_word(form, (len(form), ids))
        if len(automaton):
            automaton.make_automaton()
        return automaton

    def __len__(self) -> int:
        return len(self.forms)

    def lookup(self, text: str) -> tuple[int, ...]:
        """The entities whose name or alias is ``text`` (normalised like the question), or ()."""
        return self.forms.get(normalize_text(text), ())

    def detect(self, text: str) -> list[DetectedMention]:
        """The mentions of ``text``, in text order."""
        norm, starts, ends = normalize(text)
        if not norm or not self.forms:
            return []
        matches = self._matches(norm)
        chosen: list[tuple[int, int, tuple[int, ...]]] = []
        taken = bytearray(len(norm))
        for a, b, ids in sorted(matches, key=lambda m: (m[0] - m[1], m[0])):
            if not any(taken[a:b]):
                taken[a:b] = b"\x01" * (b - a)
                chosen.append((a, b, ids))
        chosen.sort()
        return [DetectedMention(starts[a], ends[b - 1], text[starts[a]:ends[b - 1]], ids)
                for a, b, ids in chosen]

    def _matches(self, norm: str) -> list[tuple[int, int, tuple[int, ...]]]:
        """Every (start, end, ids) occurrence of a form in ``norm`` on token boundaries."""
        n = len(norm)
        found = []
        if self._automaton is not None:
            if not len(self._automaton):
                return []
            for last, (length, ids) in self._automaton.iter(norm):
                a, b = last - length + 1, last + 1
                if (a == 0 or norm[a - 1] == " ") and (b == n or norm[b] == " "):
                    found.append((a, b, ids))
            return found
        bounds = []
        pos = 0
        for token in norm.split(" "):
            bounds.append((pos, pos + len(token)))
            pos += len(token) + 1
        for i in range(len(bounds)):
            for j in range(i, min(len(bounds), i + self.max_tokens)):
                ids = self.forms.get(norm[bounds[i][0]:bounds[j][1]])
                if ids is not None:
                    found.append((bounds[i][0], bounds[j][1], ids))
        return found
