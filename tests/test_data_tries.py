"""Prefix-trie pickles: plain data loads, anything needing a class lookup is refused; export-trie."""

from __future__ import annotations

import json
import os
import pickle

import pytest

from edmem.data.tries import export_trie, load_trie, load_trie_json, loads_plain_pickle, main
from edmem.errors import DataError


class Exploit:
    """Unpickling this would call os.system (if allowed)."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


TRIE = {"0": {50265: {1236: {50266: {}}}, 7: {}}, "8": {}}


def test_plain_trie_round_trip(tmp_path):
    pkl = tmp_path / "trie.pkl"
    pkl.write_bytes(pickle.dumps(TRIE, protocol=4))
    assert load_trie(pkl) == TRIE
    out = tmp_path / "out" / "trie.json"
    assert main([str(pkl), str(out)]) == 0
    data = json.loads(out.read_text())
    assert data == {"0": {"50265": {"1236": {"50266": {}}}, "7": {}}, "8": {}}
    assert load_trie_json(out) == TRIE
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"5": {"6": {}}}))
    assert load_trie_json(single, per_question=False) == {5: {6: {}}}


@pytest.mark.parametrize("payload", [Exploit(), {"a": Exploit()}, {1: {2: set()}},
                                     {"x": Exception("boom")}])
def test_malicious_or_class_needing_pickle_is_refused(tmp_path, payload):
    pkl = tmp_path / "evil.pkl"
    try:
        pkl.write_bytes(pickle.dumps(payload, protocol=2))
    except (TypeError, pickle.PicklingError):
        pytest.skip("payload not picklable")
    with pytest.raises(DataError, match="refusing to load") as info:
        load_trie(pkl)
    assert str(pkl) in str(info.value)
    assert main([str(pkl), str(tmp_path / "o.json")]) == 1
    assert not (tmp_path / "o.json").exists()


def test_exploit_is_never_executed(tmp_path, monkeypatch):
    payload = pickle.dumps(Exploit())
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd))
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        loads_plain_pickle(payload)
    assert calls == []


def test_not_a_dict_and_garbage(tmp_path):
    pkl = tmp_path / "list.pkl"
    pkl.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="expected a dict"):
        load_trie(pkl)
    pkl.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError):
        load_trie(pkl)
    with pytest.raises(DataError, match="file not found"):
        load_trie(tmp_path / "missing.pkl")


def test_wq_trie_export(wq_dir, tmp_path):
    src = wq_dir / "prefix_trie/wq/wq_top1_entity_trie.pkl"
    trie = load_trie(src)
    assert len(trie) == 2032 and all(isinstance(k, str) for k in trie)
    out = tmp_path / "wq_trie.json"
    assert export_trie(src, out) == 2032
    assert load_trie_json(out) == trie
