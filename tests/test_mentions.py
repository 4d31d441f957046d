"""Mention detection rules (docs/linking.md) on small vocabularies of our own."""

from __future__ import annotations

import pytest

from edmem.inference.mentions import MentionDetector, name_surface, normalize, normalize_text

NAMES = {10: "Tonga", 11: "São Tomé and Príncipe", 12: "Springfield, Illinois", 13: "Illinois",
         14: "Georgia (country)", 15: "Georgia (U.S. state)", 16: "US", 17: "Bonaire, Saint Eustatius and Saba",
         18: "New York City", 19: "New York", 20: "A", 21: "Côte d'Ivoire"}
ALIASES = {10: ["Kingdom of Tonga"], 16: ["United States", "us"], 18: ["NYC"]}


@pytest.fixture(params=["ahocorasick", "ngram"])
def detector(request) -> MentionDetector:
    return MentionDetector(NAMES, ALIASES, backend=request.param)


def spans(detector: MentionDetector, text: str) -> list[tuple[str, tuple[int, ...]]]:
    found = detector.detect(text)
    for m in found:
        assert text[m.start:m.end] == m.text
    return [(m.text, m.candidates) for m in found]


def test_normalisation_keeps_offsets():
    text = "The Kingdom of Tonga's capital, São Tomé?"
    norm, starts, ends = normalize(text)
    assert norm == "the kingdom of tonga s capital , sao tome ?"
    assert len(starts) == len(ends) == len(norm)
    a = norm.index("sao tome")
    assert text[starts[a]:ends[a + len("sao tome") - 1]] == "São Tomé"


def test_surface_forms_of_names():
    assert name_surface("Georgia (U.S. state)") == "Georgia"
    assert name_surface("Springfield, Illinois") == "Springfield"
    assert name_surface("Springfield, Illinois", frozenset({"texas"})) == "Springfield, Illinois"
    assert normalize_text("Côte d'Ivoire") == "cote d ivoire"


def test_case_accents_punctuation_possessive(detector):
    assert spans(detector, "the KINGDOM of tonga's capital?") == [("KINGDOM of tonga", (10,))]
    assert spans(detector, "sao tome and principe") == [("sao tome and principe", (11,))]
    assert spans(detector, "what about cote d'ivoire?") == [("cote d'ivoire", (21,))]
    assert spans(detector, "tonga?") == [("tonga", (10,))]


def test_qualifier_is_its_own_mention_unless_not_an_entity(detector):
    assert spans(detector, "what state is springfield, illinois in?") == \
        [("springfield", (12,)), ("illinois", (13,))]
    assert spans(detector, "bonaire, saint eustatius and saba") == \
        [("bonaire, saint eustatius and saba", (17,))]


def test_longest_non_overlapping_on_word_boundaries(detector):
    assert spans(detector, "new york city or new york or nyc") == \
        [("new york city", (18,)), ("new york", (19,)), ("nyc", (18,))]
    assert spans(detector, "tongan food in newyork") == []        # no match inside words


def test_homonyms_stop_words_and_short_forms(detector):
    assert spans(detector, "georgia") == [("georgia", (14, 15))]
    assert spans(detector, "tell us about a place in the united states") == \
        [("united states", (16,))]
    assert detector.stats.dropped_stop_word == 2      # "US" (name) and "us" (alias)
    assert detector.stats.dropped_short == 1          # "A"


def test_both_backends_agree_and_no_forms_is_fine():
    text = "is new york city in the united states, like springfield, illinois?"
    a = MentionDetector(NAMES, ALIASES, backend="ahocorasick").detect(text)
    b = MentionDetector(NAMES, ALIASES, backend="ngram").detect(text)
    assert a == b and len(a) == 4
    assert MentionDetector({}, backend="ahocorasick").detect(text) == []
    with pytest.raises(ValueError, match="backend"):
        MentionDetector(NAMES, backend="trie")


def test_ascii_fast_path_equals_the_general_one():
    import random
    import string

    from edmem.inference.mentions import _normalize_ascii, _normalize_general

    rng = random.Random(0)
    alphabet = string.ascii_letters + string.digits + " ,;:!?'.-()\t"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        fast, general = _normalize_ascii(text), _normalize_general(text)
        assert fast[0] == general[0], text
        assert [(a, b) for c, a, b in zip(*fast) if c != " "] == \
            [(a, b) for c, a, b in zip(*general) if c != " "], text


def test_normalize_text_equals_normalize():
    for text in ("The Kingdom of Tonga's capital, São Tomé?", "  U.S.A.; (Paris)!  ", "", "İstanbul"):
        assert normalize_text(text) == normalize(text)[0]
