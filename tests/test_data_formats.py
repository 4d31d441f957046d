"""EL readers: path rule, validation errors, repairs, skips, reports, SLING links, WQ counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edmem.data.formats import (Mention, answer_entities_from_links, el_split_path,
                                load_answer_links, load_el_examples, load_el_split)
from edmem.errors import DataError

TOY = ("openqa", "toy", "entity_linking/el_")


def write_lines(tmp_path: Path, *objs: object) -> Path:
    path = tmp_path / "el.jsonl"
    path.write_text("\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs) + "\n")
    return path


def line(**overrides: object) -> dict:
    base = {"id": "q1", "question": "where is mount quill?", "answer": ["Zorbania"],
            "link_offset": [9], "link_length": [11], "link_target": ["24"],
            "answer_entity": [[20, "Zorbania"]]}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_split_path_rule():
    assert el_split_path("data/openqa", "wq", "entity_linking/el_", "dev") == \
        Path("data/openqa/wq/entity_linking/el_wq-dev.jsonl")


def test_toy_train_split(fixtures_dir):
    examples, report = load_el_split(fixtures_dir / "data" / TOY[0], TOY[1], TOY[2], "train", log=None)
    assert [e.id for e in examples] == ["t1", "t2", "t4"]
    t1 = examples[0]
    assert t1.mentions == [Mention(26, 13, 21)] and t1.answers == ["Blue River"]
    assert t1.answer_entities == [(30, "Blue River")] and t1.line == 1
    # duplicates in answer_entity are kept (they weight the random draw, spec Q26)
    assert examples[1].answer_entities == [(31, "Queen Ada"), (32, "Ada I"), (31, "Queen Ada")]
    # t4 lists its spans out of order: sorted, counted as repaired; the blank line is ignored
    assert examples[2].mentions == [Mention(9, 5, 24), Mention(15, 5, 24)] and examples[2].line == 5
    assert report.kept == 3
    assert report.skipped == {"no_answer_entity": 1} and report.lines["no_answer_entity"] == [3]
    assert report.repaired == {"unsorted_spans": 1}
    assert "skipped 1 (no_answer_entity; first lines 3)" in report.summary()


def test_toy_dev_keeps_unlinkable_and_repairs_duplicate_span(fixtures_dir):
    examples, report = load_el_split(fixtures_dir / "data" / TOY[0], TOY[1], TOY[2], "dev", log=None)
    d1, d2 = examples
    # the duplicated "time zone" span keeps its first target; "velmar" is not lost (spec Q13)
    assert d1.mentions == [Mention(5, 9, 25), Mention(18, 6, 23)]
    assert d2.mentions == [] and d2.answer_entities is None
    assert report.kept == 2 and report.repaired == {"duplicate_span": 1} and not report.skipped


def test_report_is_logged(tmp_path, caplog):
    path = write_lines(tmp_path, line(), line(id="q2", answer_entity=None))
    with caplog.at_level("INFO"):
        load_el_examples(path, is_training=True)
    assert "kept 1" in caplog.text and "no_answer_entity" in caplog.text


def test_overlapping_span_dropped_and_counted(tmp_path):
    path = write_lines(tmp_path, line(link_offset=[9, 15], link_length=[11, 5], link_target=["24", "25"]))
    (example,), report = load_el_examples(path, is_training=False, log=None)
    assert example.mentions == [Mention(9, 11, 24)]
    assert report.repaired == {"overlapping_span": 1}


def test_empty_answer_entity_list_means_unlinkable(tmp_path):
    path = write_lines(tmp_path, line(answer_entity=[]))
    (example,), _ = load_el_examples(path, is_training=False, log=None)
    assert example.answer_entities is None
    assert load_el_examples(path, is_training=True, log=None)[0] == []


def test_question_without_links_and_int_targets(tmp_path):
    path = write_lines(tmp_path, line(link_offset=None, link_length=None, link_target=None),
                       line(id="q2", link_target=[24]))
    (a, b), _ = load_el_examples(path, is_training=True, log=None)
    assert a.mentions == [] and b.mentions == [Mention(9, 11, 24)]


@pytest.mark.parametrize("obj, field, words", [
    ('{"id": "q1", "question": ', None, "invalid JSON"),
    ('["not", "an", "object"]', None, "expected a JSON object"),
    (line(id=None), "id", "missing"),
    (line(question=""), "question", "non-empty string"),
    (line(question=3), "question", "non-empty string"),
    (line(answer="Zorbania"), "answer", "list of strings"),
    (line(link_length=None), "link_length", "missing"),
    (line(link_offset=9), "link_offset", "expected a list"),
    (line(link_offset=[9, 12]), "link_offset", "different lengths"),
    (line(link_offset=["9"]), "link_offset", "expected an integer"),
    (line(link_target=["x24"]), "link_target", "expected an integer"),
    (line(link_offset=[15]), "link_offset", "outside the text"),
    (line(link_length=[0]), "link_offset", "outside the text"),
    (line(link_target=["0"]), "link_target", "NIL"),
    (line(link_target=["-3"]), "link_target", "negative"),
    (line(answer_entity=[[-3, "X"]]), "answer_entity", "not in the entity memory"),
    (line(link_target=["5000"]), "link_target", "not in the entity memory"),
    (line(answer_entity=[[5000, "Far Away"]]), "answer_entity", "not in the entity memory"),
    (line(answer_entity=[["Zorbania"]]), "answer_entity", "expected [entity_id, name]"),
    (line(answer_entity={"20": "Zorbania"}), "answer_entity", "expected a list"),
])
def test_invalid_line_names_file_line_and_field(tmp_path, obj, field, words):
    path = write_lines(tmp_path, line(id="ok"), obj)
    with pytest.raises(DataError) as info:
        load_el_examples(path, is_training=True, entity_vocab_size=1000, log=None)
    err = info.value
    assert err.path == str(path) and err.line == 2 and err.field == field
    assert words in str(err) and str(path) in str(err)


def test_membership_predicate_and_duplicate_ids(tmp_path):
    path = write_lines(tmp_path, line())
    with pytest.raises(DataError, match="entity id 24 is not in the entity memory"):
        load_el_examples(path, is_training=False, is_entity=lambda i: i != 24, log=None)
    path = write_lines(tmp_path, line(), line(question="where is it?", link_offset=None,
                                              link_length=None, link_target=None))
    with pytest.raises(DataError, match="duplicate id 'q1' \\(first seen on line 1\\)") as info:
        load_el_examples(path, is_training=False, log=None)
    assert info.value.line == 2


def test_sling_answer_links(fixtures_dir, tmp_path):
    links = load_answer_links(fixtures_dir / "data/openqa/toy/entity_linking/sling_invocab-dev.json")
    assert links["d2"] is None
    assert links["d1"]["Velmar Time"].entity_id == 33
    assert answer_entities_from_links(links["d1"]) == [(33, "Velmar Time")]
    bad = tmp_path / "sling.json"
    bad.write_text('{"q": {"A": ["Q1", "A"]}}')
    with pytest.raises(DataError, match="expected \\[wikidata_id, name, entity_id\\]"):
        load_answer_links(bad)


def test_readers_do_not_import_torch_or_transformers():
    code = ("import sys, edmem.data.formats, edmem.data.entity_vocab, edmem.data.tries, "
            "edmem.data.markers, edmem.data.examples, edmem.data.tokenization;"
            "bad = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_wq_files_load_with_reports(wq_dir):
    data = wq_dir / "openqa"
    counts = {}
    for split in ("train", "dev", "test"):
        examples, report = load_el_split(data, "wq", "entity_linking/el_", split,
                                         entity_vocab_size=1_000_010, log=None)
        counts[split] = (len(examples), report.kept, report.repaired, report.skipped)
        print(report.summary())
    assert counts["train"] == (3054, 3054, {}, {})
    assert counts["dev"] == (378, 378, {}, {})
    assert counts["test"][:2] == (2032, 2032) and counts["test"][2] == {"duplicate_span": 1}
    test = {e.id: e for e in load_el_split(data, "wq", "entity_linking/el_", "test", log=None)[0]}
    q37 = test["37"]
    surfaces = [q37.question[m.offset:m.end] for m in q37.mentions]
    assert "utah" in surfaces and surfaces.count("timezone") == 1
    # the EL answer_entity equals the SLING file's links
    links = load_answer_links(data / "wq/entity_linking/sling_invocab-test.json")
    assert all(answer_entities_from_links(links[i]) == e.answer_entities for i, e in test.items())
