"""The shared normaliser, the parenthetical stripping of list predictions and the purity test."""

from __future__ import annotations

import pytest

from edmem.evaluation.normalize import (exact_match, is_pure_entity, normalize_answer,
                                        remove_markers_and_pad, remove_pad, strip_parenthetical,
                                        vocabulary_key)


@pytest.mark.parametrize("raw, expected", [
    ("Hello,  World!", "hello world"),                  # ASCII punctuation, whitespace collapse
    ("The Ombrian Republic", "ombrian republic"),       # leading article
    ("a cat and an owl", "cat and owl"),                # articles anywhere
    ("Theatre of Anatolia", "theatre of anatolia"),     # \b: words that merely start with "the"/"an"
    ("forty-two", "fortytwo"),                          # hyphen is punctuation: deleted, not a space
    ("rock 'n' roll", "rock n roll"),
    ("  tabs\tand\nnewlines ", "tabs and newlines"),
    ("The-A-Team", "theateam"),                        # punctuation goes first: words glue together
    ("caf\u00e9", "cafe\u0301"),                         # NFD: base letter + combining accent, kept
    ("\u00c9COLE", "e\u0301cole"),
    ("don\u2019t \u2013 stop", "don\u2019t \u2013 stop"),  # non-ASCII punctuation is not removed
    ("", ""),
])
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_nfd_makes_composed_and_decomposed_forms_equal_but_keeps_accents() -> None:
    assert exact_match("Caf\u00e9 Lumi\u00e8re", ["Cafe\u0301 Lumie\u0300re"])
    assert not exact_match("Cafe Lumiere", ["Caf\u00e9 Lumi\u00e8re"])


def test_exact_match_lists_and_strings() -> None:
    assert exact_match("the verno lake", ["Lake Verno", "Verno Lake"])
    assert not exact_match("verno", ["Lake Verno"])
    assert not exact_match("anything", [])          # empty gold list never matches
    assert exact_match("Lake Verno.", "lake verno")  # a plain-string gold is compared directly


@pytest.mark.parametrize("raw, expected", [
    ("Mercury (planet)", "Mercury"),
    ("Ombria (country) (old)", "Ombria"),          # greedy: from the first "(" to the final ")"
    ("A (b) c (d)", "A"),
    ("Paris (band) tour", "Paris (band) tour"),    # not at the end: kept
    ("(untitled)", ""),
    ("Lake Verno ()", "Lake Verno ()"),            # ".+" needs at least one character
    ("Saltmere", "Saltmere"),
])
def test_strip_parenthetical(raw: str, expected: str) -> None:
    assert strip_parenthetical(raw) == expected


@pytest.mark.parametrize("text, pure", [
    ("<E_s> lake verno <E_e>", True),
    ("<E_s>  jamaican english <E_e>", True),
    ("<E_s> port <E_e> <E_s> saltmere <E_e>", False),  # two spans
    ("<E_s> ombria <E_e><pad>", False),                # trailing pad: not pure before pad removal
    (" <E_s> ombria <E_e>", False),                    # not stripped before the test
    ("ombria", False),
    ("<E_s> ombria", False),
])
def test_is_pure_entity(text: str, pure: bool) -> None:
    assert is_pure_entity(text) is pure


def test_pad_removal_order_q33() -> None:
    text = "<E_s> ombrian republic <E_e><pad><pad>"
    assert not is_pure_entity(text)                 # first pass of exact_match.py
    assert is_pure_entity(remove_pad(text))         # the -ans_link pass removes <pad> first
    assert remove_markers_and_pad(text) == "ombrian republic"


def test_vocabulary_key() -> None:
    assert vocabulary_key("Lake Verno (Tarsia)") == "lake verno"
    assert vocabulary_key("Caf\u00e9 Lumi\u00e8re") == "caf\u00e9 lumi\u00e8re"   # lowercased, no NFD
