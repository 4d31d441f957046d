"""Figures on the self-made fixtures (tests/fixtures/eval), all computed by hand.

Gold (7 questions): q1 "Lake Verno" [101]; q2 "The Ombrian Republic" [202, 203] (two gold
entities); q3 "Café Lumière" [303]; q4 "forty-two" (non-linkable); q5 "Port Saltmere" [505];
q6 no answers (non-linkable); q7 "Lake Verno" [101].
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edmem.evaluation import cli
from edmem.evaluation.api import NO_EL_NOTE, evaluate, score_predictions
from edmem.evaluation.entity_linking_score import compute_entity_linking
from edmem.evaluation.entity_linking_eval import main as el_main
from edmem.evaluation.exact_match_score import compute_exact_match
from edmem.evaluation.exact_match import main as em_main
from edmem.evaluation.loaders import GoldSet, load_gold
from edmem.evaluation.metrics import first_rank, mean_percent, ranking_metrics


@pytest.fixture
def ev(fixtures_dir: Path) -> Path:
    return fixtures_dir / "eval"


def _paths(ev: Path, pred: str) -> dict[str, str]:
    return {"pred": str(ev / pred), "gold": str(ev / "gold.jsonl"), "sling": str(ev / "sling.json"),
            "vocab": str(ev / "vocab.json")}


def test_mean_percent_matches_numpy_round_and_nan() -> None:
    assert mean_percent([True, False, False]) == 33.33
    assert mean_percent([1, 1, 0]) == 66.67
    assert mean_percent([True] * 4 + [False] * 3) == 57.14
    assert math.isnan(mean_percent([]))


def test_exact_match_el_predictions_lines(ev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _paths(ev, "el_predictions.json")
    assert em_main(["-pred", p["pred"], "-gold", p["gold"], "-ans_link", p["sling"],
                    "-entity_vocab", p["vocab"]]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    # q1 "Lake Verno (Tarsia)" -> "Lake Verno" right; q4 "Forty-two" right; q3 "Cafe Lumiere" wrong
    # (NFD keeps accents); q2 greedy strip -> "Ombria" wrong. 2/7 overall, 1/5 linkable, 1/2 not.
    assert out.splitlines() == [
        f"Read 7 data from {p['gold']}",
        f"Load 7 ground-truth data from {p['gold']}.",
        f"Load 7 predictions from {p['pred']}.",
        "Exact Match:  28.57",
        "0 predictions are pure entities, EM: nan; 7 predictions are not entities, EM: 28.57",
        "Linkable QA Exact Match:  20.0",
        "Among linkables, the ratio of predictions that are pure entity names: 0/5",
        "Pure entity names Exact Match:  nan",
        "Not predicted as pure entities, but got it right:  1",
        "Among pure entity names, the ratio of predictions that are valid entity names: 0/0",
        "Valid entity names Exact Match:  nan",
        "Not predicted as valid entity names, but got it right:  0",
        "Linkable questions: 5",
        "Non-linkable QA Exact Match:  50.0",
        "Non-linkable questions: 2",
    ]


def test_exact_match_generation_predictions_purity_q33(ev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """String predictions: markers, <pad>, a dict "output", keys in another order than the gold."""
    p = _paths(ev, "gen_predictions.json")
    assert em_main(["-pred", p["pred"], "-gold", p["gold"], "-ans_link", p["sling"],
                    "-entity_vocab", p["vocab"]]) == 0
    lines = capsys.readouterr().out.splitlines()[3:]
    assert lines == [
        # right: q1, q2 (article removed), q3 (dict output), q5 (two spans) -> 4/7.
        "Exact Match:  57.14",
        # pass 1 pure: q7 (wrong), q1, q3 (right); q2 has trailing <pad> so it is NOT pure here.
        "3 predictions are pure entities, EM: 66.67; 4 predictions are not entities, EM: 50.0",
        # linkable q1 q2 q3 q5 q7: 4/5 right.
        "Linkable QA Exact Match:  80.0",
        # pass 2 removes <pad> before the test: q1 q2 q3 q7 pure (4/5), 3 of them right.
        "Among linkables, the ratio of predictions that are pure entity names: 4/5",
        "Pure entity names Exact Match:  75.0",
        "Not predicted as pure entities, but got it right:  1",          # q5
        # valid: "lake verno" (vocab "Lake Verno (Tarsia)"), "ombrian republic"; "Café Lumière" is
        # not lowercased so it is not found; "verno" is not a name.
        "Among pure entity names, the ratio of predictions that are valid entity names: 2/4",
        "Valid entity names Exact Match:  100.0",
        "Not predicted as valid entity names, but got it right:  1",      # q3
        "Linkable questions: 5",
        "Non-linkable QA Exact Match:  0.0",                              # q4 "forty two", q6 []
        "Non-linkable questions: 2",
    ]


def test_exact_match_without_ans_link_prints_two_lines(ev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _paths(ev, "el_predictions.json")
    assert em_main(["-pred", p["pred"], "-gold", p["gold"], "-entity_vocab", p["vocab"]]) == 0
    assert capsys.readouterr().out.splitlines()[3:] == [
        "Exact Match:  28.57",
        "0 predictions are pure entities, EM: nan; 7 predictions are not entities, EM: 28.57"]


def test_json_list_gold_gives_the_same_figures(ev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _paths(ev, "el_predictions.json")
    gold_json = str(ev / "gold.json")
    assert em_main(["-pred", p["pred"], "-gold", gold_json, "-entity_vocab", p["vocab"]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Load 7 ground-truth data from {gold_json}."      # no "Read" line for .json
    assert lines[2] == "Exact Match:  28.57"
    assert el_main(["-pred", p["pred"], "-gold", gold_json]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == ["Exact Match:  28.57", "Linkable EM:  40.0"]


def test_entity_linking_eval_lines_and_multi_gold(ev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _paths(ev, "el_predictions.json")
    assert el_main(["-pred", p["pred"], "-gold", p["gold"]]) == 0
    # top-1 right: q1 (101), q3 (303, the id matches although the name does not) -> 2/7 and 2/5.
    assert capsys.readouterr().out.splitlines() == [
        f"Read 7 data from {p['gold']}",
        f"Load 7 ground-truth data from {p['gold']}.",
        f"Load 7 predictions from {p['pred']}.",
        "Exact Match:  28.57",
        "Linkable EM:  40.0",
    ]


def test_multi_gold_any_id_counts() -> None:
    preds = {"a": ["x", [203, 1]], "b": ["y", [202]], "c": ["z", [5, 202]]}
    gold = {"a": [202, 203], "b": [202, 203], "c": [202, 203]}
    result = compute_entity_linking(preds, gold)
    assert (result.linkable.correct, result.linkable_multi_gold) == (2, 3)


def test_ranking_by_hand() -> None:
    assert first_rank([9, 8, 7], [7, 8]) == 2
    assert first_rank([9], [1]) is None
    ranks = ranking_metrics({"a": [1, 2, 3], "b": [4, 5, 6, 7, 8, 9], "c": [10, 11], "d": [3]},
                            {"a": [3], "b": [9, 5], "c": [10], "d": [99]}, ks=(1, 2, 5))
    # ranks: a 3, b 2 (5 comes before 9), c 1, d none
    assert ranks["hits@1"] == {"hits": 1, "percent": 25.0}
    assert ranks["hits@2"] == {"hits": 2, "percent": 50.0}
    assert ranks["hits@5"] == {"hits": 3, "percent": 75.0}
    assert ranks["mrr"] == pytest.approx((1 / 3 + 1 / 2 + 1 + 0) / 4)
    assert ranks["list_length"] == {"min": 1, "max": 6}
    assert (ranks["questions"], ranks["found_in_list"]) == (4, 3)


def test_ranking_without_linkable_questions_is_null_not_zero() -> None:
    ranks = ranking_metrics({"a": [1]}, {})
    assert ranks["hits@1"] == {"hits": 0, "percent": None} and ranks["mrr"] is None


def test_all_prints_both_reports_and_extras_and_json(ev: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    p = _paths(ev, "el_predictions.json")
    out_json = tmp_path / "scores.json"
    assert cli.main(["all", "-pred", p["pred"], "-gold", p["gold"], "-ans_link", p["sling"],
                     "-entity_vocab", p["vocab"], "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    # linkable ranks: q1 1, q2 2, q3 1, q5 6, q7 none -> hits@1 2/5, @5 3/5, @10 4/5; MRR 8/15.
    assert "==== entity_linking_eval\nExact Match:  28.57\nLinkable EM:  40.0\n" in out
    for line in ["hits@1:  40.0 (2/5)", "hits@5:  60.0 (3/5)", "hits@10:  80.0 (4/5)",
                 "hits@100:  80.0 (4/5)", "MRR:  0.5333",
                 "Questions: 7 (linkable 5: 4 with one gold entity, 1 with several; non-linkable 2); "
                 "top-1 correct: 2",
                 "Top-k lists hold 2 to 7 ids; hits@k for a larger k counts only those.",
                 "Linkable QA Exact Match:  20.0"]:
        assert line in out.splitlines()
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    assert doc["schema"] == "edmem.evaluation/1" and doc["command"] == "all"
    assert doc["questions"] == 7
    em = doc["exact_match"]
    assert (em["count"], em["correct"], em["em"]) == (7, 2, 28.57)
    assert em["pure"] == {"count": 0, "correct": 0, "em": None}          # nan -> null
    link = em["answer_link"]
    assert link["linkable"] == {"count": 5, "correct": 1, "em": 20.0}
    assert link["non_linkable"] == {"count": 2, "correct": 1, "em": 50.0}
    assert link["valid"] == {"count": 0, "correct": 0, "em": None}
    assert (link["not_pure_but_right"], link["not_valid_but_right"]) == (1, 0)
    el = doc["entity_linking"]
    assert (el["count"], el["correct"], el["em"]) == (7, 2, 28.57)
    assert el["linkable"] == {"count": 5, "correct": 2, "em": 40.0}
    assert el["non_linkable"] == {"count": 2}
    assert (el["linkable_single_gold"], el["linkable_multi_gold"]) == (4, 1)
    rank = el["ranking"]
    assert rank["hits@10"] == {"hits": 4, "percent": 80.0}
    assert rank["mrr"] == pytest.approx(8 / 15)
    assert doc["inputs"]["ans_link"] == p["sling"]


def test_all_on_string_predictions_skips_entity_metrics(ev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _paths(ev, "gen_predictions.json")
    assert cli.main(["all", "-pred", p["pred"], "-gold", p["gold"]]) == 0
    out = capsys.readouterr().out
    assert "Exact Match:  57.14" in out and "==== entity_linking_eval" not in out
    assert f"Note: {NO_EL_NOTE}" in out


def test_all_without_vocab_marks_valid_lines_na(ev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _paths(ev, "gen_predictions.json")
    assert cli.main(["all", "-pred", p["pred"], "-gold", p["gold"], "-ans_link", p["sling"]]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Valid entity names Exact Match:  n/a (no -entity_vocab)" in out
    assert "Pure entity names Exact Match:  75.0" in out


def test_json_from_each_original_entry_point(ev: Path, tmp_path: Path) -> None:
    p = _paths(ev, "el_predictions.json")
    em_json, el_json = tmp_path / "em.json", tmp_path / "el.json"
    assert em_main(["-pred", p["pred"], "-gold", p["gold"], "-entity_vocab", p["vocab"],
                    "--json", str(em_json)]) == 0
    assert el_main(["-pred", p["pred"], "-gold", p["gold"], "--ks", "1", "3", "--json", str(el_json)]) == 0
    em_doc, el_doc = json.loads(em_json.read_text()), json.loads(el_json.read_text())
    assert em_doc["command"] == "exact_match" and em_doc["entity_linking"] is None
    assert em_doc["exact_match"]["em"] == 28.57 and em_doc["exact_match"]["answer_link"] is None
    assert el_doc["command"] == "entity_linking" and el_doc["exact_match"] is None
    assert el_doc["entity_linking"]["ranking"]["hits@3"] == {"hits": 3, "percent": 60.0}
    assert "hits@10" not in el_doc["entity_linking"]["ranking"]


def test_in_process_api_with_example_objects() -> None:
    """The training loop passes its examples (objects with id / answers / answer_entities)."""

    class Example:
        def __init__(self, id: str, answers: list[str], answer_entities: list[tuple[int, str]] | None):
            self.id, self.answers, self.answer_entities = id, answers, answer_entities

    examples = [Example("a", ["Lake Verno"], [(101, "Lake Verno")]),
                Example("b", ["forty-two"], None),
                Example("c", ["Port Saltmere"], [])]            # [] = non-linkable for objects
    scores = score_predictions({"a": ["Lake Verno (Tarsia)", [101, 3]], "b": ["x", [4]],
                                "c": ["Port Saltmere", [505]]}, examples)
    assert scores["exact_match"]["em"] == 66.67
    assert scores["entity_linking"]["linkable"] == {"count": 1, "correct": 1, "em": 100.0}
    assert scores["entity_linking"]["ranking"]["mrr"] == 1.0
    assert scores["notes"] == []


def test_in_process_api_dicts_and_gold_set(ev: Path) -> None:
    gold = load_gold(ev / "gold.jsonl")
    preds = json.loads((ev / "el_predictions.json").read_text(encoding="utf-8"))
    by_set = evaluate(preds, gold)
    by_dicts = evaluate(preds, [json.loads(line) for line in
                                (ev / "gold.jsonl").read_text(encoding="utf-8").splitlines()])
    assert by_set.as_dict()["entity_linking"] == by_dicts.as_dict()["entity_linking"]
    assert by_set.exact_match.em == 28.57 and by_set.entity_linking.em == 28.57


def test_no_gold_entities_is_reported_not_silent() -> None:
    gold = GoldSet.from_records([{"id": "a", "answer": ["x"]}])
    result = evaluate({"a": ["x", [1]]}, gold)
    assert result.entity_linking.linkable.count == 0 and math.isnan(result.entity_linking.linkable.em)
    assert any("answer_entity" in note for note in result.notes)


def test_compute_exact_match_direct() -> None:
    result = compute_exact_match({"a": "<E_s> x <E_e>", "b": ["Y (z)", [1]]}, {"a": ["X"], "b": ["y"]})
    assert (result.overall.correct, result.pure.count, result.answer_link) == (2, 1, None)


def test_selection_scores_raw_names_unrounded_fractions() -> None:
    """Dev selection (docs/quirks.md Q2): EM of the raw top-1 name, parenthetical kept, as an
    unrounded fraction; id accuracy over all questions (non-linkable = wrong)."""
    from edmem.evaluation.api import selection_scores

    gold = [{"id": "a", "answer": ["Lake Verno (Tarsia)"], "answer_entity": [[101, "Lake Verno"]]},
            {"id": "b", "answer": ["Lake Verno"], "answer_entity": [[101, "Lake Verno"]]},
            {"id": "c", "answer": ["forty-two"]}]
    predictions = {"a": ["Lake Verno (Tarsia)", [101, 3]], "b": ["Lake Verno (Tarsia)", [7, 101]],
                   "c": ["forty-two", [5]]}
    scores = selection_scores(predictions, gold)
    # a: raw name equals the answer; b: the raw name keeps "(Tarsia)" so it misses (exact_match.py
    # would strip it and count it); c: right by name, non-linkable by id.
    assert (scores.em, scores.id_accuracy, scores.count) == (2 / 3, 1 / 3, 3)
    assert score_predictions(predictions, gold)["exact_match"]["correct"] == 2  # a stripped misses, b hits


def test_evaluate_files_is_what_all_prints(ev: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The demo scores in memory with evaluate_files; it must print and write what `all` does."""
    from edmem.evaluation.api import evaluate_files

    p = _paths(ev, "el_predictions.json")
    out_json = tmp_path / "scores.json"
    assert cli.main(["all", "-pred", p["pred"], "-gold", p["gold"], "-ans_link", p["sling"],
                     "-entity_vocab", p["vocab"], "--ks", "1", "5", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    lines: list[str] = []
    report = evaluate_files(p["pred"], p["gold"], ans_link=p["sling"], entity_vocab=p["vocab"],
                            echo=lines.append, ks=(1, 5))
    assert "".join(f"{line}\n" for line in lines + report.all_lines()) == printed
    assert {**report.as_dict(), "command": "all"} == json.loads(out_json.read_text(encoding="utf-8"))
