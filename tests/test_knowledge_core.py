"""Row-level memory changes (edmem.knowledge.table / fit / inputs) on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edmem.data.entity_rows import EntityRows
from edmem.errors import DataError
from edmem.knowledge.fit import FitSettings, fit_rows
from edmem.knowledge.inputs import read_new_entities, read_passages
from edmem.knowledge.table import append_rows, hide_rows, initialise_rows
from edmem.pretraining.corpus import Passage
from edmem.pretraining.dataset import row_map
import knowledge_tiny as kt


@pytest.fixture()
def parts(tmp_path):
    return kt.build_parts(tmp_path)


def _passages(rows: list[dict]) -> list[Passage]:
    from edmem.data.formats import LoadReport
    from edmem.pretraining.corpus import parse_passage
    return [parse_passage(r, "x", i + 1, LoadReport("x")) for i, r in enumerate(rows)]


def test_append_rows_keeps_old_rows_and_ties_every_reader(parts) -> None:
    model, rows = parts["model"], parts["rows"]
    before = model.EntityEmbedding.weight.detach().clone()
    new_rows_map, new_rows = append_rows(model, rows, [2000, 2001])
    table = model.EntityEmbedding.weight
    assert new_rows == [rows.num_rows, rows.num_rows + 1]
    assert table.shape == (before.shape[0], before.shape[1] + 2)
    assert torch.equal(table[:, :before.shape[1]], before)
    assert model.config.entity_vocab_size == before.shape[1] + 2
    for reader in model.memory_readers():
        assert reader.EntityEmbedding.weight is table
    assert new_rows_map.id_to_row(2001) == new_rows[1] and new_rows_map.id_to_row(1004) == rows.id_to_row(1004)
    assert new_rows_map.compact


def test_row_map_handles_rows_appended_out_of_id_order() -> None:
    rows = EntityRows(np.array(list(range(10)) + [500, 700, 600], dtype=np.int64), compact=True)
    to_rows = row_map(rows)
    assert to_rows(np.array([500, 600, 700, 0, 650])).tolist() == [10, 12, 11, 0, 0]


def test_fit_moves_only_the_chosen_rows_and_lowers_the_loss(parts) -> None:
    model, tokenizer = parts["model"], parts["tokenizer"]
    rows, new_rows = append_rows(model, parts["rows"], [2000, 2001])
    initialise_rows(model, tokenizer, new_rows, method="type_mean", names=[["Chile"], ["Santiago"]],
                    types=["country", "city"], row_types={}, bos_prefix=True, max_length=32)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    table_before = model.EntityEmbedding.weight.detach().clone()
    report = fit_rows(model, tokenizer, rows, _passages(kt.new_passages()), new_rows,
                      FitSettings(steps=25, batch_size=3, learning_rate=0.05, progress=False, max_length=32))
    assert report.steps == 25 and report.passages == 3
    assert report.last_loss < report.first_loss
    after = model.state_dict()
    for key, value in state.items():
        if "EntityEmbedding" in key:
            continue
        assert torch.equal(after[key], value), key
    table = model.EntityEmbedding.weight.detach()
    old = [c for c in range(table.shape[1]) if c not in new_rows]
    assert torch.equal(table[:, old], table_before[:, old])
    assert not torch.equal(table[:, new_rows], table_before[:, new_rows])
    # the model is back as it was: eval mode, EL config, no parameter frozen by the fit
    assert not model.training and model.config.generate_target == "entity_linking"
    assert all(p.requires_grad for p in model.parameters())


def test_anchor_keeps_an_edited_row_closer_to_its_start(tmp_path) -> None:
    moved = {}
    for anchor in (0.0, 50.0):
        p = kt.build_parts(tmp_path / f"a{anchor}")
        row = p["rows"].id_to_row(1000)
        start = p["model"].EntityEmbedding.weight.detach()[:, row].clone()
        fit_rows(p["model"], p["tokenizer"], p["rows"], _passages(kt.edit_passages()), [row],
                 FitSettings(steps=20, batch_size=1, learning_rate=0.05, anchor=anchor, progress=False,
                             max_length=32))
        moved[anchor] = float((p["model"].EntityEmbedding.weight.detach()[:, row] - start).norm())
    assert 0 < moved[50.0] < moved[0.0]


def test_name_init_points_new_rows_along_the_models_query(parts) -> None:
    from edmem.knowledge.table import name_queries, reference_norm

    model, tokenizer = parts["model"], parts["tokenizer"]
    rows, new_rows = append_rows(model, parts["rows"], [2000, 2001])
    initialise_rows(model, tokenizer, new_rows, method="name", names=[["Chile", "Republic of Chile"], ["Santiago"]],
                    types=["country", "city"], row_types={}, bos_prefix=True, max_length=32)
    table = model.EntityEmbedding.weight.detach()
    q = name_queries(model, tokenizer, ["Santiago"], bos_prefix=True, max_length=32)[0]
    assert torch.allclose(table[:, new_rows[1]] / table[:, new_rows[1]].norm(), q / q.norm(), atol=1e-5)
    assert table[:, new_rows[0]].norm().item() == pytest.approx(reference_norm(model, new_rows[0]), rel=1e-4)


def test_type_mean_init_is_the_mean_of_rows_of_that_type(parts) -> None:
    model, rows = parts["model"], parts["rows"]
    row_types = {rows.id_to_row(i): t for i, t in parts["types"].items()}
    new_map, new_rows = append_rows(model, rows, [2000, 2001])
    initialise_rows(model, parts["tokenizer"], new_rows, method="type_mean", names=[["Chile"], ["Santiago"]],
                    types=["country", None], row_types=row_types, bos_prefix=True, max_length=32)
    table = model.EntityEmbedding.weight.detach()
    countries = [rows.id_to_row(i) for i in (1000, 1003, 1006)]
    assert torch.allclose(table[:, new_rows[0]], table[:, countries].mean(dim=1))
    assert torch.allclose(table[:, new_rows[1]], table[:, 10:new_rows[0]].mean(dim=1))  # unknown type


def test_hidden_rows_are_never_read_in_eval(parts) -> None:
    from edmem.data.formats import Mention
    from edmem.data.markers import encode_with_mentions

    model, tokenizer, rows = parts["model"], parts["tokenizer"], parts["rows"]
    text = "The capital of France is Paris."
    ids, _ = encode_with_mentions(tokenizer, text, [Mention(15, 6, 1000)], 32, bos_prefix=True)
    start = model.config.entity_start_token_id
    dec = [model.config.decoder_start_token_id, start]
    batch = dict(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                 decoder_input_ids=torch.tensor([dec]), decoder_attention_mask=torch.ones(1, 2, dtype=torch.long))
    with torch.no_grad():
        top = model(**batch).topk_entity
    seen = {int(r) for t in top for r in t.flatten()}
    victims = sorted(seen - set(range(10)))[:2]
    assert victims
    added = hide_rows(model.config, victims)
    assert added == victims and hide_rows(model.config, victims) == []
    with torch.no_grad():
        top = model(**batch).topk_entity
    assert not ({int(r) for t in top for r in t.flatten()} & set(victims))
    assert model.config.to_dict()["hidden_entity_rows"] == victims  # saved with config.json


# ---------------------------------------------------------------------------- input files
def test_new_entities_file_errors(tmp_path) -> None:
    def write(rows):
        return kt.write_jsonl(rows, tmp_path / "new.jsonl")

    exists = lambda i: i in kt.ENTITIES  # noqa: E731
    good = read_new_entities(write(kt.new_entities_rows()), exists)
    assert [e.id for e in good] == [2000, 2001] and good[0].names() == ["Chile", "Republic of Chile"]
    cases = [([{"id": 1000, "name": "France"}], "line 1, field 'id': entity id 1000 is already in the model"),
             ([{"id": "x", "name": "A"}], "field 'id': expected an integer id"),
             ([{"id": 3, "name": "A"}], "reserved"),
             ([{"id": 2000, "name": "A"}, {"id": 2000, "name": "B"}], "line 2, field 'id': entity id 2000 appears twice"),
             ([{"id": 2000, "name": ""}], "field 'name'"),
             ([{"id": 2000, "name": "A", "aliases": "B"}], "field 'aliases'"),
             ([{"id": 2000, "name": "A", "type": 3}], "field 'type'"),
             ([], "no entities")]
    for rows, message in cases:
        with pytest.raises(DataError, match=message):
            read_new_entities(write(rows), exists)


def test_passage_file_errors_and_warnings(tmp_path) -> None:
    names = {i: [n] for i, (n, _) in kt.ENTITIES.items()}
    known = set(kt.ENTITIES)
    path = kt.write_jsonl(kt.edit_passages(), tmp_path / "p.jsonl")
    ok = read_passages(path, known, names)
    assert len(ok.passages) == 1 and ok.name_mismatches == 0 and len(ok.sha256) == 64
    assert ok.linked_ids() == [1000, 1005]

    unknown = kt.passage("u", "The currency of France is the Won.", ("France", 1000), ("Won", 4242))
    with pytest.raises(DataError, match=r"line 1, field 'hyperlinks.link_target': .*4242"):
        read_passages(kt.write_jsonl([unknown], tmp_path / "u.jsonl"), known, names)
    outside = {"id": "o", "text": "Short.", "hyperlinks": {"link_offset": [3], "link_length": [10],
                                                           "link_target": [1000]}}
    with pytest.raises(DataError, match=r"line 1, field 'link_offset': span 0 \[3, 13\) lies outside"):
        read_passages(kt.write_jsonl([outside], tmp_path / "o.jsonl"), known, names)
    with pytest.raises(DataError, match="no passages"):
        read_passages(kt.write_jsonl([], tmp_path / "e.jsonl"), known, names)
    wrong = kt.passage("w", "The currency of Gaul is the Yen.", ("Gaul", 1000), ("Yen", 1005))
    warned = read_passages(kt.write_jsonl([wrong, *kt.edit_passages()], tmp_path / "w.jsonl"), known, names)
    assert warned.name_mismatches == 1 and "'Gaul' links 1000" in warned.mismatch_examples[0]
    assert len(warned.passages) == 2  # counted, not dropped


def test_norm_cap_keeps_fitted_rows_from_growing(tmp_path) -> None:
    norms = {}
    for cap in (1.0, 0.0):
        p = kt.build_parts(tmp_path / f"c{cap}")
        table = p["model"].EntityEmbedding.weight
        row = p["rows"].id_to_row(1000)
        limit = max(float(table.detach()[:, row].norm()), float(table.detach()[:, 10:].norm(dim=0).mean()))
        fit_rows(p["model"], p["tokenizer"], p["rows"], _passages(kt.edit_passages()), [row],
                 FitSettings(steps=15, batch_size=1, learning_rate=0.5, norm_cap=cap, progress=False,
                             max_length=32))
        norms[cap] = (float(table.detach()[:, row].norm()), limit)
    assert norms[1.0][0] <= norms[1.0][1] * (1 + 1e-5)
    assert norms[0.0][0] > norms[0.0][1]


@pytest.mark.parametrize("deletion", [0.0, 1.0])
def test_fit_dataset_applies_mention_deletion_to_the_encoder_input_only(parts, deletion) -> None:
    from edmem.knowledge.fit import fit_dataset

    tokenizer = parts["tokenizer"]
    start = parts["model"].config.entity_start_token_id
    rows, _ = append_rows(parts["model"], parts["rows"], [2000, 2001])
    dataset, skipped = fit_dataset(tokenizer, rows, _passages(kt.new_passages()),
                                   FitSettings(mention_deletion_probability=deletion, max_length=32))
    assert skipped == 0 and len(dataset) == 3
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            item = dataset[i]
            in_encoder, in_labels = item["input_ids"].count(start), item["labels"].count(start)
            assert in_labels == 2  # every passage has two mentions; the decoder reconstructs both
            assert in_encoder == (1 if deletion == 1.0 else 2)
            assert len(item["input_entity_link"]) == len(item["input_ids"])
            # the deleted mention's entity is still the decoder's target
            assert sorted(x for x in item["output_entity_link"] if x) != [] and \
                set(x for x in item["output_entity_link"] if x) >= set(x for x in item["input_entity_link"] if x)


def test_fit_with_mention_deletion_trains_the_cue_rows(parts) -> None:
    """Y deleted from 'The currency of France is the Yen.': France's row (the cue) is what the
    decoder reads to name Yen, so fitting France's row alone lowers the loss."""
    model, tokenizer, rows = parts["model"], parts["tokenizer"], parts["rows"]
    row = rows.id_to_row(1000)
    before = model.EntityEmbedding.weight.detach().clone()
    report = fit_rows(model, tokenizer, rows, _passages(kt.edit_passages()), [row],
                      FitSettings(steps=30, batch_size=4, learning_rate=0.05, mention_deletion_probability=1.0,
                                  progress=False, max_length=32))
    after = model.EntityEmbedding.weight.detach()
    assert np.mean(report.losses[-5:]) < np.mean(report.losses[:5])
    changed = {c for c in range(after.shape[1]) if not torch.equal(after[:, c], before[:, c])}
    assert changed == {row}


