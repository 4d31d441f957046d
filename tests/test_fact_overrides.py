"""Fact overrides (edmem.inference.fact_overrides): built from passages by ``edmem memory
add/edit``, saved with the model directory, applied by the linker and by ``run_QA --do_predict``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import knowledge_tiny as kt
from edmem.cli import main as edmem_main
from edmem.data.formats import ELExample, Mention
from edmem.errors import DataError
from edmem.inference.fact_overrides import (FACT_OVERRIDES, FactOverride, FactOverrides, load_fact_overrides,
                                            override_predictions)

# a small typed world: countries 1-3 (ids 100+), currencies (200+), cities (300+)
TYPES = {100: "country", 101: "country", 102: "country", 200: "currency", 201: "currency", 202: "currency",
         300: "city", 301: "city"}


def _overrides(*statements: tuple[str, list[int]], is_subject=None) -> tuple[FactOverrides, object]:
    facts = FactOverrides()
    update = facts.add_statements(statements, TYPES.get, is_subject)
    return facts, update


# ---------------------------------------------------------------------------- building
def test_a_statement_keys_each_object_by_its_type_under_the_first_mention() -> None:
    facts, update = _overrides(("p1", [100, 201, 301]))   # "X uses the Y; its capital is Z"
    assert {(e.subject, e.answer_type, e.object, e.source) for e in facts} == {
        (100, "currency", 201, "p1"), (100, "city", 301, "p1")}
    assert update.to_json() == {"added": 2, "replaced": 0, "untyped_objects": 0, "conflicts": 0}


def test_is_subject_picks_the_new_entity_wherever_the_passage_names_it() -> None:
    # "One of the cities of <country 100> is <new city 300>": the new city is the subject
    facts, _ = _overrides(("p", [100, 300]), ("q", [101, 102]), is_subject={300}.__contains__)
    assert [(e.subject, e.answer_type, e.object) for e in facts] == [(300, "country", 100)]


def test_untyped_objects_and_conflicts_are_counted_and_the_later_passage_wins() -> None:
    facts, update = _overrides(("a", [100, 200]), ("b", [100, 999]), ("c", [100, 201, 202]))
    assert update.untyped_objects == 1          # 999 has no type
    assert update.conflicts == 2                # 202 after 201 in one passage; 201 replaces 200
    assert facts.lookup([100], "currency") == FactOverride(100, "currency", 201, "c")
    # a later call replaces the entry and says so
    update = facts.add_statements([("d", [100, 202])], TYPES.get)
    assert update.replaced == 1 and facts.lookup([100], "currency").object == 202


def test_drop_entities_removes_entries_naming_them_as_subject_or_object() -> None:
    facts, _ = _overrides(("a", [100, 200]), ("b", [101, 201]), ("c", [102, 300]))
    assert facts.drop_entities([201, 102]) == 2
    assert [(e.subject, e.object) for e in facts] == [(100, 200)]


# ---------------------------------------------------------------------------- applying
def test_apply_moves_the_object_up_only_for_a_mentioned_subject_and_the_top_answers_type() -> None:
    facts, _ = _overrides(("a", [100, 202]))
    ids, scores = [200, 201, 202, 300], [4.0, 3.0, 2.0, 1.0]
    new_ids, new_scores, applied = facts.apply(ids, scores, [100], TYPES.get)
    assert new_ids == [202, 200, 201, 300] and new_scores == [4.0, 4.0, 3.0, 1.0]
    assert applied.override.object == 202 and applied.replaced == 200
    # the top answer is a city: another relation, untouched
    assert facts.apply([300, 202], [2.0, 1.0], [100], TYPES.get)[2] is None
    # subject not mentioned: untouched
    assert facts.apply(ids, scores, [101], TYPES.get) == (ids, scores, None)
    # already the answer: nothing to do
    assert facts.apply([202, 200], [2.0, 1.0], [100], TYPES.get)[2] is None


def test_apply_inserts_an_object_outside_the_k_and_keeps_k() -> None:
    facts, _ = _overrides(("a", [100, 202]))
    assert facts.apply([200, 201], [2.0, 1.0], [101, 100], TYPES.get)[:2] == ([202, 200], [2.0, 2.0])
    ids, scores, applied = facts.apply([200], [5.0], [100], TYPES.get)
    assert (ids, scores, applied.replaced) == ([202], [5.0], 200)


def test_override_predictions_uses_each_questions_mention_targets() -> None:
    facts, _ = _overrides(("a", [100, 202]))
    examples = [ELExample("q1", "what currency does x use?", [], [Mention(19, 1, 100)], None, 0),
                ELExample("q2", "what currency does y use?", [], [Mention(19, 1, 101)], None, 0)]
    topk, scores = {"q1": [200, 201], "q2": [200, 201]}, {"q1": [1.0, 0.5], "q2": [1.0, 0.5]}
    assert override_predictions(facts, topk, scores, examples, TYPES.get) == 1
    assert topk == {"q1": [202, 200], "q2": [200, 201]} and scores["q1"] == [1.0, 1.0]


def test_file_round_trip_absence_and_corruption(tmp_path: Path) -> None:
    facts, _ = _overrides(("a", [100, 202]), ("b", [101, 300]))
    assert load_fact_overrides(tmp_path) is None
    facts.save(tmp_path)
    assert load_fact_overrides(tmp_path).to_json() == facts.to_json()
    (tmp_path / FACT_OVERRIDES).write_text(json.dumps({"format": "edmem-fact-overrides",
                                                       "entries": [{"subject": "x", "object": 1}]}))
    with pytest.raises(DataError, match=f"{FACT_OVERRIDES}.*unreadable fact overrides"):
        load_fact_overrides(tmp_path)


# ---------------------------------------------------------------------------- where they act
def _load(path: Path):
    from edmem.inference.model_dir import load_model_dir
    return load_model_dir(path)


def test_memory_edit_without_refit_answers_the_stated_fact(tiny_model_dir, tmp_path, capsys) -> None:
    """``edmem memory edit --refit none``: no weight moves, the linker now answers the stated
    capital for France (and says so), Italy keeps the model's answer, and both spans given
    without targets and detected mentions find the subject."""
    from edmem.inference.linker import EntityLinker

    before = EntityLinker(_load(tiny_model_dir), top_k=3)
    asked = before("what is the capital of france?")
    assert asked.answer.type == "city" and asked.fact_override is None
    other = before("what is the capital of italy?").answer.id
    wanted, name = next((i, n) for i, n in ((1013, "Tbilisi"), (1011, "Cairo")) if i != asked.answer.id)
    passages = kt.write_jsonl([kt.passage("fix-1", f"The capital of France is {name}.", ("France", 1000),
                                          (name, wanted))], tmp_path / "fix.jsonl")
    out = tmp_path / "edited"
    assert edmem_main(["memory", "edit", "--model", str(tiny_model_dir), "--passages", str(passages),
                       "--output", str(out), "--refit", "none", "--no_progress"]) == 0
    assert "re-fitted 0 rows (0 steps on 1 passages; 1 fact overrides set" in capsys.readouterr().out
    src, dst = _load(tiny_model_dir), _load(out)
    for key, value in src.model.state_dict().items():
        assert torch.equal(dst.model.state_dict()[key], value), key
    assert [(e.subject, e.answer_type, e.object) for e in dst.fact_overrides] == [(1000, "city", wanted)]
    record = json.loads((out / "memory_log.jsonl").read_text().splitlines()[-1])
    assert record["fit"] is None and record["fact_overrides"]["entries"][0]["source"] == "fix-1"
    after = EntityLinker(dst, top_k=3)
    result = after("what is the capital of france?")
    assert result.answer.id == wanted and [e.id for e in result.top_k][0] == wanted
    assert result.fact_override == {"subject": 1000, "answer_type": "city", "object": wanted,
                                    "source": "fix-1", "subject_name": "France",
                                    "replaced": asked.answer.id, "replaced_name": asked.answer.name}
    assert after("what is the capital of italy?").answer.id == other
    given = after({"question": "what is the capital of france?", "mentions": [{"offset": 23, "length": 6}]})
    assert given.answer.id == wanted
    # hiding the stated entity drops its override with it
    assert edmem_main(["memory", "remove", "--model", str(out), "--ids", str(wanted),
                       "--output", str(tmp_path / "removed")]) == 0
    assert not _load(tmp_path / "removed").fact_overrides


def test_memory_add_keys_overrides_on_the_new_entities_only(model_dir_for_add, tmp_path) -> None:
    from edmem.knowledge import add_entities
    from edmem.knowledge.fit import FitSettings

    new = kt.write_jsonl(kt.new_entities_rows(), tmp_path / "new.jsonl")
    passages = kt.write_jsonl([
        kt.passage("n1", "One of the cities of Peru is Santiago.", ("Peru", 1006), ("Santiago", 2001)),
        kt.passage("n2", "The capital of France is Paris.", ("France", 1000), ("Paris", 1001))],
        tmp_path / "passages.jsonl")
    record = add_entities(model_dir_for_add, new, passages, tmp_path / "added",
                          settings=FitSettings(steps=2, batch_size=2, progress=False))
    assert [(e["subject"], e["answer_type"], e["object"]) for e in record["fact_overrides"]["entries"]] == [
        (2001, "country", 1006)]      # France is not new: its passage sets nothing
    assert len(_load(tmp_path / "added").fact_overrides) == 1
    record = add_entities(model_dir_for_add, new, passages, tmp_path / "plain", overrides=False,
                          settings=FitSettings(steps=2, batch_size=2, progress=False))
    assert record["fact_overrides"] is None and not (tmp_path / "plain" / FACT_OVERRIDES).exists()


def test_edit_refit_none_with_nothing_to_state_is_one_clear_error(model_dir_for_add, tmp_path, capsys) -> None:
    passages = kt.write_jsonl([kt.passage("x", "France is nice.", ("France", 1000))], tmp_path / "p.jsonl")
    assert edmem_main(["memory", "edit", "--model", str(model_dir_for_add), "--passages", str(passages),
                       "--output", str(tmp_path / "o"), "--refit", "none"]) == 1
    assert "give no fact override" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert edmem_main(["memory", "edit", "--model", str(model_dir_for_add), "--passages", str(passages),
                       "--output", str(tmp_path / "o"), "--refit", "none", "--no-fact_overrides"]) == 1
    assert "changes nothing" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_dir_for_add(tmp_path_factory) -> Path:
    from edmem.testing import build_tiny_model_dir
    return build_tiny_model_dir(tmp_path_factory.mktemp("overrides") / "model")


@pytest.mark.slow
def test_run_qa_predict_applies_the_fact_overrides_it_finds(tmp_path: Path) -> None:
    """``run_QA --do_predict`` reads ``fact_overrides.json`` beside the weights: a question about
    the subject whose top answer has the entry's type gets the entry's object; every other
    question keeps its prediction."""
    import el_tiny
    from edmem.run_qa import main as run_qa

    tiny = el_tiny.build(tmp_path / "tiny")
    vocab = json.loads(Path(tiny["id2entity_file"]).read_text())
    for key, entry in vocab.items():   # countries 1000 + 2k, capitals 1001 + 2k
        entry["type"] = "city" if int(key) % 2 else "country"
    Path(tiny["id2entity_file"]).write_text(json.dumps(vocab))
    out = tmp_path / "out"
    every = ("--inference_nearest_k_entity", "16")   # K = all 16 entities
    assert run_qa(el_tiny.flags(tiny, out, "--do_train", "--num_train_epochs", "2", "--dropout", "0")) == 0
    assert run_qa(el_tiny.flags(tiny, out, "--do_predict", "--prefix", "plain_", *every)) == 0
    plain = {q: ids[0] for q, (_, ids) in json.loads((out / "plain_predictions.json").read_text()).items()}
    rows = [json.loads(line) for line in
            (Path(tiny["data_dir"]) / "wq" / "el_wq-test.jsonl").read_text().splitlines()]
    subject_of = {r["id"]: int(r["link_target"][0]) for r in rows}
    qid = next(iter(plain))
    subject, kind = subject_of[qid], vocab[str(plain[qid])]["type"]
    target = next(int(k) for k, e in vocab.items() if e["type"] == kind and int(k) != plain[qid])
    FactOverrides([FactOverride(subject, kind, target, "fix")]).save(out)
    assert run_qa(el_tiny.flags(tiny, out, "--do_predict", "--prefix", "fixed_", *every)) == 0
    fixed = {q: ids[0] for q, (_, ids) in json.loads((out / "fixed_predictions.json").read_text()).items()}
    expected = {q: (target if subject_of[q] == subject and vocab[str(top)]["type"] == kind else top)
                for q, top in plain.items()}
    assert fixed == expected and fixed[qid] == target


def test_ask_and_json_results_say_when_an_override_chose_the_answer() -> None:
    from edmem.apps.ask import render
    from edmem.inference.linker import EntityScore, LinkResult

    answer = EntityScore(1003, "Rome", 0.4, "city")
    override = {"subject": 1000, "answer_type": "city", "object": 1003, "source": "fix-1",
                "subject_name": "France", "replaced": 1001, "replaced_name": "Paris"}
    result = LinkResult("what is the capital of france?", answer, [answer], [], False, override)
    assert "override: the fact override for France (id 1000), city, from passage fix-1; the model's own " \
           "answer was Paris (id 1001)" in render(result)
    assert result.to_dict()["fact_override"] == override
    plain = LinkResult("q", answer, [answer], [], False)
    assert "override" not in render(plain) and plain.to_dict()["fact_override"] is None
