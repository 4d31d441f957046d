"""End to end through the run_QA.py command line on the tiny self-made task: files, log lines,
prediction format, predict-only from the saved checkpoint, and bad input -> one clear line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import el_tiny
from edmem.run_qa import main as run_qa
from edmem.apps.run_qa import predict_main as predict_cli
from edmem.apps.run_qa import train_main as train_cli

LEARN = ("--dropout", "0", "--max_grad_norm", "1.0", "--learning_rate", "1e-2")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    return el_tiny.build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    rc = run_qa(el_tiny.flags(tiny, out, "--do_train", "--do_predict", "--save_scores", "True",
                              "--tensorboard", "True", *LEARN))
    assert rc == 0
    return out


@pytest.mark.slow
def test_train_and_predict_write_the_original_files(trained):
    for name in ("args", "log.txt", "pytorch_model.bin", "config.json", "model.safetensors",
                 "entity_rows.json", "training_state.pt", "predictions.json",
                 "prediction_scores.json", "best_checkpoint.json"):
        assert (trained / name).is_file(), name
    assert list((trained / "tensorboard").iterdir())
    assert (trained / "args").read_text().startswith("Namespace(data_dir=")
    log = (trained / "log.txt").read_text()
    line = r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d - INFO - __main__ - "
    assert re.search(line + r"Total global training steps: \d+, Total local training steps: \d+, "
                     r"Warmup steps: \d+", log)
    assert re.search(line + r"Step \d+, Train loss \d+\.\d\d, EM \d+\.\d\d%, Detail loss: lm_loss: "
                     r"0\.0, el_loss: [\d.]+, encoder_elloss: [\d.]+, decoder_elloss: [\d.]+, "
                     r"final_elloss: [\d.]+, epoch=\d+\n", log)
    assert re.search(line + r"Saving model with best EM: -100\.00% -> \d+\.\d\d% on epoch=1, "
                     r"global_step=4\n", log)
    assert "********************Epoch 1********************" in log
    assert re.search(line + r"Best EM on validation data: \d+\.\d\d\n", log)
    assert re.search(line + r"EM on test data: \d+\.\d\d%\n", log)
    best = float(re.search(r"Best EM on validation data: ([\d.]+)", log).group(1))
    assert best >= 50.0  # the tiny task is learnable


@pytest.mark.slow
def test_predictions_have_the_original_format_in_original_ids(trained, tiny):
    predictions = json.loads((trained / "predictions.json").read_text())
    test_ids = [json.loads(l)["id"] for l in open(Path(tiny["data_dir"]) / "wq" / "el_wq-test.jsonl")]
    assert list(predictions) == test_ids
    names = {int(k): v["entity"] for k, v in json.loads(Path(tiny["id2entity_file"]).read_text()).items()}
    for name, ids in predictions.values():
        assert len(ids) == 5 and all(isinstance(i, int) for i in ids)
        assert ids[0] in names or ids[0] < 10            # original ids, never compact rows
        assert name == names.get(ids[0], "")
    scores = json.loads((trained / "prediction_scores.json").read_text())
    for qid, entry in scores.items():
        assert entry["ids"] == predictions[qid][1]
        assert entry["scores"] == sorted(entry["scores"], reverse=True)


@pytest.mark.slow
def test_predict_only_reproduces_the_predictions(trained, tiny, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(trained, out, ignore=shutil.ignore_patterns("predictions.json", "*.pt"))
    flags = el_tiny.flags(tiny, out, "--prefix", "again_")
    rc = predict_cli([f for f in flags if f not in ("--compact_entity_memory", "True")])
    assert rc == 0
    assert (out / "again_predictions.json").read_text() == (trained / "predictions.json").read_text()
    assert (out / "again_log.txt").is_file()


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if ": error: " in l]
    assert len(lines) == 1, err
    return lines[0]


def test_answer_generation_is_refused_clearly(tiny, tmp_path, capsys):
    flags = el_tiny.flags(tiny, tmp_path / "o", "--do_train")
    flags[flags.index("entity_linking")] = "answer"
    assert run_qa(flags) == 1
    assert "answer generation is not implemented" in _error_line(capsys)


@pytest.mark.parametrize("change, expected", [
    (("--data_dir", "/nonexistent"), "task directory not found"),
    (("--id2entity_file", "/nonexistent/x.json"), "file not found"),
    (("--id2entity_file", "vocab.txt"), "must be a .json file"),
    (("--pretrain_ckpt", "/nonexistent"), "directory not found"),
    (("--model_name", "/nonexistent-model"), "--model_name /nonexistent-model"),
    (("--train_batch_size", "0"), "at least 1"),
])
def test_bad_flags_give_one_line_and_a_non_zero_exit(tiny, tmp_path, capsys, change, expected):
    flags = el_tiny.flags(tiny, tmp_path / "o", "--do_train")
    if change[0] in flags:
        flags[flags.index(change[0]) + 1] = change[1]
    else:
        flags += list(change)
    assert run_qa(flags) == 1
    assert expected in _error_line(capsys)


def test_a_malformed_training_line_names_file_and_line(tiny, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny["data_dir"], data)
    train = data / "wq" / "el_wq-train.jsonl"
    lines = train.read_text().splitlines()
    lines[2] = lines[2][:-5]
    train.write_text("\n".join(lines) + "\n")
    flags = el_tiny.flags(dict(tiny, data_dir=str(data)), tmp_path / "o", "--do_train")
    assert run_qa(flags) == 1
    line = _error_line(capsys)
    assert "el_wq-train.jsonl" in line and "line 3" in line


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_the_flags_is_a_clear_error(trained, tiny, capsys):
    flags = el_tiny.flags(tiny, trained, "--entity_embed_size", "8", "--prefix", "x_")
    assert predict_cli(flags) == 1
    line = _error_line(capsys)
    assert "does not fit" in line and "EntityEmbedding.weight" in line


@pytest.mark.slow
def test_training_into_a_finished_run_needs_overwrite_or_resume(trained, tiny, capsys):
    assert train_cli(el_tiny.flags(tiny, trained)) == 1
    assert "--overwrite_output True" in _error_line(capsys)


def test_predict_without_a_checkpoint_is_a_clear_error(tiny, tmp_path, capsys):
    assert predict_cli(el_tiny.flags(tiny, tmp_path / "empty")) == 1
    assert "no pytorch_model.bin or model.safetensors" in _error_line(capsys)


def test_help_of_the_friendly_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "torchrun" in text and "--resume" in text


@pytest.mark.slow
def test_freeze_entity_memory_keeps_the_pretrained_table(trained, tiny, tmp_path):
    """Fine-tuning from a checkpoint with --freeze_entity_memory leaves the entity table as it was
    (and still trains the rest of the model)."""
    from edmem.modeling.checkpoints import read_state_dict

    out = tmp_path / "frozen"
    assert run_qa(el_tiny.flags(tiny, out, "--do_train", "--pretrain_ckpt", str(trained),
                                "--freeze_entity_memory", "True", "--num_train_epochs", "2",
                                *LEARN)) == 0
    before, after = read_state_dict(trained), read_state_dict(out)
    assert before["EntityEmbedding.weight"].equal(after["EntityEmbedding.weight"])
    assert not before["EntityLinkHead.InputLayer.linear.weight"].equal(
        after["EntityLinkHead.InputLayer.linear.weight"])
    assert "Entity memory frozen" in (out / "log.txt").read_text()


def test_any_dataset_name_is_a_task_but_not_a_path(tiny, tmp_path, capsys):
    """--task names a sub-directory: other datasets than nq/tqa/wq work, paths are refused."""
    custom = Path(tiny["data_dir"]) / "geo"
    shutil.copytree(Path(tiny["data_dir"]) / "wq", custom)
    for split in ("train", "dev", "test"):
        (custom / f"el_wq-{split}.jsonl").rename(custom / f"el_geo-{split}.jsonl")
    argv = el_tiny.flags(tiny, tmp_path / "geo", "--do_train", "--num_train_epochs", "1")
    argv[argv.index("--task") + 1] = "geo"
    assert run_qa(argv) == 0
    argv[argv.index("--task") + 1] = "../wq"
    with pytest.raises(SystemExit) as exc:
        run_qa(argv)
    assert exc.value.code == 2
    assert "invalid task name" in capsys.readouterr().err


@pytest.mark.slow
def test_training_writes_a_model_dir_that_predicts_the_same(trained, tiny, tmp_path):
    """<output_dir>/model is self-describing: `edmem predict --model` needs no model flags and
    gives the same predictions; the EntityLinker answers from it too."""
    from edmem.inference.linker import EntityLinker
    from edmem.inference.model_dir import read_metadata

    model = trained / "model"
    meta = read_metadata(model)
    assert meta["num_entities"] == 16 and meta["encoding"]["max_input_length"] == 50
    out = tmp_path / "pred"
    rc = predict_cli(["--model", str(model), "--task", "wq", "--data_dir", tiny["data_dir"],
                      "--datafile_prefix", "el_", "--output_dir", str(out)])
    assert rc == 0
    assert (out / "predictions.json").read_text() == (trained / "predictions.json").read_text()
    predictions = json.loads((trained / "predictions.json").read_text())
    test = [json.loads(l) for l in open(Path(tiny["data_dir"]) / "wq" / "el_wq-test.jsonl")]
    linker = EntityLinker.from_pretrained(model, top_k=5)
    given = [{"question": q["question"], "mentions": [
        {"offset": o, "length": n, "target": t} for o, n, t in
        zip(q["link_offset"], q["link_length"], q["link_target"])]} for q in test]
    for q, result in zip(test, linker.batch(given)):
        assert [e.id for e in result.top_k] == predictions[q["id"]][1]


def test_predict_with_model_refuses_training_and_names_a_bad_dir(tiny, tmp_path, capsys):
    flags = ["--task", "wq", "--data_dir", tiny["data_dir"], "--datafile_prefix", "el_",
             "--output_dir", str(tmp_path / "o")]
    assert predict_cli(["--model", str(tmp_path / "missing"), *flags]) == 1
    assert "model directory not found" in _error_line(capsys)
    assert run_qa(["--model", str(tmp_path), "--do_train", "--generate_target", "entity_linking",
                   *flags]) == 1
    assert "--model is for prediction" in _error_line(capsys)


def test_an_unreachable_hub_name_fails_within_seconds(tiny, tmp_path, capsys, monkeypatch):
    """Offline (HF_HUB_OFFLINE=1) a hub name fails at once with what to do, no inner error."""
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))   # an empty cache
    flags = el_tiny.flags(tiny, tmp_path / "o", "--do_train")
    flags[flags.index("--model_name") + 1] = "facebook/bart-large"
    start = time.monotonic()
    assert run_qa(flags) == 1
    assert time.monotonic() - start < 20
    line = _error_line(capsys)
    assert "--model_name facebook/bart-large: not a local directory, and HF_HUB_OFFLINE is set" in line
    assert "config.json + vocab.json + merges.txt" in line and "NoneType" not in line


@pytest.mark.slow
def test_convert_builds_the_same_model_dir_from_the_original_layout(trained, tiny, tmp_path, capsys):
    """`edmem convert` (pytorch_model.bin + the run's flags) = the directory training wrote."""
    from safetensors.torch import load_file

    from edmem.apps.convert import main as convert
    from edmem.inference.model_dir import load_model_dir

    ckpt = tmp_path / "original"
    ckpt.mkdir()
    shutil.copy(trained / "pytorch_model.bin", ckpt)        # no entity_rows.json: from the flags
    flags = ["--checkpoint", str(ckpt), "--model_name", tiny["model_name"],
             "--id2entity_file", tiny["id2entity_file"], "--num_lower_layers", "1",
             "--num_upper_layers", "1", "--entity_embed_size", "16",
             "--inference_nearest_k_entity", "5", "--compact_entity_memory", "True", "--dropout", "0"]
    assert convert([*flags, "--output", str(tmp_path / "conv")]) == 0
    a, b = load_model_dir(tmp_path / "conv"), load_model_dir(trained / "model")
    assert a.entities.names == b.entities.names and a.rows.to_json() == b.rows.to_json()
    assert a.encoding == b.encoding and a.config.to_diff_dict() == b.config.to_diff_dict()
    wa, wb = load_file(tmp_path / "conv" / "model.safetensors"), load_file(trained / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)
    capsys.readouterr()
    flags[flags.index("--entity_embed_size") + 1] = "8"
    assert convert([*flags, "--output", str(tmp_path / "bad")]) == 1
    assert "does not fit" in _error_line(capsys) and not (tmp_path / "bad").exists()
def test_predict_through_a_memory_index_and_a_stale_one_is_an_error(trained, tiny, tmp_path, capsys):
    out = tmp_path / "indexed"
    shutil.copytree(trained, out, ignore=shutil.ignore_patterns("*.pt", "training_state"))
    flags = el_tiny.flags(tiny, out, "--prefix", "ivf_", "--memory_index", "ivf",
                          "--memory_index_dtype", "int8", "--nprobe", "64", "--nlist", "4")
    assert predict_cli(flags) == 0
    exact = json.loads((trained / "predictions.json").read_text())
    ivf = json.loads((out / "ivf_predictions.json").read_text())
    assert {q: v[1][0] for q, v in ivf.items()} == {q: v[1][0] for q, v in exact.items()}
    meta = out / "memory_index" / "ivf-int8.json"
    assert (out / "memory_index" / "table-int8.safetensors").is_file() and meta.is_file()
    data = json.loads(meta.read_text())
    assert data["knobs"]["nlist"] == 4 and data["knobs"]["nprobe"] == 64
    data["source_digest"] = "sha256:0123"
    meta.write_text(json.dumps(data))
    capsys.readouterr()
    assert predict_cli(flags) == 1
    line = _error_line(capsys)
    assert "stale memory index" in line and "sha256:0123" in line


def test_gradient_checkpointing_trains_the_same_weights(trained, tiny, tmp_path):
    """--gradient_checkpointing recomputes the layers in backward: the trained checkpoint is
    the one the run without it wrote, bit for bit."""
    from edmem.modeling.checkpoints import read_state_dict

    out = tmp_path / "ckpt"
    assert run_qa(el_tiny.flags(tiny, out, "--do_train", "--gradient_checkpointing", *LEARN)) == 0
    assert "Gradient checkpointing" in (out / "log.txt").read_text()
    plain, recomputed = read_state_dict(trained), read_state_dict(out)
    assert plain.keys() == recomputed.keys()
    assert all(plain[k].equal(recomputed[k]) for k in plain)
