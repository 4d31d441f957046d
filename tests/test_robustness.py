"""The cases of issue 14 (docs/reliability.md): each bad input or fault ends with one clear error
line (or a counted warning), never a traceback, a silent wrong result or a damaged output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import el_tiny
from edmem.errors import DataError
from edmem.evaluation.cli import main as evaluate_main
from edmem.apps.run_qa import predict_main as predict_cli
from edmem.run_qa import main as run_qa
from edmem.runtime import atomic
from edmem.runtime.atomic import WriteError, atomic_write_text, remove_stale_temp_files
from edmem.training import checkpointing as ck
from edmem.apps.run_qa import train_main as train_cli

EVAL = Path(__file__).resolve().parent / "fixtures" / "eval"
QUICK = ("--num_train_epochs", "1", "--eval_period", "2")


def error_line(capsys, prog: str | None = None) -> str:
    """The one ``prog: error: ...`` line of stderr (log lines may surround it); no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    if prog is not None:
        assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    return el_tiny.build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory) -> Path:
    """One short training run (one evaluation, so a checkpoint and a resume state exist)."""
    out = tmp_path_factory.mktemp("run") / "out"
    assert run_qa(el_tiny.flags(tiny, out, "--do_train", *QUICK)) == 0
    return out


def copy_data(tiny: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], Path]:
    data = tmp_path / "data"
    shutil.copytree(tiny["data_dir"], data)
    return dict(tiny, data_dir=str(data)), data / "wq"


def predict_flags(tiny: dict[str, str], out: Path, *extra: str) -> list[str]:
    return el_tiny.flags(tiny, out, *extra)


# ---- 1. non-UTF-8 input files ---------------------------------------------------------------------
def test_1_non_utf8_training_file_names_file_and_line(tiny, tmp_path, capsys):
    paths, task = copy_data(tiny, tmp_path)
    train = task / "el_wq-train.jsonl"
    lines = train.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b"capital", b"capit\xe9l")
    train.write_bytes(b"".join(lines))
    assert run_qa(el_tiny.flags(paths, tmp_path / "o", "--do_train")) == 1
    line = error_line(capsys, "python -m edmem.run_qa")
    assert "el_wq-train.jsonl, line 4" in line and "not UTF-8" in line


def test_1_non_utf8_id2entity_file_names_the_file(tiny, tmp_path, capsys):
    vocab = tmp_path / "vocab.json"
    vocab.write_bytes(Path(tiny["id2entity_file"]).read_bytes().replace(b"Paris", b"P\xffris"))
    assert run_qa(el_tiny.flags(dict(tiny, id2entity_file=str(vocab)), tmp_path / "o", "--do_train")) == 1
    line = error_line(capsys)
    assert str(vocab) in line and "not UTF-8" in line and "line 1" in line


def test_1_evaluators_name_the_non_utf8_file(tmp_path, capsys):
    gold = tmp_path / "gold.jsonl"
    gold.write_bytes((EVAL / "gold.jsonl").read_bytes() + b'{"id": "\xff"}\n')
    status = evaluate_main(["all", "-pred", str(EVAL / "el_predictions.json"), "-gold", str(gold)])
    assert status == 1
    line = error_line(capsys, "edmem evaluate all")
    assert str(gold) in line and "not UTF-8" in line


# ---- 2. write failures while saving -------------------------------------------------------------
def _no_space(*_args, **_kwargs):
    raise OSError(28, "No space left on device")


