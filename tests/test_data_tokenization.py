"""Tokenizer loading, markers, byte encoder, tiny-BPE training, fast == slow on WQ questions."""

from __future__ import annotations

import pytest

from edmem.data.formats import load_el_split
from edmem.data.examples import normalize_question
from edmem.data.tokenization import (byte_level, bytes_to_unicode, load_tokenizer, marker_ids,
                                     train_bpe_tokenizer)


def test_bytes_to_unicode_is_a_printable_bijection():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord(" ")] == "\u0120" and table[ord("a")] == "a" and table[0] == "\u0100"
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    assert byte_level(" é") == "\u0120Ã©"


def test_byte_encoder_matches_the_tokenizer(fixtures_dir):
    slow = load_tokenizer(fixtures_dir / "data/toy-bpe", fast=False)
    assert slow.byte_encoder == bytes_to_unicode()


@pytest.mark.parametrize("fast", [True, False])
def test_toy_directory_and_markers(fixtures_dir, fast):
    tok = load_tokenizer(fixtures_dir / "data/toy-bpe", fast=fast)
    base = len(tok) - 2
    assert marker_ids(tok) == (base, base + 1)
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.convert_tokens_to_ids(["<mask>"]) == [4]
    # the markers are never split by the BPE
    tokens = tok.tokenize("a <E_s> b <E_e>")
    assert "<E_s>" in tokens and "<E_e>" in tokens


def test_marker_ids_require_markers(fixtures_dir):
    from transformers import BartTokenizerFast
    plain = BartTokenizerFast.from_pretrained(str(fixtures_dir / "data/toy-bpe"))
    with pytest.raises(ValueError, match="lacks the <E_s>"):
        marker_ids(plain)


def test_train_bpe_tokenizer(tmp_path):
    texts = ["the red fox jumps over the lazy dog?", "where does the red fox live?"] * 3
    out = train_bpe_tokenizer(texts, tmp_path / "bpe", vocab_size=290)
    assert {p.name for p in out.iterdir()} >= {"vocab.json", "merges.txt", "config.json",
                                               "tokenizer_config.json"}
    for fast in (True, False):
        tok = load_tokenizer(out, fast=fast)
        assert len(tok) == 292 and marker_ids(tok) == (290, 291)
        assert tok.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]) == [0, 1, 2, 3, 4]
        assert "".join(tok.tokenize(" the red fox")).replace("\u0120", " ") == " the red fox"
    explicit = load_tokenizer(vocab_file=out / "vocab.json", merges_file=out / "merges.txt")
    assert explicit.tokenize(" the red fox") == load_tokenizer(out).tokenize(" the red fox")


def test_load_tokenizer_arguments():
    with pytest.raises(ValueError):
        load_tokenizer()
    with pytest.raises(ValueError):
        load_tokenizer(vocab_file="v.json")


def test_fast_equals_slow_on_all_wq_questions(parity_dir, wq_dir):
    """The fast tokenizer may replace the original's slow one: same tokens, incl. the <s> trick."""
    files = dict(vocab_file=parity_dir / "tiny-bart_vocab.json",
                 merges_file=parity_dir / "tiny-bart_merges.txt")
    slow, fast = load_tokenizer(**files, fast=False), load_tokenizer(**files, fast=True)
    questions = [e.question for split in ("train", "dev", "test") for e in
                 load_el_split(wq_dir / "openqa", "wq", "entity_linking/el_", split, log=None)[0]]
    assert len(questions) == 5464
    for question in questions:
        for text in (normalize_question(question, False), normalize_question(question, True)):
            expected = slow.tokenize("<s> " + text)
            assert expected[0] == "<s>" and expected[1].startswith("\u0120")
            assert fast.tokenize("<s> " + text) == expected, text
            assert ["<s>", *fast.tokenize(" " + text)] == expected, text
