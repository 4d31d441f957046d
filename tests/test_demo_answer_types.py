"""benchmarks/demo_answer_types.py: the answer-type rankings behind docs/demo.md ("Answer types")."""

from __future__ import annotations

import bench_scripts


def _module():
    return bench_scripts.load("demo_answer_types")


TYPES = {10: "currency", 11: "currency", 20: "language", 21: "language", 30: "country"}


def _row(question: str, subject: str, answer: int) -> dict:
    offset = question.index(subject)
    return {"id": question, "question": question, "link_offset": [offset], "link_length": [len(subject)],
            "answer_entity": [[answer, str(answer)]]}


TRAIN = [_row("what currency is used in japan?", "japan", 10), _row("the money of peru", "peru", 11),
         _row("what language is spoken in peru?", "peru", 20), _row("the tongue of japan", "japan", 21)]


def test_the_prior_reads_the_relation_word_and_rankings_fix_a_wrong_type_top1() -> None:
    m = _module()
    prior = m.fit_prior(TRAIN, TYPES)
    assert prior.questions == {"currency": 2, "language": 2}
    priors = {w: m.AnswerTypePrior(w, prior.questions, prior.words) for w in m.WEIGHTS}
    row = _row("what currency is used in chad?", "chad", 11)
    # the model prefers a language (20) by a small margin, and is sure of its type
    pred = {"ids": [20, 11, 21], "scores": [2.0, 1.8, 1.9]}
    out = m.rankings(row, pred, TYPES, priors)
    assert out["model"] == 20 and out["oracle_type"] == 11
    assert out["answer_type_prior@1.0"] == 11     # the question's words outvote the margin
    assert out["type_marginal@1.0"] == 20         # the model's own type belief does not
