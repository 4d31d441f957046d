"""benchmarks/demo_answer_types.py: the answer-type rankings behind docs/demo.md ("Answer types")."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_answer_types.py"


def _module():
    spec = importlib.util.spec_from_file_location("demo_answer_types", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TYPES = {10: "currency", 11: "currency", 20: "language", 21: "language", 30: "country"}


def _row(question: str, subject: str, answer: int) -> dict:
    offset = question.index(subject)
    return {"id": question, "question": question, "link_offset": [offset], "link_length": [len(subject)],
            "answer_entity": [[answer, str(answer)]]}


TRAIN = [_row("what currency is used in japan?", "japan", 10), _row("the money of peru", "peru", 11),
         _row("what language is spoken in peru?", "peru", 20), _row("the tongue of japan", "japan", 21)]


def test_question_words_blank_the_mention() -> None:
    words = _module().question_words(_row("what currency is used in japan?", "japan", 10))
    assert "japan" not in words and {"ENT", "currency", "what"} <= words


def test_naive_bayes_reads_the_relation_word_not_the_subject() -> None:
    nb = _module().NaiveBayesTypes(TRAIN, TYPES)
    money = nb.log_probs(_row("which currency does chad use", "chad", 10))
    tongue = nb.log_probs(_row("which language does chad use", "chad", 20))
    assert max(money, key=money.get) == "currency" and max(tongue, key=tongue.get) == "language"
    assert math.isclose(sum(math.exp(v) for v in money.values()), 1.0, rel_tol=1e-9)


def test_rankings_fix_a_wrong_type_top1_and_the_oracle_keeps_the_gold_type() -> None:
    m = _module()
    nb = m.NaiveBayesTypes(TRAIN, TYPES)
    row = _row("what currency is used in chad?", "chad", 11)
    # the model prefers a language (20) by a small margin, and is sure of its type
    pred = {"ids": [20, 11, 21], "scores": [2.0, 1.8, 1.9]}
    out = m.rankings(row, pred, TYPES, nb)
    assert out["model"] == 20 and out["oracle_type"] == 11
    assert out["naive_bayes@1.0"] == 11           # the question's words outvote the margin
    assert out["type_marginal@1.0"] == 20         # the model's own type belief does not