def test_2_safetensors_write_error_names_file_and_free_space(tiny, trained, tmp_path, monkeypatch):
    """safetensors raises its own error type on a full disk: reported as a WriteError naming the
    file and the free space; the previous best checkpoint is untouched; no temp file is left."""
    import safetensors.torch
    from safetensors import SafetensorError

    from edmem.data.entity_rows import EntityRows
    from edmem.modeling.model import EDMemModel
    from edmem.config import EDMemConfig

    out = tmp_path / "out"
    shutil.copytree(trained, out)
    before = (out / "model.safetensors").read_bytes()
    model = EDMemModel(EDMemConfig.from_pretrained(out))

    def full(*_args, **_kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(WriteError) as info:
        ck.save_best_checkpoint(model, out, EntityRows.load(out), 0, 1, 0.5, "EM")
    message = str(info.value)
    assert str(out / "model.safetensors") in message and "free on its file system" in message
    assert (out / "model.safetensors").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_2_torch_save_error_during_training_is_one_line(tiny, tmp_path, monkeypatch, capsys):
    """torch.save fails with its own RuntimeError on a full disk: the run ends with one line
    naming training_state.pt and the free space (exit 1), not a traceback."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if str(f).split("/")[-1].startswith(".training_state.pt."):
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "o"
    assert run_qa(el_tiny.flags(tiny, out, "--do_train", *QUICK)) == 1
    line = error_line(capsys)
    assert f"cannot write {out / ck.TRAINING_STATE}" in line and "free on its file system" in line
    assert not (out / ck.TRAINING_STATE).exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ---- 3. lengths checked against the model before any work ---------------------------------------
@pytest.mark.parametrize("value, needle", [("1000", "too long for the model"), ("64", "at most 63"),
                                           ("0", "at least 2")])
def test_3_max_input_length_is_checked_against_the_model(tiny, tmp_path, capsys, value, needle):
    out = tmp_path / "o"
    assert run_qa(el_tiny.flags(tiny, out, "--do_train", "--max_input_length", value)) == 1
    assert needle in error_line(capsys)
    assert not (out / "pytorch_model.bin").exists()


# ---- 4. evaluate --json is atomic -----------------------------------------------------------------
def test_4_failed_json_report_write_keeps_the_previous_report(tmp_path, monkeypatch, capsys):
    report = tmp_path / "metrics.json"
    report.write_text('{"previous": true}\n')
    monkeypatch.setattr(atomic.os, "fsync", _no_space)
    status = evaluate_main(["all", "-pred", str(EVAL / "el_predictions.json"), "-gold",
                            str(EVAL / "gold.jsonl"), "--json", str(report)])
    assert status == 1
    line = error_line(capsys, "edmem evaluate all")
    assert str(report) in line and "No space left on device" in line and "free" in line
    assert report.read_text() == '{"previous": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_4_json_report_is_written_when_the_write_succeeds(tmp_path, capsys):
    report = tmp_path / "metrics.json"
    report.write_text("old")
    assert evaluate_main(["all", "-pred", str(EVAL / "el_predictions.json"), "-gold",
                          str(EVAL / "gold.jsonl"), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["command"] == "all"


# ---- 5. stale-temp clean-up touches only edmem's own temp files ---------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_5_clean_up_removes_only_dead_edmem_temp_files(tmp_path):
    mine = tmp_path / ".mynotes.tmp"
    lookalike = tmp_path / ".predictions.json.abc123.tmp"     # the old naming: not provably ours
    dead = tmp_path / f".predictions.json.edmem-{_dead_pid()}-k2j3h4.tmp"
    alive = tmp_path / f".training_state.pt.edmem-{os.getpid()}-x9y8z7.tmp"
    for path in (mine, lookalike, dead, alive):
        path.write_text("x")
    removed = remove_stale_temp_files(tmp_path)
    assert removed == [dead]
    assert mine.exists() and lookalike.exists() and alive.exists() and not dead.exists()


def test_5_atomic_writes_use_the_recognisable_temp_name(tmp_path, monkeypatch):
    seen = []

    def write(tmp: str) -> None:
        seen.append(Path(tmp).name)
        Path(tmp).write_text("data")

    atomic.atomic_write(tmp_path / "report.json", write)
    assert seen[0].startswith(f".report.json.edmem-{os.getpid()}-") and seen[0].endswith(".tmp")
    assert atomic._TEMP_RE.match(seen[0])


def test_5_predict_keeps_a_users_hidden_tmp_file(tiny, trained, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    notes = out / ".mynotes.tmp"
    notes.write_text("mine")
    assert predict_cli(predict_flags(tiny, out)) == 0
    assert notes.read_text() == "mine"
    assert (out / "predictions.json").is_file()


# ---- 6. resume checks the settings; the args record is appended -------------------------------
def test_6_resume_with_other_settings_is_refused_naming_each_flag(tiny, trained, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    record = (out / "args").read_text()
    state = (out / ck.TRAINING_STATE).read_bytes()
    flags = el_tiny.flags(tiny, out, *QUICK, "--resume", "True", "--learning_rate", "5e-3",
                          "--seed", "4")
    assert train_cli(flags) == 1
    line = error_line(capsys, "edmem train")
    assert "--learning_rate 0.003 -> 0.005" in line and "--seed 3 -> 4" in line
    assert "--resume_force" in line
    assert (out / "args").read_text() == record
    assert (out / ck.TRAINING_STATE).read_bytes() == state


def test_6_resume_force_continues_and_appends_the_start(tiny, trained, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    record = (out / "args").read_text()
    flags = el_tiny.flags(tiny, out, *QUICK, "--resume", "True", "--seed", "4", "--resume_force", "True")
    assert train_cli(flags) == 0
    text = (out / "args").read_text()
    assert text.startswith(record) and text.count("Namespace(") == 2
    assert "seed=4" in text.splitlines()[1]
    assert "resuming with a changed flag --seed 3 -> 4" in (out / "log.txt").read_text()


def test_6_resume_with_the_same_settings_is_accepted(tiny, trained, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    assert train_cli(el_tiny.flags(tiny, out, *QUICK, "--resume", "True", "--num_threads", "2")) == 0
    assert (out / "args").read_text().count("Namespace(") == 2


def test_6_parse_namespace_reads_literals_only():
    from edmem.training.run_record import parse_namespace

    assert parse_namespace("Namespace(a=1, b='x', c=None, d=1e-05, e=nan, f=True)") == {
        "a": 1, "b": "x", "c": None, "d": 1e-05, "e": pytest.approx(float("nan"), nan_ok=True),
        "f": True}
    assert parse_namespace("__import__('os').system('true')") is None
    assert parse_namespace("Namespace(a=__import__('os'))") == {"a": "__import__('os')"}


# ---- 7. non-finite checkpoints are refused --------------------------------------------------------
def test_7_a_nan_checkpoint_is_refused(tiny, trained, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    (out / "model.safetensors").unlink()
    state = torch.load(out / "pytorch_model.bin", weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point() and "layers" in k)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    torch.save(state, out / "pytorch_model.bin")
    assert predict_cli(predict_flags(tiny, out)) == 1
    line = error_line(capsys, "edmem predict")
    assert "non-finite weights" in line and key in line and "pytorch_model.bin" in line
    assert not (out / "predictions.json").exists()


def test_7_a_nan_training_state_is_refused(tiny, trained, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    saved = torch.load(out / ck.TRAINING_STATE, weights_only=True)
    key = next(iter(saved["model"]))
    saved["model"][key] = torch.full_like(saved["model"][key], float("inf"))
    torch.save(saved, out / ck.TRAINING_STATE)
    assert train_cli(el_tiny.flags(tiny, out, *QUICK, "--resume", "True")) == 1
    assert "non-finite weights" in error_line(capsys)


# ---- 8. reserved / negative ids, duplicate keys, cut-offs ---------------------------------------
def test_8_reserved_id_as_training_target_with_the_compact_memory(tiny, tmp_path, capsys):
    paths, task = copy_data(tiny, tmp_path)
    train = task / "el_wq-train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    rows[1]["answer_entity"] = [[5, "Reserved"]]
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert run_qa(el_tiny.flags(paths, tmp_path / "o", "--do_train")) == 1
    line = error_line(capsys)
    assert "el_wq-train.jsonl, line 2, field 'answer_entity'" in line and "reserved" in line


def test_8_negative_id_in_the_vocabulary_is_an_error(tiny, tmp_path, capsys):
    vocab = json.loads(Path(tiny["id2entity_file"]).read_text())
    vocab["-3"] = {"entity": "Negative"}
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(vocab))
    assert run_qa(el_tiny.flags(dict(tiny, id2entity_file=str(path)), tmp_path / "o", "--do_train")) == 1
    line = error_line(capsys)
    assert str(path) in line and "-3" in line and "negative" in line


def test_8_reserved_ids_in_the_vocabulary_are_counted_and_logged(tiny, trained, tmp_path, capsys):
    vocab = json.loads(Path(tiny["id2entity_file"]).read_text())
    vocab.update({"4": {"entity": "Four"}, "7": {"entity": "Seven"}})
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(vocab))
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    assert predict_cli(predict_flags(dict(tiny, id2entity_file=str(path)), out)) == 0
    log = (out / "log.txt").read_text()
    assert "2 entity id(s) below 10 (4, 7) are reserved rows of the compact memory" in log


def test_8_duplicate_prediction_key_is_an_error(tmp_path, capsys):
    text = (EVAL / "el_predictions.json").read_text()
    first_key = next(iter(json.loads(text)))
    value = json.dumps(json.loads(text)[first_key])
    pred = tmp_path / "pred.json"
    pred.write_text(text.rstrip().rstrip("}") + f', "{first_key}": {value}}}')
    status = evaluate_main(["all", "-pred", str(pred), "-gold", str(EVAL / "gold.jsonl")])
    assert status == 1
    line = error_line(capsys)
    assert str(pred) in line and f"key '{first_key}' appears twice" in line


@pytest.mark.parametrize("ks", [["0"], ["-1"], ["5", "0"]])
def test_8_non_positive_cut_offs_are_refused(ks, capsys):
    status = evaluate_main(["all", "-pred", str(EVAL / "el_predictions.json"), "-gold",
                            str(EVAL / "gold.jsonl"), "--ks", *ks])
    assert status == 2
    assert "hits@k needs k >= 1" in error_line(capsys, "edmem evaluate all")


def test_8_ranking_api_refuses_non_positive_cut_offs():
    from edmem.evaluation.metrics import ranking_metrics

    with pytest.raises(ValueError, match="at least 1"):
        ranking_metrics({"q": [1]}, {"q": [1]}, ks=(0,))


# ---- 9. smaller cases -----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_9_non_finite_learning_rate_is_a_usage_error(tiny, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as info:
        run_qa(el_tiny.flags(tiny, tmp_path / "o", "--do_train", f"--learning_rate={value}"))
    assert info.value.code == 2
    assert "must be a finite number" in error_line(capsys)


def test_9_divergence_before_any_checkpoint_exits_3_without_a_misleading_error(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    assert run_qa(el_tiny.flags(tiny, out, "--do_train", "--do_predict", "--learning_rate", "1e30")) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no pytorch_model.bin" not in err
    assert "NaN/inf loss before the first checkpoint" in err
    assert not (out / "predictions.json").exists()


def test_9_mention_ending_on_a_space_names_the_file(tiny, tmp_path):
    from edmem.data.examples import ELEncodingOptions, encode_question
    from edmem.data.formats import load_el_examples
    from edmem.data.tokenization import load_tokenizer

    question = "what is the capital of france today?"
    path = tmp_path / "el.jsonl"
    path.write_text(json.dumps({"id": "q", "question": question, "answer": ["Paris"],
                                "link_offset": [23], "link_length": [7],
                                "link_target": ["1000"]}) + "\n")
    examples, _ = load_el_examples(path, is_training=False, log=None)
    with pytest.raises(DataError) as info:
        encode_question(load_tokenizer(tiny["model_name"]), examples[0], ELEncodingOptions())
    assert str(info.value).startswith(f"{path}, line 1, field 'link_offset'")
    assert "ends on a space" in str(info.value)


def test_9_a_folder_where_a_file_is_expected(tiny, tmp_path, capsys):
    folder = tmp_path / "vocab.json"
    folder.mkdir()
    assert run_qa(el_tiny.flags(dict(tiny, id2entity_file=str(folder)), tmp_path / "o", "--do_train")) == 1
    assert "is a directory, expected a file" in error_line(capsys)
    assert evaluate_main(["all", "-pred", str(folder), "-gold", str(EVAL / "gold.jsonl")]) == 1
    assert "is a directory, expected a file" in error_line(capsys)


@pytest.mark.parametrize("prefix", ["../x_", "a/b_", "..\\x_"])
def test_9_prefix_with_a_path_separator_is_refused(tiny, tmp_path, capsys, prefix):
    with pytest.raises(SystemExit) as info:
        predict_cli(predict_flags(tiny, tmp_path / "o", "--prefix", prefix))
    assert info.value.code == 2
    assert "cannot contain path separators" in error_line(capsys)
    assert not list(tmp_path.glob("*predictions.json"))


def test_write_error_on_an_unwritable_directory_names_it(tmp_path):
    target = tmp_path / "missing" / "report.json"
    with pytest.raises(WriteError) as info:
        atomic_write_text(target, "x", make_parents=False)
    assert str(target) in str(info.value)



# ---- found by benchmarks/fuzz.py --------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "\n   \n"])
def test_fuzz_an_empty_passage_corpus_is_one_clear_error(tiny, tmp_path, capsys, text):
    from edmem.apps.pretrain import main as pretrain_main

    corpus = Path(__file__).resolve().parent / "fixtures" / "pretraining"
    train = tmp_path / "train.jsonl"
    train.write_text(text)
    out = tmp_path / "out"
    status = pretrain_main(["--train_file", str(train), "--model_name", tiny["model_name"],
                            "--id2entity_file", str(corpus / "entid2entityitemid.json"),
                            "--compact_entity_memory", "--num_lower_layers", "1",
                            "--num_upper_layers", "1", "--entity_embed_size", "16",
                            "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"),
                            "--max_seq_length", "48", "--max_steps", "2", "--tensorboard", "False"])
    assert status == 1
    line = error_line(capsys, "edmem pretrain")
    assert str(train) in line and "no usable passages" in line
    assert not (out / "pytorch_model.bin").exists() and not (out / "args").exists()


def test_fuzz_a_damaged_loop_position_is_refused():
    from edmem.training.checkpointing import _checked_loop

    good = {"epoch": 0, "batch_in_epoch": 2, "local_step": 4, "global_step": 4, "best": 0.5,
            "wait": 0, "finished": False}
    assert _checked_loop(dict(good)) == good
    for bad in ({**good, "epoch": "0"}, {**good, "wait": -1}, {k: v for k, v in good.items() if k != "best"}):
        with pytest.raises(ValueError):
            _checked_loop(bad)


@pytest.mark.parametrize("field, value", [("pad_token_id", None), ("dropout", -1.0), ("d_model", "32"),
                                          ("activation_function", "nope"), ("decoder_start_token_id", 10 ** 6)])
def test_fuzz_config_fields_that_cannot_make_a_model_are_refused(field, value):
    from edmem.config import check_bart_fields

    config = {"vocab_size": 300, "d_model": 32, "encoder_attention_heads": 2, "dropout": 0.1,
              "activation_function": "gelu", "pad_token_id": 1, "decoder_start_token_id": 2}
    check_bart_fields(config)
    with pytest.raises(ValueError, match=field):
        check_bart_fields({**config, field: value})


def test_fuzz_an_id_mismatch_names_the_gold_file_too(tmp_path, capsys):
    gold = tmp_path / "gold.jsonl"
    gold.write_text((EVAL / "gold.jsonl").read_text() + '{"id": "extra", "answer": ["x"]}\n')
    assert evaluate_main(["all", "-pred", str(EVAL / "el_predictions.json"), "-gold", str(gold)]) == 1
    line = error_line(capsys)
    assert str(gold) in line and str(EVAL / "el_predictions.json") in line
