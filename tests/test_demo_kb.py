"""The demo's embedded knowledge base: determinism, formats, split guarantee, ambiguity, knobs."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from edmem.demo.build import PLACEHOLDER_NAMES, build_demo_data, main, write_entity_tokens
from edmem.demo.corpus import related_index
from edmem.demo.knowledge_base import RESERVED_IDS, build_knowledge_base
from edmem.demo.questions import (SPLITS, build_questions, check_split_guarantee,
                                  most_frequent_answer_baseline)
from edmem.errors import DataError

EL_FIELDS = {"id": str, "question": str, "answer": list, "link_offset": list, "link_length": list,
             "link_target": list, "surface_name": list, "entity_name": list}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_demo_data(tmp_path_factory.mktemp("geo_a"), seed=0)


@pytest.fixture(scope="module")
def data(built):
    kb = build_knowledge_base()
    return {
        "kb": kb,
        "splits": {s: _jsonl(built.el[s]) for s in SPLITS},
        "sling": {s: json.loads(built.sling[s].read_text(encoding="utf-8")) for s in SPLITS},
        "passages": _jsonl(built.pretrain_train),
        "dev_passages": _jsonl(built.pretrain_dev),
        "vocab": json.loads(built.entid2entityitemid.read_text(encoding="utf-8")),
        "names": json.loads(built.entity_names.read_text(encoding="utf-8")),
    }


def test_same_seed_same_bytes_other_seed_differs(built, tmp_path):
    again = build_demo_data(tmp_path / "again", seed=0)
    assert _files(built.root) == _files(again.root)
    other = build_demo_data(tmp_path / "other", seed=1)
    a, b = _files(built.root), _files(other.root)
    assert a.keys() == b.keys()
    # The KB itself does not depend on the seed; the generated text and splits do.
    assert a["wikipedia/entity_geo.json"] == b["wikipedia/entity_geo.json"]
    assert a["openqa/geo/entity_linking/el_geo-train.jsonl"] != b["openqa/geo/entity_linking/el_geo-train.jsonl"]
    assert a["pretraining/geo_passages-train.jsonl"] != b["pretraining/geo_passages-train.jsonl"]


def test_vocabulary_files(data, built):
    names, vocab, kb = data["names"], data["vocab"], data["kb"]
    assert names[:RESERVED_IDS] == PLACEHOLDER_NAMES
    assert len(names) == built.num_entity_rows == RESERVED_IDS + len(kb.entities)
    assert min(int(k) for k in vocab) == RESERVED_IDS
    for key, row in vocab.items():
        assert names[int(key)] == row["entity"]
        assert row["wikidata_id"] is None and ":" in row["item_id"]
    assert len(set(names)) == len(names), "display names must be unique"


def test_el_lines_have_the_original_fields(data):
    vocab = data["vocab"]
    ids_seen: set[str] = set()
    for split, rows in data["splits"].items():
        assert rows, split
        sling = data["sling"][split]
        assert set(sling) == {r["id"] for r in rows}
        for r in rows:
            for name, typ in EL_FIELDS.items():
                assert isinstance(r[name], typ), (split, r["id"], name)
            assert r["id"] not in ids_seen
            ids_seen.add(r["id"])
            q = r["question"]
            assert q == q.lower() and q == q.strip()
            n = len(r["link_offset"])
            assert n >= 1 and all(len(r[k]) == n for k in ("link_length", "link_target", "surface_name", "entity_name"))
            assert r["link_offset"] == sorted(r["link_offset"])
            for off, length, target, surface, ename in zip(r["link_offset"], r["link_length"], r["link_target"],
                                                           r["surface_name"], r["entity_name"]):
                assert isinstance(off, int) and isinstance(length, int) and isinstance(target, str)
                assert q[off:off + length] == surface
                assert vocab[target]["entity"] == ename
            assert r["answer"] and all(isinstance(a, str) for a in r["answer"])
            assert isinstance(r["relation"], str)
            if "answer_entity" in r:
                for eid, ename in r["answer_entity"]:
                    assert isinstance(eid, int) and vocab[str(eid)]["entity"] == ename
                    assert ename in r["answer"]
                # spec §3.4: answer_entity == [[int(v[2]), v[1]] for v in sling[id].values()]
                assert r["answer_entity"] == [[int(v[2]), v[1]] for v in sling[r["id"]].values()]
            else:
                assert split != "train" and sling[r["id"]] is None


def test_passages_link_every_mention_exactly(data):
    kb, vocab = data["kb"], data["vocab"]
    for p in data["passages"] + data["dev_passages"]:
        assert set(p) == {"id", "text", "hyperlinks"}
        h = p["hyperlinks"]
        assert len(h["link_offset"]) == len(h["link_length"]) == len(h["link_target"]) >= 1
        for off, length, target in zip(h["link_offset"], h["link_length"], h["link_target"]):
            assert isinstance(target, int) and str(target) in vocab
            e = kb.entity(target)
            assert p["text"][off:off + length] in (e.surface, *e.aliases), p


def test_test_facts_are_in_pretraining_and_not_in_el_train_or_dev(data):
    splits = data["splits"]
    check_split_guarantee(splits)
    linked_pairs: set[frozenset[int]] = set()
    for p in data["passages"]:
        t = set(p["hyperlinks"]["link_target"])
        linked_pairs |= {frozenset((a, b)) for a in t for b in t if a != b}
    exposed: set[frozenset[int]] = set()
    for r in splits["train"] + splits["dev"]:
        if r.get("group") == "seen_fact/heldout_phrasing":
            continue
        ents = {int(t) for t in r["link_target"]} | {a[0] for a in r.get("answer_entity", ())}
        exposed |= {frozenset((a, b)) for a in ents for b in ents if a != b}
    # Held-out-fact questions; the seen-fact probes of dev/test ask train facts in held-out frames.
    test_linkable = [r for r in splits["test"] if "answer_entity" in r and r["group"].startswith("heldout_fact")]
    assert len(test_linkable) > 100
    for r in test_linkable:
        pair = frozenset((r["subject_entity"][0], r["answer_entity"][0][0]))
        assert pair in linked_pairs, r
        assert pair not in exposed, r
    train_dev_facts = {(r["subject_entity"][0], r["relation"], r["answer_entity"][0][0])
                       for r in splits["train"] + splits["dev"] if "answer_entity" in r
                       and r["group"] != "seen_fact/heldout_phrasing"}
    assert not train_dev_facts & {(r["subject_entity"][0], r["relation"], r["answer_entity"][0][0])
                                  for r in test_linkable}


def test_split_guarantee_check_catches_a_leak(data):
    splits = {s: list(rows) for s, rows in data["splits"].items()}
    leaked = next(r for r in splits["test"] if "answer_entity" in r)
    splits["train"] = splits["train"] + [dict(leaked, id="leak")]
    with pytest.raises(DataError):
        check_split_guarantee(splits)


def test_ambiguous_names_exist_and_context_resolves_them(data):
    kb, passages = data["kb"], data["passages"]
    springfields = [e for e in kb.entities if e.surface == "Springfield"]
    assert len(springfields) >= 3 and len({e.name for e in springfields}) == len(springfields)
    assert {"Paris, France", "Paris, Texas"} <= {e.name for e in kb.entities if e.surface == "Paris"}
    by_surface = Counter(p["text"][o:o + n] for p in passages
                         for o, n in zip(p["hyperlinks"]["link_offset"], p["hyperlinks"]["link_length"]))
    assert by_surface["Springfield"] > 0
    targets = {t for p in passages for o, n, t in zip(*p["hyperlinks"].values()) if p["text"][o:o + n] == "Springfield"}
    assert len(targets) == len(springfields)
    # In every sentence with other mentions, no homonym of a bare mention relates to all of them.
    related = related_index(kb)
    for p in passages:
        links = list(zip(*p["hyperlinks"].values()))
        for off, length, target in links:
            if p["text"][off:off + length] != kb.entity(target).surface:
                continue  # an alias: unique by construction
            others = {t for _, _, t in links if t != target}
            if not others:
                continue
            for h in kb.homonyms(target):
                if kb.entity(h).type != kb.entity(target).type:
                    continue  # templates name the type ("the state of ...", "a city in ...")
                # (A city-state's capital named like it -- "Gibraltar ... its capital, Gibraltar" --
                # is told apart by the other mention being the homonym itself.)
                rest = others - {h}
                assert h == target or not rest or not rest <= related[h], (p["text"], kb.entity(h).name)
    # Ambiguous questions carry a qualifier or target the primary referent.
    qs = [r for rows in data["splits"].values() for r in rows if r["surface_name"][0] == "springfield"]
    assert qs and all(len(r["link_target"]) == 2 or r["relation"] == "city_country" for r in qs)


def test_knobs_scale_the_output():
    small = build_knowledge_base(num_cities=50, homonyms_per_name=0, ambiguous_names=())
    bigger = build_knowledge_base(num_cities=120, homonyms_per_name=0, ambiguous_names=())
    n_small = sum(e.type == "city" for e in small.entities)
    assert 50 <= n_small < sum(e.type == "city" for e in bigger.entities)
    from edmem.demo.corpus import CORPUS_TEMPLATES, build_corpus
    one, _ = build_corpus(small, seed=0, paraphrases_per_fact=1, dev_fraction=0)
    two, _ = build_corpus(small, seed=0, paraphrases_per_fact=2, dev_fraction=0)
    assert len(two) - len(one) == len(small.facts)
    capped = build_questions(small, seed=0, max_facts_per_relation=10, train_questions_per_fact=1,
                             unlinkable_fraction=0)
    per_rel = Counter((r["relation"], r["subject_entity"][0]) for rows in capped.splits.values()
                      for r in rows)
    facts_per_rel = Counter(rel for rel, _ in per_rel)
    assert facts_per_rel and max(facts_per_rel.values()) <= 10
    qs = build_questions(small, seed=0, split_fractions=(0.5, 0.2, 0.3), unlinkable_fraction=0)
    n = {s: len({(r["subject_entity"][0], r["relation"]) for r in rows
                 if r["group"] != "seen_fact/heldout_phrasing"}) for s, rows in qs.splits.items()}
    total = sum(n.values())
    assert abs(n["test"] / total - 0.3) < 0.08 and abs(n["dev"] / total - 0.2) < 0.08
    assert len(qs.splits["train"]) > n["train"]  # two questions per train fact (minus skipped)


def test_most_frequent_answer_baseline():
    train = [{"id": "1", "relation": "r", "answer_entity": [[20, "B"]]},
             {"id": "2", "relation": "r", "answer_entity": [[20, "B"]]},
             {"id": "3", "relation": "r", "answer_entity": [[30, "C"]]},
             {"id": "4", "relation": "s", "answer_entity": [[40, "D"]]}]
    test = [{"id": "5", "relation": "r", "answer_entity": [[20, "B"]]},
            {"id": "6", "relation": "s", "answer_entity": [[20, "B"]]},
            {"id": "7", "relation": "new", "answer_entity": [[20, "B"]]},
            {"id": "8", "relation": "r"}]  # non-linkable: not scored
    out = most_frequent_answer_baseline(train, test)
    assert out["total"] == 3 and out["correct"] == 2
    assert out["per_relation"]["r"]["answer"] == [20, "B"]
    assert out["predictions"]["6"] == ["D", [40]]
    assert out["predictions"]["7"] == ["B", [20]]  # unseen relation -> overall most frequent
    assert "8" not in out["predictions"]


def test_write_entity_tokens_with_object_and_callable(tmp_path):
    class Tok:
        special = {"<E_s>": 900, "<E_e>": 901}

        def tokenize(self, text):
            return text.split()

        def convert_tokens_to_ids(self, tokens):
            if isinstance(tokens, str):
                return self.special[tokens]
            return [len(t) for t in tokens]

    vocab = {10: "Georgia (U.S. state)", 11: "Paris, Texas"}
    assert write_entity_tokens(vocab, Tok(), tmp_path / "a.json") == 2
    assert json.loads((tmp_path / "a.json").read_text()) == {"10": [[900, 7, 901]], "11": [[900, 6, 5, 901]]}
    write_entity_tokens(vocab, lambda t: [ord(c) for c in t.strip()[:2]], tmp_path / "b.json", marker_ids=(1, 2))
    assert json.loads((tmp_path / "b.json").read_text())["11"] == [[1, ord("p"), ord("a"), 2]]
    with pytest.raises(ValueError):
        write_entity_tokens(vocab, lambda t: [], tmp_path / "c.json")


def test_main_writes_a_small_build(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "kb"), "--num-cities", "30", "--homonyms-per-name", "0",
                 "--paraphrases-per-fact", "1"]) == 0
    assert "pretraining passages" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["knobs"]["num_cities"] == 30
    assert (tmp_path / "kb" / "openqa" / "geo" / "entity_linking" / "el_geo-test.jsonl").is_file()


def test_project_loaders_read_the_build_without_repairs(built):
    """The files go through the same readers as the original data, with nothing repaired or skipped."""
    from edmem.data.entity_vocab import load_entity_list, load_id2entity
    from edmem.data.formats import load_answer_links, load_el_split

    for split in SPLITS:
        examples, report = load_el_split(built.data_dir, built.task, built.datafile_prefix, split,
                                         entity_vocab_size=built.num_entity_rows)
        assert len(examples) == built.counts[f"questions_{split}"] and not report.repaired and not report.skipped
        assert len(load_answer_links(built.sling[split])) == len(examples)
    assert len(load_id2entity(built.entid2entityitemid)) == built.counts["entities"]
    assert len(load_entity_list(built.entity_names)) == built.num_entity_rows
