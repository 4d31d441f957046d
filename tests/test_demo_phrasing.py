"""The demo's question generator and its held-out splits: frames, fillers, noise, pretraining dev."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from edmem.demo.corpus import build_corpus
from edmem.demo.knowledge_base import build_knowledge_base
from edmem.demo.phrasing import (LEXICON, RELATION_FRAMES, count_realisations, frames_of,
                                 phrasing_counts, question_template, realise, split_frames)
from edmem.demo.questions import (EVAL_GROUPS, HELDOUT_BOTH, HELDOUT_FACT, HELDOUT_PHRASING, SEEN,
                                  build_questions, check_phrasing_split, pair_key)
from edmem.errors import DataError


@pytest.fixture(scope="module")
def kb():
    return build_knowledge_base(num_cities=80, homonyms_per_name=0, ambiguous_names=())


@pytest.fixture(scope="module")
def questions(kb):
    return build_questions(kb, seed=3, unlinkable_fraction=0)


def test_frames_are_dealt_whole_and_disjoint_per_relation():
    split = split_frames(seed=0)
    for relation in RELATION_FRAMES:
        texts = {s: {f.text for f in split.frames[s][relation]} for s in ("train", "dev", "test")}
        assert texts["train"] and texts["dev"] and texts["test"], relation
        assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"]
        assert not texts["dev"] & texts["test"]
        assert sum(len(t) for t in texts.values()) == len(frames_of(relation))
    # one frame text, one split, whichever relation uses it
    where: dict[str, set[str]] = {}
    for s, by_rel in split.frames.items():
        for frames in by_rel.values():
            for f in frames:
                where.setdefault(f.text, set()).add(s)
    assert all(len(v) == 1 for v in where.values())
    assert not set(split.prefixes["train"]) & set(split.prefixes["test"])
    assert split_frames(seed=0) == split and split_frames(seed=1) != split


def test_realisations_use_the_lexicon_and_are_deterministic():
    frame = next(f for f in frames_of("country_currency") if "<WH> <N>" in f.text)
    texts = {realise(frame, random.Random(i)) for i in range(300)}
    words = " ".join(texts)
    for synonym in ("money", "cash", "currency"):
        assert synonym in words
    for wh in ("which", "what kind of", "what type of"):
        assert wh in words
    assert all("{s}" in t and "<" not in t and "[" not in t for t in texts)
    assert len(texts) <= count_realisations(frame)
    assert realise(frame, random.Random(7)) == realise(frame, random.Random(7))
    assert "tongue" in LEXICON["country_language"]["N"]


def test_fillers_and_noise_appear_at_their_rates():
    split = split_frames(seed=0)
    frames = split.frames["train"]["country_language"]
    rng = random.Random(0)
    made = [question_template(frames[i % len(frames)], rng, split.prefixes["train"], split.suffixes["train"])
            for i in range(2000)]
    no_mark = sum(not t.endswith("?") for t, _ in made) / len(made)
    no_article = sum(not keep for _, keep in made) / len(made)
    prefixed = sum(any(t.startswith(p + " ") for p in split.prefixes["train"]) for t, _ in made) / len(made)
    assert 0.18 < no_mark < 0.32 and 0.22 < no_article < 0.38 and 0.1 < prefixed < 0.3
    assert not any(t.startswith(p) for t, _ in made for p in split.prefixes["test"])


def test_question_groups_follow_the_fact_and_frame_splits(questions):
    splits = questions.splits
    assert Counter(r["group"] for r in splits["train"]) == Counter({SEEN: len(splits["train"])})
    for split in ("dev", "test"):
        groups = Counter(r["group"] for r in splits[split])
        assert set(groups) == set(EVAL_GROUPS), groups
    fact_split = {(f.subject, f.relation, f.object): s for f, s in questions.fact_split.items()}
    train_frames = {r["frame"] for r in splits["train"]}
    for split in ("dev", "test"):
        for r in splits[split]:
            fact = (r["subject_entity"][0], r["relation"], r["answer_entity"][0][0])
            held_fact = r["group"] in (HELDOUT_FACT, HELDOUT_BOTH)
            assert (fact_split[fact] == split) == held_fact, r
            assert (r["frame"] in train_frames) == (r["group"] == HELDOUT_FACT), r
    check_phrasing_split(splits)


def test_phrasing_check_catches_a_train_frame_in_a_held_out_group(questions):
    splits = {s: list(rows) for s, rows in questions.splits.items()}
    probe = next(r for r in splits["test"] if r["group"] == HELDOUT_PHRASING)
    splits["train"] = splits["train"] + [dict(probe, id="leak", group=SEEN)]
    with pytest.raises(DataError):
        check_phrasing_split(splits)


def test_pretraining_dev_has_no_el_test_fact(kb, questions):
    test_pairs = {pair_key(f) for f, s in questions.fact_split.items() if s == "test"}
    assert test_pairs
    _, dev_all = build_corpus(kb, seed=3, dev_fraction=1.0)
    _, dev = build_corpus(kb, seed=3, dev_fraction=1.0, dev_excluded_pairs=test_pairs)

    def pairs(passages):
        out = set()
        for p in passages:
            t = p["hyperlinks"]["link_target"]
            out |= {frozenset((a, b)) for a in t for b in t if a != b}
        return out

    assert pairs(dev_all) & test_pairs, "the check must be able to fail"
    assert dev and not pairs(dev) & test_pairs


def test_counts_cover_every_relation_and_split():
    counts = phrasing_counts(split_frames(seed=0))
    for s in ("train", "dev", "test"):
        for relation in RELATION_FRAMES:
            assert counts[s][relation]["frames"] >= 1 and counts[s][relation]["texts"] >= counts[s][relation]["frames"]
