"""Pretraining data path: masking rules, token cache, items/collation and recall@k (no model)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edmem.data.markers import AlignmentError, encode_with_mentions
from edmem.data.tokenization import load_tokenizer, train_bpe_tokenizer
from edmem.errors import DataError
from edmem.pretraining.collate import PretrainCollator
from edmem.pretraining.corpus import TokenCache, iter_passages, open_or_build_cache
from edmem.data.entity_rows import EntityRows
from edmem.pretraining.dataset import PretrainDataset, row_map
from edmem.pretraining.masking import (IGNORE_INDEX, MaskingConfig, SpecialTokenIds, example_rng,
                                       mask_example, salient_spans)
from edmem.pretraining.metrics import PretrainMetrics, recall_hits

CORPUS = Path(__file__).resolve().parent / "fixtures" / "pretraining"

# A hand-made special-id set: 0..4 BART specials, 90/91 markers, text ids 5..89.
SPECIAL = SpecialTokenIds(bos=0, eos=2, pad=1, unk=3, mask=4, entity_start=90, entity_end=91, text_vocab_size=90)
S, E = 90, 91


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    texts = [json.loads(line)["text"] for line in (CORPUS / "train.jsonl").open()]
    return load_tokenizer(train_bpe_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=300))


def _encoder(tokenizer, max_length: int = 128):
    return functools.partial(encode_with_mentions, tokenizer, max_length=max_length, bos_prefix=True)


# ---------------------------------------------------------------------------------------------
# masking


def test_ssm_span_runs_from_start_marker_to_end_marker_or_eos() -> None:
    ids = np.array([0, 0, 10, S, 11, 12, E, 13, S, 14, E, S, 15, 16, 2, 1, 1])
    chosen = ids == S
    spans = salient_spans(ids, SPECIAL, chosen)
    assert np.flatnonzero(spans).tolist() == [4, 5, 9, 12, 13]  # markers, eos and pads excluded
    only_second = chosen & (np.arange(len(ids)) == 8)
    assert np.flatnonzero(salient_spans(ids, SPECIAL, only_second)).tolist() == [9]


def test_mlm_never_touches_special_tokens_and_labels_are_clean_input() -> None:
    ids = np.array([0, 0] + list(range(5, 60)) + [S, 61, 62, E, 3, 4, 2])
    config = MaskingConfig(mlm_probability=1.0, ssm_probability=0.0)
    out = mask_example(ids, SPECIAL, config, example_rng(0, 0, 0))
    special = np.isin(ids, SPECIAL.never_masked)
    assert (out.input_ids[special] == ids[special]).all()
    assert (out.input_ids[~special] == SPECIAL.mask).all()
    assert (out.labels == ids).all()  # loss on every token by default (loss_on_mask_tokens False)
    assert out.salient.sum() == 0


def test_mention_deletion_removes_one_whole_mention_from_the_encoder_only() -> None:
    ids = np.array([0, 0, 10, S, 11, 12, E, 13, S, 14, E, 2])
    config = MaskingConfig(mlm_probability=0.0, ssm_probability=1.0, mention_deletion_probability=1.0)
    seen = set()
    for index in range(20):
        out = mask_example(ids, SPECIAL, config, example_rng(0, 0, index))
        encoder = out.input_ids.tolist()
        assert encoder in ([0, 0, 10, 13, S, 14, E, 2], [0, 0, 10, S, 11, 12, E, 13, 2])
        assert out.kept is not None and ids[out.kept].tolist() == encoder  # the remaining mention is the cue
        assert (out.labels == ids).all() and out.salient.sum() == 0  # the decoder reconstructs all
        seen.add(len(encoder))
    assert seen == {8, 9}  # both mentions get deleted across examples
    single = np.array([0, 0, 10, S, 11, E, 2])  # one mention: nothing would be left as the cue
    assert mask_example(single, SPECIAL, config, example_rng(0, 0, 0)).kept is None


def test_mention_deletion_only_picks_deletable_mentions() -> None:
    ids = np.array([0, 0, 10, S, 11, 12, E, 13, S, 14, E, 2])
    config = MaskingConfig(mlm_probability=0.0, ssm_probability=0.0, mention_deletion_probability=1.0)
    second_only = np.zeros(len(ids), dtype=bool)
    second_only[8] = True  # the <E_s> of the second mention; the first is the cue
    for index in range(20):
        out = mask_example(ids, SPECIAL, config, example_rng(0, 0, index), deletable=second_only)
        assert out.input_ids.tolist() == [0, 0, 10, S, 11, 12, E, 13, 2]
    none = np.zeros(len(ids), dtype=bool)
    assert mask_example(ids, SPECIAL, config, example_rng(0, 0, 0), deletable=none).kept is None


def test_mention_deletion_off_reproduces_the_original_masks_exactly() -> None:
    ids = np.array([0, 0] + list(range(5, 40)) + [S, 61, 62, E, 13, S, 14, E, 2])
    for index in range(10):
        base = mask_example(ids, SPECIAL, MaskingConfig(), example_rng(3, 1, index))
        off = mask_example(ids, SPECIAL, MaskingConfig(mention_deletion_probability=0.0), example_rng(3, 1, index))
        assert (base.input_ids == off.input_ids).all() and (base.salient == off.salient).all()
        assert off.kept is None


def test_single_span_masks_exactly_one_mention_and_leaves_the_other_visible() -> None:
    ids = np.array([0, 0, 10, S, 11, 12, E, 13, S, 14, E, 2])
    # ssm_probability 1.0 would mask both mentions; the single span overrides it
    config = MaskingConfig(mlm_probability=0.0, ssm_probability=1.0, ssm_single_mention_probability=1.0)
    seen = set()
    for index in range(20):
        out = mask_example(ids, SPECIAL, config, example_rng(0, 0, index))
        assert out.input_ids.tolist() in ([0, 0, 10, S, 4, 4, E, 13, S, 14, E, 2],
                                          [0, 0, 10, S, 11, 12, E, 13, S, 4, E, 2])
        assert out.salient.sum() == 1 and out.kept is None and (out.labels == ids).all()
        seen.add(int(np.flatnonzero(out.salient)[0]))
    assert seen == {3, 8}  # either mention can be the one asked for
    single = np.array([0, 0, 10, S, 11, E, 2])  # one mention: the independent draw stays
    assert mask_example(single, SPECIAL, config, example_rng(0, 0, 0)).input_ids.tolist() == [0, 0, 10, S, 4, E, 2]


def test_single_span_off_reproduces_the_original_masks_exactly() -> None:
    ids = np.array([0, 0] + list(range(5, 40)) + [S, 61, 62, E, 13, S, 14, E, 2])
    for index in range(10):
        base = mask_example(ids, SPECIAL, MaskingConfig(), example_rng(3, 1, index))
        off = mask_example(ids, SPECIAL, MaskingConfig(ssm_single_mention_probability=0.0),
                           example_rng(3, 1, index))
        assert (base.input_ids == off.input_ids).all() and (base.salient == off.salient).all()
    with pytest.raises(ValueError, match="ssm_single_mention_probability"):
        MaskingConfig(ssm_single_mention_probability=1.5)


def test_memory_cue_deletes_one_mention_and_masks_the_other_as_its_cue() -> None:
    ids = np.array([0, 0, 10, S, 11, 12, E, 13, S, 14, E, 2])
    config = MaskingConfig(mlm_probability=0.0, ssm_probability=0.0, memory_cue_probability=1.0)
    seen = set()
    for index in range(20):
        out = mask_example(ids, SPECIAL, config, example_rng(0, 0, index))
        encoder = out.input_ids.tolist()
        assert encoder in ([0, 0, 10, 13, S, 4, E, 2], [0, 0, 10, S, 4, 4, E, 13, 2])  # cue's tokens masked
        assert out.cue is not None and out.kept is not None
        cue_at = int(np.flatnonzero(out.cue)[0])
        assert ids[cue_at] == S and out.cue.sum() == 1 and cue_at in out.kept  # the kept mention is the cue
        assert out.salient[cue_at] == 1 and out.salient.sum() == 1
        cue_tokens = [4, 5] if cue_at == 3 else [9]
        assert (out.labels[cue_tokens] == IGNORE_INDEX).all()  # hidden from the decoder input too
        rest = np.setdiff1d(np.arange(len(ids)), cue_tokens)
        assert (out.labels[rest] == ids[rest]).all()  # the decoder reconstructs everything else
        seen.add(cue_at)
    assert seen == {3, 8}


def test_memory_cue_sits_only_on_a_linked_mention_and_off_draws_nothing() -> None:
    ids = np.array([0, 0, 10, S, 11, 12, E, 13, S, 14, E, 2])
    config = MaskingConfig(mlm_probability=0.0, ssm_probability=0.0, memory_cue_probability=1.0)
    first_linked = np.zeros(len(ids), dtype=bool)
    first_linked[3] = True
    for index in range(10):
        out = mask_example(ids, SPECIAL, config, example_rng(0, 0, index), linked=first_linked)
        assert np.flatnonzero(out.cue).tolist() == [3] and out.input_ids.tolist() == [0, 0, 10, S, 4, 4, E, 13, 2]
    unlinked = mask_example(ids, SPECIAL, config, example_rng(0, 0, 0), linked=np.zeros(len(ids), dtype=bool))
    assert unlinked.cue is None and unlinked.kept is None  # nobody can carry the cue: plain masking
    for index in range(10):
        base = mask_example(ids, SPECIAL, MaskingConfig(), example_rng(3, 1, index))
        off = mask_example(ids, SPECIAL, MaskingConfig(memory_cue_probability=0.0), example_rng(3, 1, index))
        assert (base.input_ids == off.input_ids).all() and off.cue is None


def test_ssm_masks_whole_mentions_and_flags_their_start_marker() -> None:
    ids = np.array([0, 0, 10, S, 11, 12, E, 13, S, 14, E, 2])
    out = mask_example(ids, SPECIAL, MaskingConfig(mlm_probability=0.0, ssm_probability=1.0), example_rng(0, 0, 0))
    assert out.input_ids.tolist() == [0, 0, 10, S, 4, 4, E, 13, S, 4, E, 2]
    assert out.salient.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]


def test_masking_rates_on_a_large_batch_with_a_fixed_seed() -> None:
    rng = np.random.default_rng(1)
    mention = [S, 20, 21, 22, E]
    mlm_total = mlm_hit = ssm_total = ssm_hit = 0
    config = MaskingConfig()  # 0.3 / 0.5, all selected tokens -> <mask>
    for index in range(400):
        body = list(rng.integers(5, 90, size=20)) + mention + list(rng.integers(5, 90, size=20)) + mention
        ids = np.array([0, 0] + body + [2])
        out = mask_example(ids, SPECIAL, config, example_rng(123, 0, index))
        starts = np.flatnonzero(ids == S)
        ssm_total += len(starts)
        ssm_hit += int(out.salient.sum())
        inside = salient_spans(ids, SPECIAL, out.salient.astype(bool))
        plain = ~np.isin(ids, SPECIAL.never_masked) & ~inside
        mlm_total += int(plain.sum())
        mlm_hit += int((out.input_ids[plain] == SPECIAL.mask).sum())
        assert (out.input_ids[inside] == SPECIAL.mask).all()
        assert set(out.input_ids.tolist()) <= set(ids.tolist()) | {SPECIAL.mask}
    assert abs(mlm_hit / mlm_total - 0.3) < 0.02
    assert abs(ssm_hit / ssm_total - 0.5) < 0.05


def test_masks_depend_only_on_seed_epoch_and_index() -> None:
    ids = np.array([0, 0] + list(range(5, 80)) + [2])
    a = mask_example(ids, SPECIAL, MaskingConfig(), example_rng(42, 1, 7)).input_ids
    b = mask_example(ids, SPECIAL, MaskingConfig(), example_rng(42, 1, 7)).input_ids
    c = mask_example(ids, SPECIAL, MaskingConfig(), example_rng(42, 2, 7)).input_ids
    assert (a == b).all() and not (a == c).all()


def test_random_replacement_and_loss_on_mask_tokens() -> None:
    ids = np.array([0, 0] + [50] * 400 + [2])
    config = MaskingConfig(mlm_probability=1.0, mlm_random_replace=1.0, loss_on_mask_tokens=True)
    out = mask_example(ids, SPECIAL, config, example_rng(0, 0, 0))
    body = out.input_ids[2:-1]
    assert (body < SPECIAL.text_vocab_size).all() and len(set(body.tolist())) > 20
    assert out.labels[:2].tolist() == [IGNORE_INDEX, IGNORE_INDEX] and out.labels[-1] == IGNORE_INDEX
    assert (out.labels[2:-1] == 50).all()
    with pytest.raises(ValueError):
        MaskingConfig(mlm_probability=1.5)


def test_special_ids_from_tokenizer(tokenizer) -> None:
    special = SpecialTokenIds.from_tokenizer(tokenizer)
    assert (special.bos, special.pad, special.eos, special.unk) == (0, 1, 2, 3)
    assert special.mask == tokenizer.mask_token_id
    assert (special.entity_start, special.entity_end) == (len(tokenizer) - 2, len(tokenizer) - 1)


# ---------------------------------------------------------------------------------------------
# corpus + cache


def test_passages_stream_and_reject_bad_lines(tmp_path: Path) -> None:
    passages = list(iter_passages(CORPUS / "train.jsonl"))
    assert len(passages) == 48 and all(p.mentions for p in passages)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "text": "abc", "hyperlinks": {"link_offset": [0], "link_length": [1, 2], '
                   '"link_target": [10]}}\n')
    with pytest.raises(DataError, match="line 1"):
        list(iter_passages(bad))


def test_token_cache_is_built_once_and_reused(tokenizer, tmp_path: Path) -> None:
    settings = {"max_seq_length": 128, "add_another_bos": True}
    calls = []

    def counting_encoder(text, mentions, max_length=128):
        calls.append(text)
        return _encoder(tokenizer, max_length)(text, mentions)

    first = open_or_build_cache(CORPUS / "train.jsonl", counting_encoder, tokenizer, settings, tmp_path)
    assert len(calls) == 48 and len(first) == 48
    second = open_or_build_cache(CORPUS / "train.jsonl", counting_encoder, tokenizer, settings, tmp_path)
    assert len(calls) == 48 and second.directory == first.directory  # reused: nothing re-encoded
    third = open_or_build_cache(CORPUS / "train.jsonl", functools.partial(counting_encoder, max_length=32), tokenizer,
                                {**settings, "max_seq_length": 32}, tmp_path)
    assert third.directory != first.directory and len(calls) == 96

    passage = next(iter_passages(CORPUS / "train.jsonl"))
    ids, links = second[0]
    want_ids, want_links = _encoder(tokenizer)(passage.text, passage.mentions)
    assert ids.tolist() == want_ids and links.tolist() == want_links
    assert max(len(third[i][0]) for i in range(len(third))) == 32
    reopened = TokenCache(first.directory)
    assert reopened[5][0].tolist() == first[5][0].tolist()


def test_unalignable_passages_are_skipped_and_counted(tokenizer, tmp_path: Path) -> None:
    def flaky(text, mentions):
        if "Kelm" in text:
            raise AlignmentError("cannot align")
        return _encoder(tokenizer)(text, mentions)

    cache = open_or_build_cache(CORPUS / "train.jsonl", flaky, tokenizer, {"flaky": True}, tmp_path)
    dropped = cache.report["skipped"]["unalignable_spans"]
    assert dropped > 0 and len(cache) + dropped == 48


# ---------------------------------------------------------------------------------------------
# items and batches


def test_items_and_batches(tokenizer, tmp_path: Path) -> None:
    cache = open_or_build_cache(CORPUS / "train.jsonl", _encoder(tokenizer), tokenizer, {}, tmp_path)
    special = SpecialTokenIds.from_tokenizer(tokenizer)
    dataset = PretrainDataset(cache, special, MaskingConfig(), row_map(EntityRows.identity(20)), seed=3)
    item = dataset[0]
    clean, entity_ids = cache[0]
    assert item["labels"] == clean.tolist()
    starts = clean == special.entity_start
    links, salient = np.array(item["input_entity_link"]), np.array(item["salient"])
    assert (links[starts] == np.where(entity_ids[starts] < 20, entity_ids[starts], 0)).all()
    assert (links[~starts] == 0).all() and (salient[~starts] == 0).all()
    assert item["output_entity_link"] == item["input_entity_link"]

    batch = PretrainCollator(special.pad)([dataset[0], dataset[1], dataset[2]])
    lengths = [len(cache[i][0]) for i in range(3)]
    assert batch["input_ids"].shape == (3, max(lengths))
    for row, length in enumerate(lengths):
        assert batch["attention_mask"][row].sum() == length
        assert (batch["labels"][row, length:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][row, length:] == special.pad).all()
    assert batch["index"] == [0, 1, 2]
    assert torch.equal(batch["input_entity_link"], batch["output_entity_link"])


def test_row_maps_send_unknown_ids_to_nil() -> None:
    ids = np.array([0, 3, 12, 15, 999, -1])
    assert row_map(EntityRows.identity(16))(ids).tolist() == [0, 3, 12, 15, 0, 0]
    assert row_map(EntityRows.compact_from_ids([999, 12]))(ids).tolist() == [0, 3, 10, 0, 11, 0]


# ---------------------------------------------------------------------------------------------
# recall@k


def test_recall_at_k_by_hand() -> None:
    topk = torch.tensor([[5, 7, 9], [7, 5, 9], [9, 8, 7], [1, 2, 3]])
    gold = torch.tensor([5, 5, 7, 4])
    assert recall_hits(topk, gold, ks=(1, 2, 3)) == {1: 1, 2: 2, 3: 3}

    metrics = PretrainMetrics(ks=(1, 2, 3))
    salient = torch.tensor([1, 1, 1, 0])  # the last mention was not SSM-masked: not counted
    metrics.add_recall([topk, topk.flip(1), topk], gold, salient)
    metrics.add_recall([topk[:1]] * 3, torch.tensor([0]), torch.tensor([1]))  # NIL gold: ignored
    metrics.add_lm(mean_nll=2.0, num_tokens=10)
    metrics.add_lm(mean_nll=1.0, num_tokens=30)
    merged = PretrainMetrics(ks=(1, 2, 3))
    merged.load_state(metrics.state() * 1)  # the all-reduce round trip keeps everything
    result = merged.compute()
    assert result["salient_mentions"] == 3
    assert result["encoder_recall@1"] == pytest.approx(100 / 3)
    assert result["encoder_recall@3"] == pytest.approx(100.0)
    assert result["decoder_recall@1"] == pytest.approx(100 / 3)  # flipped: [9,7,5],[9,5,7],[7,8,9]
    assert result["decoder_recall@2"] == pytest.approx(200 / 3)
    assert result["lm_loss"] == pytest.approx((20 + 30) / 40)
    assert result["perplexity"] == pytest.approx(np.exp(1.25))
