"""EntityLinker and the model directory on a tiny real model (edmem.testing)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edmem.errors import DataError
from edmem.inference.linker import EntityLinker, LinkResult
from edmem.inference.model_dir import (FORMAT_VERSION, METADATA, ModelDirError, load_model_dir,
                                       read_metadata)
from edmem.testing import build_tiny_model_dir, tiny_entities, tiny_questions

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def linker(model_dir) -> EntityLinker:
    return EntityLinker.from_pretrained(model_dir)


def copy_dir(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(model_dir, target)
    return target


# ---------------------------------------------------------------------------- model directory
def test_model_dir_round_trip(model_dir):
    loaded = load_model_dir(model_dir)
    names, types, aliases = tiny_entities()
    assert loaded.entities.names == names
    assert loaded.entities.types == types
    assert loaded.aliases == aliases
    assert loaded.rows.compact and loaded.rows.num_rows == loaded.config.entity_vocab_size
    assert loaded.config.model_type == "edmem"
    assert loaded.metadata["version"] == FORMAT_VERSION
    assert not loaded.model.training
    start, end = loaded.tokenizer.convert_tokens_to_ids(["<E_s>", "<E_e>"])
    assert (start, end) == (loaded.config.entity_start_token_id, loaded.config.entity_end_token_id)


def test_model_dir_saved_atomically_over_an_old_one(tmp_path):
    target = tmp_path / "m"
    build_tiny_model_dir(target)
    first = (target / "model.safetensors").read_bytes()
    build_tiny_model_dir(target, seed=1)
    assert (target / "model.safetensors").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]   # no temp/old folder left


@pytest.mark.parametrize("missing", ["model.safetensors", "vocab.json", "entities.jsonl"])
def test_model_dir_missing_file(model_dir, tmp_path, missing):
    broken = copy_dir(model_dir, tmp_path)
    (broken / missing).unlink()
    with pytest.raises(ModelDirError, match=f"incomplete model directory, missing {missing}"):
        load_model_dir(broken)


def test_model_dir_other_version_and_not_a_dir(model_dir, tmp_path):
    other = copy_dir(model_dir, tmp_path)
    meta = json.loads((other / METADATA).read_text())
    meta["version"] = 99
    (other / METADATA).write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match="format version 99, this edmem reads version 1"):
        read_metadata(other)
    with pytest.raises(ModelDirError, match="model directory not found"):
        load_model_dir(tmp_path / "nope")
    train_out = tmp_path / "train_out"
    train_out.mkdir()
    (train_out / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelDirError, match="training output folder"):
        load_model_dir(train_out)


@pytest.mark.parametrize("field, value, message", [
    ("activation_dropout", [0.0], "'activation_dropout' must be a probability in \\[0, 1\\]"),
    ("dropout", 1.5, "'dropout' must be a probability"),
    ("activation_function", "nope", "'activation_function' is not a known activation"),
    ("memory_chunk_size", "5", "memory_chunk_size must be an integer"),
    ("entity_token_weight", [1.0], "entity_token_weight must be a finite number"),
])
def test_model_dir_config_fields_checked_before_the_forward_pass(model_dir, tmp_path, field, value,
                                                                 message):
    """Found by fuzzing (target model_dir_config): a list dropout crashed inside F.dropout."""
    broken = copy_dir(model_dir, tmp_path)
    config = json.loads((broken / "config.json").read_text())
    config[field] = value
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelDirError, match=f"config.json: not a valid edmem config .*{message}"):
        load_model_dir(broken)


def test_model_dir_config_too_large_to_build_is_one_error(model_dir, tmp_path):
    """Found by fuzzing (target model_dir_config): d_model 2**31 passes every field check and the
    allocator's RuntimeError escaped; it is now reported naming config.json."""
    broken = copy_dir(model_dir, tmp_path)
    config = json.loads((broken / "config.json").read_text())
    config["d_model"] = 2 ** 31
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelDirError, match="config.json: cannot build a model from it"):
        load_model_dir(broken)


