"""EL items (§4.5), answer draws, collation (§4.6), the Dataset, and parity with the original."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edmem.data.collate import ELCollator
from edmem.data.dataset import ELDataset
from edmem.data.examples import (ELEncodingOptions, build_el_item, choose_answer_entity,
                                 encode_question, example_from_text, lowercase_keep_length,
                                 normalize_question)
from edmem.data.formats import load_el_examples, load_el_split
from edmem.data.tokenization import load_tokenizer

FIELDS = ("input_ids", "input_entity_link", "decoder_input_ids", "output_entity_link", "labels")
PARITY_ROWS = [0, 3, 6, 4]


@pytest.fixture(scope="module")
def toy_tok():
    return load_tokenizer(Path(__file__).parent / "fixtures/data/toy-bpe")


def tiny_tok(parity_dir: Path, fast: bool = True):
    return load_tokenizer(vocab_file=parity_dir / "tiny-bart_vocab.json",
                          merges_file=parity_dir / "tiny-bart_merges.txt", fast=fast)


def test_question_normalisation():
    assert normalize_question("Who Is X", do_cased=False) == "who is x?"
    assert normalize_question("Who Is X?", do_cased=True) == "Who Is X?"
    # Q14 fix: 'İ' lowercases to two characters in Python; it is kept so offsets stay valid
    assert lowercase_keep_length("İstanbul ABC") == "İstanbul abc"
    assert lowercase_keep_length("ÉCOLE") == "école"


def test_choose_answer_entity_follows_numpy_choice():
    entities = [(31, "A"), (32, "B"), (31, "A")]
    assert choose_answer_entity([(9, "x")], np.random.RandomState(0)) == 9
    ours = [choose_answer_entity(entities, np.random.RandomState(s)) for s in range(20)]
    theirs = [entities[np.random.RandomState(s).choice(3)][0] for s in range(20)]
    assert ours == theirs
    ids = [e for e, _ in entities]
    assert ours == [int(np.random.RandomState(s).choice(ids)) for s in range(20)]


@pytest.mark.parametrize("prepend, bos, dec_head", [(True, True, None), (False, True, [0, 0]),
                                                    (False, False, [0])])
def test_item_variants(toy_tok, prepend, bos, dec_head):
    opts = ELEncodingOptions(max_input_length=40, add_another_bos=bos,
                             prepend_question_in_decoder_input=prepend)
    example = example_from_text("x", "where is mount quill", [(9, 11, 24)], [(20, "Zorbania")])
    ids, links = encode_question(toy_tok, example, opts)
    assert (ids[:2] == [0, 0]) == bos and toy_tok.convert_ids_to_tokens(ids)[-2:] == ["?", "</s>"]
    e_s = toy_tok.convert_tokens_to_ids("<E_s>")
    item = build_el_item(example, ids, links, opts, e_s, is_training=True, rng=None)
    head = ids[:-1] if dec_head is None else dec_head
    assert item["decoder_input_ids"] == head + [e_s, 2] == item["labels"]
    link_head = links[:-1] if dec_head is None else links[:len(dec_head)]
    assert item["output_entity_link"] == link_head + [20, 0]
    assert item["input_entity_link"] == links and links[ids.index(e_s)] == 24
    eval_item = build_el_item(example, ids, links, opts, e_s, is_training=False)
    assert set(eval_item) == {"id", "input_ids", "decoder_input_ids"}


def test_unalignable_span_is_a_data_error(toy_tok):
    from edmem.errors import DataError
    example = example_from_text("bad", "a big red cat", [(2, 4, 5)])  # ends on a space
    with pytest.raises(DataError, match="question 'bad'.*ends on a space"):
        encode_question(toy_tok, example, ELEncodingOptions())


def test_question_without_links(toy_tok):
    opts = ELEncodingOptions()
    ids, links = encode_question(toy_tok, example_from_text("n", "how tall is the tower?"), opts)
    assert ids[:2] == [0, 0] and ids[-1] == 2 and set(links) == {0} and len(links) == len(ids)


def test_collate_padding_rules():
    items = [
        {"id": "a", "input_ids": [0, 5, 2], "input_entity_link": [0, 9, 0],
         "decoder_input_ids": [0, 5, 7, 2], "output_entity_link": [0, 9, 11, 0],
         "labels": [0, 5, 7, 2]},
        {"id": "b", "input_ids": [0, 2], "input_entity_link": [0, 0],
         "decoder_input_ids": [0, 7, 2], "output_entity_link": [0, 12, 0], "labels": [0, 7, 2]},
    ]
    batch = ELCollator()(items)
    assert batch["id"] == ["a", "b"]
    assert batch["input_ids"].tolist() == [[0, 5, 2], [0, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["input_entity_link"].tolist() == [[0, 9, 0], [0, 0, 0]]
    assert batch["decoder_input_ids"].tolist() == [[2, 0, 5, 7], [1, 2, 0, 7]]
    assert batch["decoder_attention_mask"].tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
    assert batch["output_entity_link"].tolist() == [[0, 0, 9, 11], [0, 0, 0, 12]]
    assert batch["labels"].tolist() == [[0, 5, 7, 2], [-100, 0, 7, 2]]
    assert all(batch[k].dtype == torch.int64 for k in batch if k != "id")
    eval_batch = ELCollator()([{k: v for k, v in it.items() if k in ("id", "input_ids",
                                                                     "decoder_input_ids")}
                               for it in items])
    assert set(eval_batch) == {"id", "input_ids", "attention_mask", "decoder_input_ids",
                               "decoder_attention_mask"}
    with pytest.raises(ValueError, match="mixes"):
        ELCollator()([items[0], {"id": "c", "input_ids": [0, 2], "decoder_input_ids": [0, 2]}])


def test_dataset_caches_tokenization_and_redraws(fixtures_dir, toy_tok):
    examples, _ = load_el_split(fixtures_dir / "data/openqa", "toy", "entity_linking/el_", "train",
                                log=None)
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(toy_tok, name)

        def tokenize(self, text):
            calls.append(text)
            return toy_tok.tokenize(text)

    ds = ELDataset(examples, Counting(), ELEncodingOptions(), is_training=True, seed=1,
                   id_to_row=lambda i: i + 1000)
    answers = {ds[1]["output_entity_link"][-2] for _ in range(30)}
    assert answers == {1031, 1032} and len(calls) == 1
    item = ds[0]
    assert item["input_entity_link"][item["input_ids"].index(300)] == 1021  # <E_s> is id 300
    assert len(calls) == 2 and len(ds) == 3


# --------------------------------------------------------------------- parity with the original

@pytest.mark.parametrize("fast", [True, False])
def test_parity_items_and_batches(parity_dir, fast):
    args = json.loads((parity_dir / "args.json").read_text())
    opts = ELEncodingOptions.from_args(args)
    tok = tiny_tok(parity_dir, fast)
    examples, report = load_el_examples(parity_dir / "data/el_wq-train.jsonl", is_training=True,
                                        entity_vocab_size=args["entity_vocab_size"], log=None)
    assert report.kept == 20
    for is_training, name in ((True, "train"), (False, "eval")):
        ds = ELDataset(examples, tok, opts, is_training=is_training, rng=np.random.RandomState(3518))
        items = [ds[i] for i in PARITY_ROWS]
        reference = json.loads((parity_dir / f"items_{name}.json").read_text())
        for ours, ref in zip(items, reference):
            assert ours["id"] == ref["id"]
            for field in FIELDS:
                assert ours.get(field) == ref.get(field), (ref["id"], field)
        if is_training:
            assert [it["output_entity_link"][-2] for it in items][1:3] == [18, 41]
        batch = ELCollator()(items)
        ref_batch = torch.load(parity_dir / f"batch_{name}.pt", weights_only=True)
        assert set(batch) == set(ref_batch)
        for key, value in ref_batch.items():
            if key == "id":
                assert batch[key] == value
            else:
                assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key


def test_wq_3267_markers_and_all_wq_encode(parity_dir, wq_dir):
    tok = tiny_tok(parity_dir)
    opts = ELEncodingOptions(max_input_length=50)
    e_s, e_e = tok.convert_tokens_to_ids(["<E_s>", "<E_e>"])
    total = 0
    for split in ("train", "dev", "test"):
        examples, _ = load_el_split(wq_dir / "openqa", "wq", "entity_linking/el_", split, log=None)
        for example in examples:
            ids, links = encode_question(tok, example, opts)
            assert len(ids) == len(links) <= 50 and ids[0] == 0 and ids[-1] == 2
            assert all((x != 0) == (i == e_s) for i, x in zip(ids, links))
            if not example.mentions:
                assert ids[:2] == [0, 0] and not any(links)
            if example.id == "3267":
                starts = [links[p] for p, i in enumerate(ids) if i == e_s]
                assert starts == [23485, 5138]
                assert ids[ids.index(e_s, ids.index(e_s) + 1) - 1] == e_e
            if split == "test" and example.id == "37":
                tokens = tok.convert_ids_to_tokens(ids)
                inner = [tok.convert_tokens_to_string(tokens[p + 1:tokens.index("<E_e>", p)]).strip()
                         for p, t in enumerate(tokens) if t == "<E_s>"]
                assert inner == ["timezone", "utah"]
            total += 1
    assert total == 5464
