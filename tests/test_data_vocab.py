"""Entity vocabularies: both name formats (dense / sparse ids), token files, errors."""

from __future__ import annotations

import json

import pytest

from edmem.data.entity_vocab import (EntityNames, load_entity_list, load_entity_names,
                                     load_entity_tokens, load_id2entity)
from edmem.errors import DataError


def test_id2entity_sparse(fixtures_dir):
    names = load_id2entity(fixtures_dir / "data/entid2entityitemid_toy.json")
    assert len(names) == 9 and names.max_id == 33
    assert names[20] == "Zorbania" and names[33] == "Café Müller (band)"
    assert 25 not in names and names.get(25) is None and names.get(25, "?") == "?"
    with pytest.raises(KeyError):
        names[25]
    assert list(names.ids())[:3] == [0, 20, 21]
    assert dict(names.items())[31] == "Queen Ada"


def test_entity_list_dense(fixtures_dir):
    names = load_entity_names(fixtures_dir / "data/entity_toy.json")
    assert list(names.names()) == ["[reserved_0]", "Zorbania", "Zorbania City", "Café Müller"]
    assert 3 in names and 4 not in names and -1 not in names


def test_unsorted_ids_are_sorted_and_duplicates_rejected(tmp_path):
    path = tmp_path / "v.json"
    path.write_text('{"12": {"entity": "B"}, "3": {"entity": "A", "x": [1]}}')
    names = load_entity_names(path)
    assert list(names.items()) == [(3, "A"), (12, "B")]
    path.write_text('{"3": {"entity": "A"}, "3": {"entity": "B"}}')
    with pytest.raises(DataError, match="appears twice"):
        load_id2entity(path)


@pytest.mark.parametrize("text, words", [
    ('{"1": {"name": "A"}}', "expected"),
    ('{"x": {"entity": "A"}}', "not an integer"),
    ('[1, 2]', "expected an object"),
    ('{"1": {"entity": "A"}', "invalid JSON"),
])
def test_bad_id2entity(tmp_path, text, words):
    path = tmp_path / "v.json"
    path.write_text(text)
    with pytest.raises(DataError, match=words):
        load_id2entity(path)


def test_bad_entity_list(tmp_path):
    path = tmp_path / "v.json"
    path.write_text('["A", 3]')
    with pytest.raises(DataError, match="entry 1"):
        load_entity_list(path)


def test_entity_tokens(fixtures_dir, tmp_path):
    tokens = load_entity_tokens(fixtures_dir / "data/entity_tokens_toy.json")
    assert tokens == {20: [[50265, 1001, 50266]], 21: [[50265, 1001, 1002, 50266]]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"1": [["a"]]}))
    with pytest.raises(DataError, match="integer token ids"):
        load_entity_tokens(path)


def test_compact_storage_and_non_ascii():
    names = EntityNames(None, ["a", "Ünïcode", ""])
    assert [names[i] for i in range(3)] == ["a", "Ünïcode", ""]
    big = EntityNames(None, [f"Entity {i}" for i in range(10_000)])
    assert big[9_999] == "Entity 9999" and big.nbytes < 200_000


def test_wq_vocab_formats_agree(wq_dir):
    by_id = load_id2entity(wq_dir / "wikipedia/entid2entityitemid_wq.json")
    as_list = load_entity_list(wq_dir / "wikipedia/entity_wq.json")
    assert len(by_id) == len(as_list) == 8548
    assert sorted(by_id.names()) == sorted(as_list.names())
    assert 10 <= min(by_id.ids()) and by_id.max_id < 1_000_010
