"""The answer-type prior (edmem.inference.answer_types): its view of a question, the fit, the
reranking, the file, and where it acts — run_QA training/prediction and the EntityLinker."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import el_tiny
from edmem.data.formats import ELExample, Mention
from edmem.errors import DataError
from edmem.inference.answer_types import (ANSWER_TYPES, MENTION_WORD, AnswerTypePrior, fit_from_examples,
                                          load_answer_types, question_words, rerank_predictions)
from edmem.inference.linker import EntityLinker
from edmem.inference.model_dir import load_model_dir
from edmem.run_qa import main as run_qa
from edmem.testing import build_tiny_model_dir


def _span(question: str, subject: str) -> list[tuple[int, int]]:
    start = question.index(subject)
    return [(start, start + len(subject))]


TRAIN = [("what currency is used in japan?", "japan", "currency"),
         ("the money of peru", "peru", "currency"),
         ("what language is spoken in peru?", "peru", "language"),
         ("the tongue of japan", "japan", "language"),
         ("which continent is chad in?", "chad", "continent")]
TYPES = {10: "currency", 11: "currency", 20: "language", 21: "language", 30: "continent"}


@pytest.fixture()
def prior() -> AnswerTypePrior:
    return AnswerTypePrior.fit([(q, _span(q, s), t) for q, s, t in TRAIN], weight=1.0)


def test_question_words_blank_the_mentions_and_keep_the_rest() -> None:
    q = "Which Currency is used in São Tomé?"
    words = question_words(q, _span(q, "São Tomé"))
    assert words == {"which", "currency", "is", "used", "in", MENTION_WORD}
    assert MENTION_WORD not in question_words("capital of peru", [])


def test_the_relation_word_decides_whatever_the_subject(prior: AnswerTypePrior) -> None:
    for q, s, expected in [("which currency does mali use", "mali", "currency"),
                           ("which language does japan use", "japan", "language")]:
        log_q = prior.log_probs(q, _span(q, s))
        assert max(log_q, key=log_q.get) == expected
        assert math.isclose(sum(math.exp(v) for v in log_q.values()), 1.0, rel_tol=1e-9)
    assert prior.types == ["continent", "currency", "language"]


def test_rerank_moves_the_right_type_up_and_renormalises(prior: AnswerTypePrior) -> None:
    q = "what currency is used in mali?"
    ids, log_p = prior.rerank([20, 11, 21], [2.0, 1.8, 1.9], TYPES.get, q, _span(q, "mali"))
    assert ids[0] == 11 and sorted(ids) == [11, 20, 21]
    assert math.isclose(sum(math.exp(v) for v in log_p), 1.0, rel_tol=1e-9) and log_p == sorted(log_p, reverse=True)
    flat = AnswerTypePrior(0.0, prior.questions, prior.words)   # weight 0: the model's order
    assert flat.rerank([20, 11, 21], [2.0, 1.8, 1.9], TYPES.get, q, _span(q, "mali"))[0] == [20, 21, 11]
    # an entity without a type gets the uniform prior: between a right and a wrong type
    ids, _ = prior.rerank([99, 20, 11], [0.0, 0.0, 0.0], TYPES.get, q, _span(q, "mali"))
    assert ids == [11, 99, 20]
    assert prior.rerank([], [], TYPES.get, q, []) == ([], [])


def test_file_round_trip_absence_and_corruption(prior: AnswerTypePrior, tmp_path: Path) -> None:
    assert load_answer_types(tmp_path) is None
    prior.save(tmp_path)
    again = load_answer_types(tmp_path)
    assert again is not None and again.to_json() == prior.to_json()
    q = "the cash of mali"
    assert again.log_probs(q, _span(q, "mali")) == pytest.approx(prior.log_probs(q, _span(q, "mali")), abs=1e-12)
    (tmp_path / ANSWER_TYPES).write_text('{"format": "edmem-answer-types", "weight": 1}')
    with pytest.raises(DataError, match=ANSWER_TYPES):
        load_answer_types(tmp_path)
    with pytest.raises(ValueError, match="weight"):
        AnswerTypePrior(-1.0, prior.questions, prior.words)


def _example(qid: str, question: str, subject: str, answer: int | None) -> ELExample:
    start = question.index(subject)
    return ELExample(qid, question, [], [Mention(start, len(subject), 1)],
                     [(answer, "x")] if answer is not None else None, 1)


def test_fit_from_examples_skips_untyped_answers_and_needs_one_typed() -> None:
    examples = [_example("a", "the money of peru", "peru", 10), _example("b", "the tongue of peru", "peru", 77),
                _example("c", "the cash of chad", "chad", None)]
    prior = fit_from_examples(examples, TYPES, 0.5, "vocab.json")
    assert prior.questions == {"currency": 1} and prior.weight == 0.5
    with pytest.raises(DataError, match="vocab.json"):
        fit_from_examples(examples[1:], TYPES, 0.5, "vocab.json")


def test_rerank_predictions_by_question_id(prior: AnswerTypePrior) -> None:
    examples = [_example("q1", "what currency is used in mali?", "mali", 11)]
    topk, scores = {"q1": [20, 11], "other": [1]}, {"q1": [1.0, 0.9], "other": [0.0]}
    rerank_predictions(prior, topk, scores, examples, TYPES.get)
    assert topk == {"q1": [11, 20], "other": [1]} and scores["other"] == [0.0]


# ---------------------------------------------------------------------------- where it acts
def test_linker_reranks_by_the_model_dirs_prior(tmp_path: Path) -> None:
    model = build_tiny_model_dir(tmp_path / "m", top_k=100)   # K = every entity of the memory
    question = "what is the capital of France?"
    plain = EntityLinker.from_pretrained(model, top_k=5)(question)
    assert plain.answer is not None and load_model_dir(model, load_model=False).answer_types is None
    wanted = next(t for t in ("us_state", "city", "country") if t != plain.answer.type)
    AnswerTypePrior.fit([("what is the capital of x", [(23, 24)], wanted),
                         ("the thing of x", [(14, 15)], str(plain.answer.type))], weight=50.0).save(model)
    typed = EntityLinker.from_pretrained(model, top_k=5)(question)
    assert typed.answer is not None and typed.answer.type == wanted
    assert [e.score for e in typed.top_k] == sorted((e.score for e in typed.top_k), reverse=True)


@pytest.mark.slow
def test_run_qa_fits_saves_exports_applies_and_clears_the_prior(tmp_path: Path, capsys) -> None:
    tiny = el_tiny.build(tmp_path / "tiny")
    vocab = json.loads(Path(tiny["id2entity_file"]).read_text())
    short = ("--num_train_epochs", "2", "--dropout", "0")
    # no types in the vocabulary: one clear error naming it
    assert run_qa(el_tiny.flags(tiny, tmp_path / "untyped", "--do_train", "--answer_type_weight", "1", *short)) == 1
    assert "answer-type prior needs typed entities" in capsys.readouterr().err
    for key, entry in vocab.items():   # countries 1000 + 2k, capitals 1001 + 2k
        entry["type"] = "city" if int(key) % 2 else "country"
    Path(tiny["id2entity_file"]).write_text(json.dumps(vocab))
    out = tmp_path / "out"
    assert run_qa(el_tiny.flags(tiny, out, "--do_train", "--do_predict", "--answer_type_weight", "1", *short)) == 0
    saved = load_answer_types(out)
    assert saved is not None and saved.questions == {"city": 16} and saved.weight == 1.0
    assert load_model_dir(out / "model", load_model=False).answer_types.to_json() == saved.to_json()
    assert "answer-type prior" in (out / "log.txt").read_text()
    assert (out / "predictions.json").is_file()
    # prediction reads the prior of --output_dir: one that wants countries puts them first
    AnswerTypePrior.fit([("what is the capital of x", [(23, 24)], "country"),
                         ("name the capital city of x", [(25, 26)], "country"),
                         ("a town: x", [(8, 9)], "city")], weight=50.0).save(out)
    every = ("--inference_nearest_k_entity", "16")   # K = all 16 entities: each list has the countries
    assert run_qa(el_tiny.flags(tiny, out, "--do_predict", "--prefix", "typed_", *every)) == 0
    predictions = json.loads((out / "typed_predictions.json").read_text())
    assert predictions and all(vocab[str(ids[0])]["type"] == "country" for _, ids in predictions.values())
    assert run_qa(el_tiny.flags(tiny, out, "--do_train", "--overwrite_output", "True", *short)) == 0
    assert load_answer_types(out) is None   # a run without the prior leaves none behind
