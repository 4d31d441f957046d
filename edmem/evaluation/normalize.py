"""Answer normalisation and string exact match, as the original ``exact_match.py`` defines them.

Kept in one place so that every consumer (the two evaluation commands, the in-process scorer used
by training and the demo) agrees on what "correct" means. Pure Python: no numpy, no torch.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Sequence

from edmem.constants import ENTITY_END_TOKEN, ENTITY_START_TOKEN, PAD_TOKEN


_PUNCTUATION = frozenset(string.punctuation)  # ASCII only, like the original
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# Greedy on purpose: from the first "(" that has a ")" at the very end ("A (b) c (d)" -> "A ").
_TRAILING_PARENTHETICAL = re.compile(r"\(.+\)$")
_MARKERS = re.compile(r"<E_s>|<E_e>")
_MARKERS_AND_PAD = re.compile(r"<E_s>|<E_e>|<pad>")


def normalize_answer(text: str) -> str:
    """NFD -> lower -> drop ASCII punctuation -> articles to spaces -> collapse whitespace.

    The order matters for parity: NFD runs first, so accented letters become base letter plus a
    combining mark, and the combining mark (not ASCII punctuation) survives.
    """
    text = unicodedata.normalize("NFD", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str | Sequence[str]) -> bool:
    """True iff the normalised prediction equals the (or any) normalised gold answer.

    An empty gold list never matches (the original returns 0 for it).
    """
    if isinstance(gold, str):
        return normalize_answer(prediction) == normalize_answer(gold)
    target = normalize_answer(prediction)
    return any(target == normalize_answer(answer) for answer in gold)


def strip_parenthetical(name: str) -> str:
    """Remove a trailing disambiguation such as ``"Mercury (planet)"`` -> ``"Mercury"`` and strip.

    Applied by the original only to entity-linking (list) predictions and to the entity vocabulary,
    never to plain-string predictions (quirk Q33).
    """
    return _TRAILING_PARENTHETICAL.sub("", name).strip()


def is_pure_entity(text: str) -> bool:
    """A "pure entity" output is exactly one ``<E_s> ... <E_e>`` span covering the whole string."""
    return (text.startswith(ENTITY_START_TOKEN) and text.endswith(ENTITY_END_TOKEN)
            and text.count(ENTITY_START_TOKEN) == 1 and text.count(ENTITY_END_TOKEN) == 1)


def remove_markers_and_pad(text: str) -> str:
    """Drop ``<E_s>``, ``<E_e>`` and ``<pad>`` and strip: the text that is compared to the answers."""
    return _MARKERS_AND_PAD.sub("", text).strip()


def remove_pad(text: str) -> str:
    """Drop ``<pad>`` and strip (the ``-ans_link`` pass does this *before* its purity test, Q33)."""
    return text.replace(PAD_TOKEN, "").strip()


def remove_markers(text: str) -> str:
    """Drop ``<E_s>`` and ``<E_e>`` and strip."""
    return _MARKERS.sub("", text).strip()


def vocabulary_key(name: str) -> str:
    """How the original stores an entity-vocabulary name for the "valid entity name" test:
    lowercased, trailing parenthetical removed, stripped. Predictions are *not* lowercased before
    the lookup (an upper-case prediction is never "valid")."""
    return strip_parenthetical(name.lower())
