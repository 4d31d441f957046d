"""Span aligner heuristics (spec §4.3), marker insertion incl. Q12 (§4.4), encoding/truncation."""

from __future__ import annotations

import pytest

from edmem.data.formats import Mention
from edmem.data.markers import (AlignmentError, align_spans, encode_with_mentions,
                                insert_markers, wrap_and_truncate)
from edmem.data.tokenization import load_tokenizer

G = "\u0120"


@pytest.fixture(scope="module")
def toy_tok():
    from pathlib import Path
    return load_tokenizer(Path(__file__).parent / "fixtures/data/toy-bpe")


def test_no_mentions_all_nil():
    assert align_spans(["a", G + "b"], "a b", []) == [0, 0]


@pytest.mark.parametrize("tokens, text, mention, labels", [
    (["a", G + "big", G + "cat"], "a big cat", Mention(2, 3, 7), [0, 7, 0]),      # plain
    (["a", G + "big", G + "cat"], "a big cat", Mention(1, 3, 7), [0, 7, 0]),      # offset on the space
    (["a", G + "bigcat"], "a bigcat", Mention(5, 3, 7), [0, 7]),                 # starts mid-token
    (["a", G + "big", "cat", G + "x"], "a bigcat x", Mention(2, 4, 7), [0, 7, 7, 0]),  # ends mid-token
    (["a", "b", G + "c"], "a b c", Mention(2, 1, 7), [0, 7, 0]),                  # space without 'Ġ'
    ([G + "caf", "Ã", "©", G + "x"], " café x", Mention(1, 4, 7), [7, 7, 7, 0]),  # split UTF-8 char
])
def test_aligner_heuristics(tokens, text, mention, labels):
    assert align_spans(tokens, text, [mention]) == labels


def test_aligner_several_mentions_and_errors():
    tokens = ["a", G + "big", G + "red", G + "cat"]
    assert align_spans(tokens, "a big red cat", [Mention(2, 3, 5), Mention(10, 3, 6)]) == [0, 5, 0, 6]
    with pytest.raises(AlignmentError, match="ends on a space"):
        align_spans(tokens, "a big red cat", [Mention(2, 4, 5)])
    with pytest.raises(AlignmentError, match="does not match"):
        align_spans(["a", "z"], "a b", [Mention(0, 1, 5)])


def test_insert_markers_rules():
    tokens = ["a", "b", "c", "d", "e", "f"]
    marked, labels = insert_markers(tokens, [0, 5, 5, 6, 0, 7])
    assert marked == ["a", "<E_s>", "b", "c", "<E_e>", "<E_s>", "d", "<E_e>", "e", "<E_s>", "f", "<E_e>"]
    assert labels == [0, 5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0]
    assert insert_markers(["a", "b"], [0, 0]) == (["a", "b"], [0, 0])


def test_wrap_and_truncate():
    assert wrap_and_truncate([5, 6, 7], [0, 9, 0], 4, 0, 2) == ([0, 5, 6, 2], [0, 0, 9, 0])
    with pytest.raises(ValueError):
        wrap_and_truncate([], [], 1, 0, 2)


def test_encode_non_ascii_mention(toy_tok):
    text = "who sang with café müller?"
    ids, links = encode_with_mentions(toy_tok, text, [Mention(14, 11, 33)], 64, bos_prefix=True)
    tokens = toy_tok.convert_ids_to_tokens(ids)
    start = tokens.index("<E_s>")
    assert tokens[:2] == ["<s>", "<s>"] and tokens[-1] == "</s>" and tokens.count("<E_s>") == 1
    inner = tokens[start + 1:tokens.index("<E_e>")]
    surface = toy_tok.convert_tokens_to_string(inner)
    assert surface == " café müller"
    assert links[start] == 33 and sum(1 for x in links if x) == 1 and len(ids) == len(links)


def test_q12_adjacent_mentions_same_entity_merge(toy_tok):
    text = "where is mount quill located?"
    ids, links = encode_with_mentions(toy_tok, text, [Mention(9, 5, 24), Mention(15, 5, 24)], 64,
                                      bos_prefix=True)
    tokens = toy_tok.convert_ids_to_tokens(ids)
    assert tokens.count("<E_s>") == 1 and tokens.count("<E_e>") == 1
    inner = tokens[tokens.index("<E_s>") + 1:tokens.index("<E_e>")]
    assert toy_tok.convert_tokens_to_string(inner) == " mount quill"
    # different entities back to back: <E_e> <E_s> between them
    ids, _ = encode_with_mentions(toy_tok, text, [Mention(9, 5, 24), Mention(15, 5, 25)], 64,
                                  bos_prefix=True)
    assert toy_tok.convert_ids_to_tokens(ids).count("<E_s>") == 2


def test_passage_encoding_without_question_steps(toy_tok):
    text = "The tower of Velmar is tall"
    ids, links = encode_with_mentions(toy_tok, text, [Mention(13, 6, 23)], 128,
                                      id_to_row=lambda i: i + 100)
    tokens = toy_tok.convert_ids_to_tokens(ids)
    assert tokens[0] == "<s>" and tokens[1] != "<s>" and tokens[-2:] != ["?", "</s>"]
    assert links[tokens.index("<E_s>")] == 123 and sorted(set(links)) == [0, 123]


@pytest.mark.parametrize("max_length", [2, 3, 5, 8, 12])
def test_truncation_keeps_lengths_equal(toy_tok, max_length):
    text = "which river flows through zorbania city?"
    ids, links = encode_with_mentions(toy_tok, text, [Mention(26, 13, 21)], max_length, bos_prefix=True)
    assert len(ids) == len(links) <= max_length
    assert ids[0] == 0 and ids[-1] == 2 and links[0] == links[-1] == 0