@pytest.mark.parametrize("encoding, message", [
    ([50], "expected an object, got list"),
    ({"max_input_length": [50]}, "max_input_length must be an integer >= 2"),
    ({"max_input_length": 1}, "max_input_length must be an integer >= 2"),
    ({"do_cased": "no"}, "do_cased must be true or false"),
])
def test_model_dir_encoding_options_are_type_checked(model_dir, tmp_path, encoding, message):
    """Found by fuzzing (target model_dir_manifest): a list max_input_length failed inside
    question encoding with a TypeError."""
    broken = copy_dir(model_dir, tmp_path)
    meta = json.loads((broken / METADATA).read_text())
    meta["encoding"] = encoding
    (broken / METADATA).write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match=f"edmem_model.json: bad 'encoding' \\({message}"):
        load_model_dir(broken, load_model=False)


def test_alias_file_unknown_id_and_bad_bytes(model_dir, tmp_path):
    aliases = tmp_path / "aliases.jsonl"
    aliases.write_text('{"id": 1000, "aliases": ["la france"]}\n{"id": 77, "aliases": ["x"]}\n')
    with pytest.raises(DataError, match=r"aliases.jsonl, line 2, field 'id': unknown entity id 77"):
        load_model_dir(model_dir, alias_file=aliases, load_model=False)
    aliases.write_bytes(b'{"id": 1000, "aliases": ["la fran\xe7e"]}\n')
    with pytest.raises(DataError, match="line 1: not UTF-8 text"):
        load_model_dir(model_dir, alias_file=aliases, load_model=False)
    aliases.write_text('{"id": 1000, "aliases": ["la belle france"]}\n')
    linker = EntityLinker.from_pretrained(model_dir, alias_file=aliases)
    result = linker("what is the capital of la belle france?")
    assert [m.text for m in result.mentions] == ["la belle france"]


# ---------------------------------------------------------------------------- API
def test_answers_detected_questions(linker):
    questions = tiny_questions()
    results = linker.batch([q for q, *_ in questions], batch_size=7)
    assert [r.question for r in results] == [q for q, *_ in questions]
    for result, (question, offset, length, answer) in zip(results, questions):
        assert [(m.start, m.end) for m in result.mentions] == [(offset, offset + length)]
        assert result.mentions[0].text == question[offset:offset + length]
        assert not result.no_mention
    correct = sum(r.answer.id == a for r, (*_, a) in zip(results, questions))
    assert correct >= len(questions) - 2   # the tiny model memorised its training questions


def test_result_fields_and_json(linker):
    result = linker("What is the capital of FRANCE?", top_k=3)
    assert isinstance(result, LinkResult)
    assert len(result.top_k) == 3 and result.answer == result.top_k[0]
    scores = [e.score for e in result.top_k]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-6
    assert result.answer.name == "Paris" and result.answer.type == "city"
    mention = result.mentions[0]
    assert (mention.text, mention.start, mention.end) == ("FRANCE", 23, 29)
    assert len(mention.entities) == 3 and all(e.name for e in mention.entities)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["answer"]["id"] == result.answer.id and data["mentions"][0]["text"] == "FRANCE"


def test_no_mention_is_still_answered(linker):
    result = linker("hello there, anyone?")
    assert result.no_mention and result.mentions == []
    assert result.answer is not None and len(result.top_k) == linker.top_k


def test_batch_equals_single_calls(linker):
    questions = ["what is the capital of peru?", "hi", "which city is the capital of japan and egypt?",
                 {"question": "capital of italy?", "mentions": [{"offset": 11, "length": 5}]}]
    batched = linker.batch(questions, batch_size=4)
    for question, result in zip(questions, batched):
        single = linker(question)
        assert [e.id for e in single.top_k] == [e.id for e in result.top_k]
        assert [e.score for e in single.top_k] == pytest.approx([e.score for e in result.top_k], abs=1e-4)
        assert [[e.id for e in m.entities] for m in single.mentions] == \
            [[e.id for e in m.entities] for m in result.mentions]
    assert len(batched[2].mentions) == 2


