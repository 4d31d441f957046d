"""``edmem memory add / edit / remove`` end to end on the tiny model directory (edmem.testing)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import knowledge_tiny as kt
from edmem.cli import main as edmem_main

FAST = ["--steps", "3", "--batch_size", "4", "--no_progress"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from edmem.testing import build_tiny_model_dir
    return build_tiny_model_dir(tmp_path_factory.mktemp("memory") / "model")


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    new = kt.write_jsonl(kt.new_entities_rows(), tmp_path / "new.jsonl")
    passages = kt.write_jsonl([
        kt.passage("n1", "The capital of Chile is Santiago.", ("Chile", 2000), ("Santiago", 2001)),
        kt.passage("n2", "Santiago is a city in Chile, west of Peru.", ("Santiago", 2001), ("Chile", 2000),
                   ("Peru", 1006))], tmp_path / "passages.jsonl")
    return new, passages


def _memory(*argv: str) -> int:
    return edmem_main(["memory", *argv])


def _load(path: Path):
    from edmem.inference.model_dir import load_model_dir
    return load_model_dir(path)


def _log(path: Path) -> list[dict]:
    return [json.loads(x) for x in (path / "memory_log.jsonl").read_text().splitlines()]


def test_add_writes_a_complete_model_dir_and_leaves_the_input_alone(model_dir, tmp_path, capsys) -> None:
    new, passages = _inputs(tmp_path)
    before = _digest(model_dir)
    out = tmp_path / "added"
    assert _memory("add", "--model", str(model_dir), "--entities", str(new), "--passages", str(passages),
                   "--output", str(out), *FAST) == 0
    assert "added 2 entities (3 steps on 2 passages" in capsys.readouterr().out
    assert _digest(model_dir) == before
    src, dst = _load(model_dir), _load(out)
    n = src.rows.num_rows
    assert dst.rows.num_rows == dst.config.entity_vocab_size == n + 2
    assert [dst.rows.id_to_row(i) for i in (2000, 2001)] == [n, n + 1]
    assert all(dst.rows.id_to_row(i) == src.rows.id_to_row(i) for i in src.entities.names)
    assert dst.entities.names[2000] == "Chile" and dst.entities.type_of(2001) == "city"
    assert dst.aliases[2000] == ["Republic of Chile"]
    old, new_table = src.model.EntityEmbedding.weight, dst.model.EntityEmbedding.weight
    assert torch.equal(new_table[:, :n], old)
    for key, value in src.model.state_dict().items():
        if "EntityEmbedding" not in key:
            assert torch.equal(dst.model.state_dict()[key], value), key
    record, = _log(out)
    assert record["operation"] == "add" and [e["id"] for e in record["entities"]] == [2000, 2001]
    assert record["passages"]["sha256"] == hashlib.sha256(passages.read_bytes()).hexdigest()
    from edmem.inference.linker import EntityLinker
    linked = EntityLinker(dst)("what is the capital of chile?")
    assert [m.text for m in linked.mentions] == ["chile"]  # the alias table knows the new entity


def test_type_mean_init_and_python_api(model_dir, tmp_path) -> None:
    from edmem.knowledge import add_entities
    from edmem.knowledge.fit import FitSettings

    new, passages = _inputs(tmp_path)
    entities = [{"id": 2000, "name": "Chile", "aliases": [], "type": "country"}]
    record = add_entities(model_dir, entities, kt.write_jsonl([kt.passage(
        "n", "The capital of Chile is Lima.", ("Chile", 2000), ("Lima", 1007))], tmp_path / "p1.jsonl"),
        tmp_path / "api", init="type_mean", settings=FitSettings(steps=0, progress=False))
    dst, src = _load(tmp_path / "api"), _load(model_dir)
    countries = [src.rows.id_to_row(i) for i, t in src.entities.types.items() if t == "country"]
    table = dst.model.EntityEmbedding.weight.detach()
    assert torch.allclose(table[:, dst.rows.id_to_row(2000)], table[:, countries].mean(dim=1))
    assert record["init"] == "type_mean" and record["fit"]["steps"] == 0


def test_output_guard(model_dir, tmp_path, capsys) -> None:
    new, passages = _inputs(tmp_path)
    out = tmp_path / "o"
    args = ["add", "--model", str(model_dir), "--entities", str(new), "--passages", str(passages), *FAST]
    assert _memory(*args, "--output", str(out)) == 0
    capsys.readouterr()
    assert _memory(*args, "--output", str(out)) == 1
    assert capsys.readouterr().err.strip() == f"edmem memory add: error: --output {out} exists; pass --overwrite to replace it"
    assert _memory(*args, "--output", str(out), "--overwrite") == 0
    other = tmp_path / "not-a-model"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert _memory(*args, "--output", str(other), "--overwrite") == 1
    assert "is not a model directory; refusing to replace it" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "x"
    assert _memory(*args, "--output", str(model_dir), "--overwrite") == 1
    assert "is the input model directory" in capsys.readouterr().err


def test_no_write_access_is_one_clear_error(model_dir, tmp_path, capsys, monkeypatch) -> None:
    import edmem.knowledge.api as api

    new, passages = _inputs(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    real = api.os.access
    monkeypatch.setattr(api.os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    assert _memory("add", "--model", str(model_dir), "--entities", str(new), "--passages", str(passages),
                   "--output", str(locked / "out"), *FAST) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"edmem memory add: error: --output {locked / 'out'}: no write access to {locked}"


def test_read_only_input_directory_is_fine(model_dir, tmp_path) -> None:
    import shutil

    from edmem.knowledge import remove_entities

    ro = tmp_path / "ro"
    shutil.copytree(model_dir, ro)
    for p in [ro, *ro.iterdir()]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        before = _digest(ro)
        remove_entities(ro, [1001], tmp_path / "from-ro")
        assert _digest(ro) == before
    finally:
        for p in [ro, *ro.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.mark.parametrize("case", ["existing_id", "unknown_link", "outside_text", "empty_passages",
                                  "empty_entities", "bad_json"])
def test_bad_input_is_one_error_line_and_nothing_written(model_dir, tmp_path, capsys, case) -> None:
    new, passages = _inputs(tmp_path)
    if case == "existing_id":
        new = kt.write_jsonl([{"id": 1000, "name": "France"}], tmp_path / "bad.jsonl")
        expected = f"{new}, line 1, field 'id': entity id 1000 is already in the model"
    elif case == "unknown_link":
        passages = kt.write_jsonl([kt.passage("u", "Chile borders Ruritania.", ("Chile", 2000),
                                              ("Ruritania", 4242))], tmp_path / "bad.jsonl")
        expected = (f"{passages}, line 1, field 'hyperlinks.link_target': mention 1 links entity id 4242, "
                    "which is neither in the model nor among the new entities")
    elif case == "outside_text":
        passages = kt.write_jsonl([{"id": "o", "text": "Chile.", "hyperlinks": {
            "link_offset": [2], "link_length": [40], "link_target": [2000]}}], tmp_path / "bad.jsonl")
        expected = f"{passages}, line 1, field 'link_offset': span 0 [2, 42) lies outside the text (length 6)"
    elif case == "empty_passages":
        passages = kt.write_jsonl([], tmp_path / "bad.jsonl")
        expected = f"{passages}: no passages (the file is empty)"
    elif case == "empty_entities":
        new = kt.write_jsonl([], tmp_path / "bad.jsonl")
        expected = f"{new}: no entities (the file is empty)"
    else:
        passages = tmp_path / "bad.jsonl"
        passages.write_text('{"id": 1, "text": "x"\n')
        expected = f"{passages}, line 1: invalid JSON"
    out = tmp_path / "out"
    status = _memory("add", "--model", str(model_dir), "--entities", str(new), "--passages", str(passages),
                     "--output", str(out), *FAST)
    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err and "Traceback" not in err
    assert err.startswith(f"edmem memory add: error: {expected}")
    assert not out.exists()


def test_mention_not_named_like_its_entity_is_a_counted_warning(model_dir, tmp_path, capsys) -> None:
    new, _ = _inputs(tmp_path)
    passages = kt.write_jsonl([kt.passage("w", "The capital of Chili is Santiago.", ("Chili", 2000),
                                          ("Santiago", 2001))], tmp_path / "w.jsonl")
    assert _memory("add", "--model", str(model_dir), "--entities", str(new), "--passages", str(passages),
                   "--output", str(tmp_path / "out"), *FAST) == 0
    err = capsys.readouterr().err
    assert "1 mention(s) whose text is not their entity's name or an alias (used anyway)" in err
    assert "'Chili' links 2000" in err
    assert _log(tmp_path / "out")[0]["passages"]["name_mismatches"] == 1


def test_edit_refit_subjects_moves_each_passages_first_mention_only(model_dir, tmp_path) -> None:
    passages = kt.write_jsonl([kt.passage("e1", "The capital of France is Rome.", ("France", 1000), ("Rome", 1003)),
                               kt.passage("e2", "Japan uses the Euro.", ("Japan", 1003), ("Euro", 1002)),
                               kt.passage("e3", "The Euro is used in France.", ("Euro", 1002), ("France", 1000))],
                              tmp_path / "edit.jsonl")
    out = tmp_path / "edited"
    assert _memory("edit", "--model", str(model_dir), "--passages", str(passages), "--output", str(out),
                   "--refit", "subjects", *FAST) == 0
    src, dst = _load(model_dir), _load(out)
    a, b = src.model.EntityEmbedding.weight.detach(), dst.model.EntityEmbedding.weight.detach()
    changed = {r for r in range(a.shape[1]) if not torch.equal(a[:, r], b[:, r])}
    # each passage's first mention: France, Japan, Euro (in that order); Rome is only an object
    assert changed == {src.rows.id_to_row(i) for i in (1000, 1003, 1002)}
    record, = _log(out)
    assert record["refit"] == "subjects" and [r["id"] for r in record["rows"]] == [1000, 1003, 1002]
    # the default is the same (chosen on dev edits, docs/knowledge.md)
    default = tmp_path / "default"
    assert _memory("edit", "--model", str(model_dir), "--passages", str(passages), "--output", str(default),
                   *FAST) == 0
    assert _log(default)[0]["refit"] == "subjects"
    c = _load(default).model.EntityEmbedding.weight.detach()
    assert {r for r in range(a.shape[1]) if not torch.equal(a[:, r], c[:, r])} == changed


def test_edit_refits_linked_rows_only_and_records_the_change(model_dir, tmp_path, capsys) -> None:
    passages = kt.write_jsonl([kt.passage("e", "The capital of France is Rome.", ("France", 1000),
                                          ("Rome", 1003))], tmp_path / "edit.jsonl")
    out = tmp_path / "edited"
    assert _memory("edit", "--model", str(model_dir), "--passages", str(passages), "--output", str(out),
                   "--refit", "linked", *FAST) == 0
    src, dst = _load(model_dir), _load(out)
    a, b = src.model.EntityEmbedding.weight.detach(), dst.model.EntityEmbedding.weight.detach()
    changed = {r for r in range(a.shape[1]) if not torch.equal(a[:, r], b[:, r])}
    assert changed == {src.rows.id_to_row(1000), src.rows.id_to_row(1003)}
    record, = _log(out)
    assert record["operation"] == "edit" and record["refit"] == "linked"
    assert [r["id"] for r in record["rows"]] == [1000, 1003]
    for r in record["rows"]:
        assert r["norm_before"] == pytest.approx(float(a[:, r["row"]].norm()))
        assert r["norm_after"] == pytest.approx(float(b[:, r["row"]].norm()))
        assert r["change_norm"] > 0
    assert record["passages"]["sha256"] == hashlib.sha256(passages.read_bytes()).hexdigest()
    # --rows restricts the edit; history is carried over
    out2 = tmp_path / "edited2"
    assert _memory("edit", "--model", str(out), "--passages", str(passages), "--output", str(out2),
                   "--rows", "1000", *FAST) == 0
    c = _load(out2).model.EntityEmbedding.weight.detach()
    assert {r for r in range(b.shape[1]) if not torch.equal(b[:, r], c[:, r])} == {src.rows.id_to_row(1000)}
    assert [r["operation"] for r in _log(out2)] == ["edit", "edit"]
    capsys.readouterr()
    assert _memory("edit", "--model", str(model_dir), "--passages", str(passages), "--output",
                   str(tmp_path / "x"), "--rows", "999999", *FAST) == 1
    assert "error: --rows: unknown entity id(s) [999999]" in capsys.readouterr().err


def test_remove_hides_entities_from_every_read_without_renumbering(model_dir, tmp_path, capsys) -> None:
    from edmem.inference.linker import EntityLinker
    from edmem.testing import tiny_questions

    out = tmp_path / "removed"
    assert _memory("remove", "--model", str(model_dir), "--ids", "1001", "1003", "--output", str(out)) == 0
    src, dst = _load(model_dir), _load(out)
    assert dst.rows.to_json() == src.rows.to_json()
    assert torch.equal(src.model.EntityEmbedding.weight, dst.model.EntityEmbedding.weight)
    assert dst.config.hidden_entity_rows == sorted([src.rows.id_to_row(1001), src.rows.id_to_row(1003)])
    assert dst.metadata["hidden_entities"] == [1001, 1003]
    before = EntityLinker(src, top_k=10)
    after = EntityLinker(dst, top_k=10)
    seen_before = set()
    for question, *_ in tiny_questions():
        seen_before |= {e.id for e in before(question).top_k}
        result = after(question)
        ids = {e.id for e in result.top_k} | {e.id for m in result.mentions for e in m.entities}
        assert not ids & {1001, 1003}
    assert {1001, 1003} <= seen_before  # they were answers before
    assert _log(out)[0]["operation"] == "remove"
    capsys.readouterr()
    assert _memory("remove", "--model", str(model_dir), "--ids", "42", "--output", str(tmp_path / "x")) == 1
    assert capsys.readouterr().err.strip() == "edmem memory remove: error: --ids: unknown entity id(s) [42] (not in the model)"


def test_memory_help_lists_the_three_commands(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _memory("--help")
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "{add,edit,remove}" in text
    assert edmem_main(["--help"]) == 0
    assert "memory" in capsys.readouterr().out


def test_mention_deletion_flag_reaches_the_fit_and_is_recorded(model_dir, tmp_path, capsys) -> None:
    passages = kt.write_jsonl([kt.passage("e", "The currency of France is the Yen.", ("France", 1000),
                                          ("Yen", 1005))], tmp_path / "edit.jsonl")
    out = tmp_path / "edited"
    assert _memory("edit", "--model", str(model_dir), "--passages", str(passages), "--output", str(out),
                   "--rows", "1000", "--mention_deletion_probability", "1", *FAST) == 0
    record, = _log(out)
    assert record["settings"]["mention_deletion_probability"] == 1.0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        _memory("edit", "--model", str(model_dir), "--passages", str(passages), "--output",
                str(tmp_path / "x"), "--mention_deletion_probability", "1.5")
    assert exc.value.code != 0
    assert "expected a probability in [0, 1], got '1.5'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_added_ids_below_existing_ones_load_back(model_dir, tmp_path) -> None:
    """New ids need not be larger than the model's: the appended rows' mapping is saved out of
    id order and must load back (it did not: entity_rows.json demanded increasing ids)."""
    new = kt.write_jsonl([{"id": 15, "name": "Chile", "aliases": [], "type": "country"}], tmp_path / "new.jsonl")
    passages = kt.write_jsonl([kt.passage("n", "The currency of Chile is the Sol.", ("Chile", 15), ("Sol", 1008))],
                              tmp_path / "passages.jsonl")
    out = tmp_path / "plus"
    assert _memory("add", "--model", str(model_dir), "--entities", str(new), "--passages", str(passages),
                   "--output", str(out), *FAST) == 0
    src, dst = _load(model_dir), _load(out)
    assert dst.rows.id_to_row(15) == src.rows.num_rows  # the appended row
    assert dst.rows.id_to_row(1008) == src.rows.id_to_row(1008)
    assert dst.entities.names[15] == "Chile"