def test_fitted_rows_are_the_cue_unless_asked_otherwise(parts) -> None:
    """Deletion removes the mention of a frozen row (Yen), never the fitted one (France), so the
    decoder must name Yen from France's row; --delete_fitted_mentions allows either."""
    from edmem.knowledge.fit import fit_dataset

    rows = parts["rows"]
    france, yen = rows.id_to_row(1000), rows.id_to_row(1005)
    kept: dict[bool, set] = {}
    for allow in (False, True):
        dataset, _ = fit_dataset(parts["tokenizer"], rows, _passages(kt.edit_passages()),
                                 FitSettings(mention_deletion_probability=1.0, delete_fitted_mentions=allow,
                                             max_length=32), [france])
        kept[allow] = set()
        for epoch in range(12):
            dataset.set_epoch(epoch)
            kept[allow].add(tuple(x for x in dataset[0]["input_entity_link"] if x))
    assert kept[False] == {(france,)}
    assert kept[True] == {(france,), (yen,)}


def test_entity_rows_with_appended_rows_round_trip_and_duplicates_are_refused(tmp_path) -> None:
    import json

    from edmem.errors import CheckpointError

    rows = EntityRows(np.array(list(range(10)) + [500, 700, 600], dtype=np.int64), compact=True)
    rows.save(tmp_path)
    back = EntityRows.load(tmp_path)
    assert [back.id_to_row(i) for i in (500, 700, 600)] == [10, 11, 12]
    data = json.loads((tmp_path / "entity_rows.json").read_text())
    for bad in ([500, 700, 500], [5, 700]):
        (tmp_path / "entity_rows.json").write_text(json.dumps({**data, "ids": bad}))
        with pytest.raises(CheckpointError, match="distinct and at least 10"):
            EntityRows.load(tmp_path)