def test_given_spans_skip_detection(linker):
    question = {"question": "what is the capital of france?",
                "mentions": [{"offset": 12, "length": 7, "target": "1000"}]}
    result = linker(question)
    assert [(m.start, m.end, m.text) for m in result.mentions] == [(12, 19, "capital")]
    assert linker({"question": "what is the capital of france?", "mentions": []}).no_mention


def test_same_answers_as_the_prediction_path(model_dir, linker):
    """Markers exactly as in training: the linker with gold spans = ELDataset + predict_entities."""
    from edmem.data.collate import ELCollator
    from edmem.data.dataset import ELDataset
    from edmem.data.examples import example_from_text
    from edmem.inference.predict import predict_entities
    from edmem.runtime.distributed import DistInfo

    loaded = load_model_dir(model_dir)
    examples = [example_from_text(str(n), q, [(o, n_, a - 1)]) for n, (q, o, n_, a) in
                enumerate(tiny_questions())]
    data = ELDataset(examples, loaded.tokenizer, loaded.encoding, is_training=False,
                     id_to_row=loaded.rows.id_to_row)
    dist = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    plain = predict_entities(loaded.model, data, ELCollator(), 8, dist, loaded.rows)
    results = linker.batch([q for q, *_ in tiny_questions()], top_k=linker.max_k)
    for example, result in zip(examples, results):
        assert [e.id for e in result.top_k] == plain.topk[example.id]


@pytest.mark.parametrize("question, message", [
    ("", "empty question"), ("   \n\t", "empty question"),
    ("x" * 1001, "question is 1001 characters long; the limit is 1000"),
    (42, "a question must be a string or an object"),
    ({"question": "abc", "mentions": [{"offset": 2, "length": 5}]}, "outside the question"),
    ({"question": "abcdef", "mentions": [{"offset": 0, "length": 3}, {"offset": 2, "length": 2}]},
     "mentions overlap"),
    ({"text": "abc"}, "needs a string field 'question'"),
])
def test_bad_questions(linker, question, message):
    with pytest.raises(ValueError, match=message):
        linker(question)


def test_bad_top_k(linker):
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        linker("capital of peru?", top_k=0)
    with pytest.raises(ValueError, match="more than the 10 candidates"):
        linker("capital of peru?", top_k=11)


def test_import_edmem_registers_auto_classes_without_torch(model_dir):
    code = ("import sys, edmem\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
            "from transformers import AutoModel\n"
            f"model = AutoModel.from_pretrained({str(model_dir)!r})\n"
            "print(type(model).__name__, edmem.EntityLinker.__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["EDMemModel", "EntityLinker"]


def test_concurrent_calls_from_threads_give_the_sequential_results(linker):
    from concurrent.futures import ThreadPoolExecutor

    questions = [q for q, *_ in tiny_questions()] * 3
    expected = [[e.id for e in linker(q).top_k] for q in questions]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda q: [e.id for e in linker(q).top_k], questions))
    assert got == expected


def test_device_names(model_dir):
    from edmem.inference.linker import linker_device

    assert str(linker_device("cpu")) == "cpu" and str(linker_device("auto")) in ("cpu", "cuda:0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            EntityLinker.from_pretrained(model_dir, device="cuda")


def test_a_sharded_memory_read_answers_under_inference_mode(linker, monkeypatch):
    """The linker predicts under ``torch.inference_mode``; a memory large enough to be scanned in
    per-thread shards (forced here) must give the same answers as one scan."""
    from edmem.modeling import topk

    questions = [q for q, *_ in tiny_questions()][:6]
    one_scan = [r.top_k for r in linker.batch(questions)]
    monkeypatch.setattr(topk, "SHARD_MIN_ROWS", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sharded = [r.top_k for r in linker.batch(questions)]
    finally:
        torch.set_num_threads(before)
    assert topk._POOL is not None and topk._POOL[0] == 2
    assert [[e.id for e in r] for r in sharded] == [[e.id for e in r] for r in one_scan]
