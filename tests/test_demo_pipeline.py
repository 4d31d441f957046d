"""``edmem demo`` end to end at a toy size, and its output-folder rules.

The toy run keeps every stage (KB, tokenizer, pretraining, fine-tuning, the no-pretraining
baseline, prediction, evaluation, report) but with a few steps each, so it checks the wiring and
the artefacts, not the quality (docs/demo.md has the default run's figures).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edmem.demo import cli
from edmem.demo.pipeline import LAYOUT, prepare_output_dir
from edmem.errors import EDMemError
from edmem.runtime.logging_setup import close_logging

TOY = ["--num_cities", "20", "--max_facts_per_relation", "8", "--paraphrases_per_fact", "1",
       "--vocab_size", "400", "--d_model", "32", "--attention_heads", "2", "--ffn_dim", "64",
       "--entity_embed_size", "16", "--num_upper_layers", "1", "--pretrain_steps", "6", "--pretrain_batch_size", "16",
       "--pretrain_eval_period", "3", "--finetune_epochs", "2", "--finetune_batch_size", "16",
       "--finetune_eval_period", "3", "--wait_step", "2", "--num_threads", "1"]
RATES = ("hits@1", "hits@5", "hits@10", "em")


@pytest.fixture(autouse=True)
def _close_logs():
    yield
    close_logging()


# What the selection stages could see: (what ran, whether the test questions were readable).
SEEN_BY_STAGE: list[tuple[str, bool]] = []


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy demo, with pretraining and run_QA wrapped to record whether the test split's
    files were present when each ran (selection must run without them)."""
    from edmem.demo import pipeline
    from edmem.apps import pretrain as pretraining_runner

    out = tmp_path_factory.mktemp("demo") / "run"
    test_files = [out / "data/openqa/geo/entity_linking" / name
                  for name in ("el_geo-test.jsonl", "sling_invocab-test.json")]

    def readable() -> bool:
        return any(f.exists() for f in test_files)

    real_run_qa, real_pretrain = pipeline.run_qa, pretraining_runner.pretrain

    def run_qa(argv):
        what = "train" if "--do_train" in argv else ("predict_dev" if "--predict_on_dev" in argv else "predict_test")
        SEEN_BY_STAGE.append((what, readable()))
        return real_run_qa(argv)

    def pretrain(args):
        SEEN_BY_STAGE.append(("pretrain", readable()))
        return real_pretrain(args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "run_qa", run_qa)
        mp.setattr(pretraining_runner, "pretrain", pretrain)
        assert cli.main(["--output_dir", str(out), *TOY]) == 0
    close_logging()
    return out


@pytest.mark.slow
def test_selection_never_sees_the_test_split(toy_run: Path) -> None:
    stages = [what for what, _ in SEEN_BY_STAGE]
    assert stages.count("train") == 2 and stages.count("pretrain") == 1
    assert stages.count("predict_dev") == 2 and stages.count("predict_test") == 2
    for what, test_readable in SEEN_BY_STAGE:
        assert test_readable == (what == "predict_test"), (what, SEEN_BY_STAGE)
    # the test predictions come after every selection step
    assert stages.index("predict_test") > max(i for i, w in enumerate(stages) if w != "predict_test")
    assert all(w == "predict_test" for w in stages[stages.index("predict_test"):])
    assert (toy_run / "data/openqa/geo/entity_linking/el_geo-test.jsonl").is_file()
    assert not (toy_run / "data/sealed").exists()


@pytest.mark.slow
def test_groups_are_scored_on_dev_and_test(toy_run: Path) -> None:
    summary = json.loads((toy_run / "summary.json").read_text())
    for split in ("dev", "test"):
        for system in ("edmem", "no_pretrain", "most_frequent"):
            groups = summary["groups"][split][system]
            assert set(groups) <= {"heldout_fact/seen_phrasing", "seen_fact/heldout_phrasing",
                                   "heldout_fact/heldout_phrasing"} and groups
            for row in groups.values():
                assert 0 <= row["hits@1"] <= row["hits@5"] <= row["hits@10"] <= 1 and row["questions"] > 0
    text = (toy_run / "summary.txt").read_text()
    assert "held-out phrasings" in text and "hits@1, dev" in text
    assert "(this run alone; the goals are on the mean of three seeds" in text


@pytest.mark.slow
def test_summary_json_has_every_figure_as_a_fraction(toy_run: Path) -> None:
    summary = json.loads((toy_run / "summary.json").read_text())
    for key in RATES:
        assert 0.0 <= summary["test"][key] <= 1.0, key
    assert set(summary["baselines"]) == {"most_frequent", "no_pretrain"}
    for name, row in summary["baselines"].items():
        for key in RATES:
            assert 0.0 <= row[key] <= 1.0, (name, key)
    # hits@k can only grow with k
    for row in [summary["test"], *summary["baselines"].values()]:
        assert row["hits@1"] <= row["hits@5"] <= row["hits@10"]
    seconds = summary["seconds"]
    assert {"build_kb", "tokenizer", "pretrain", "finetune", "baseline_no_pretrain", "predict",
            "evaluate", "report", "total"} <= set(seconds)
    assert all(value >= 0 for value in seconds.values())
    assert seconds["total"] >= sum(v for k, v in seconds.items() if k != "total") - 1.0
    assert summary["best_baseline"] in summary["baselines"]
    held_out = {name: rows["heldout_fact/seen_phrasing"]["hits@1"]
                for name, rows in summary["groups"]["test"].items()}
    assert summary["margin_hits@1"] == pytest.approx(held_out["edmem"] - held_out[summary["best_baseline"]])
    assert summary["best_baseline"] == max(summary["baselines"], key=held_out.get)
    assert (toy_run / "summary.txt").read_text().startswith("Test, all groups: ")


@pytest.mark.slow
def test_artefacts_are_in_the_one_folder(toy_run: Path) -> None:
    for name in ("data", "tokenizer", "pretrain", "finetune", "baseline_no_pretrain",
                 "baseline_most_frequent", "eval", "summary.json", "summary.txt", "curves.png",
                 "settings.json"):
        assert (toy_run / name).exists(), name
    assert set(p.name for p in toy_run.iterdir()) <= set(LAYOUT)
    assert (toy_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (toy_run / "pretrain" / "pytorch_model.bin").is_file()
    printed = (toy_run / "eval" / "edmem.txt").read_text()
    assert "Exact Match:" in printed and "Linkable QA Exact Match:" in printed
    assert "hits@10:" in printed


@pytest.mark.slow
def test_predictions_are_in_the_original_format(toy_run: Path) -> None:
    test_ids = [json.loads(line)["id"] for line in
                (toy_run / "data/openqa/geo/entity_linking/el_geo-test.jsonl").open()]
    names = json.loads((toy_run / "data/wikipedia/entity_geo.json").read_text())
    for folder in ("finetune", "baseline_no_pretrain", "baseline_most_frequent"):
        predictions = json.loads((toy_run / folder / "predictions.json").read_text())
        assert sorted(predictions) == sorted(test_ids), folder
        for name, ids in predictions.values():
            assert isinstance(name, str) and ids and all(isinstance(i, int) for i in ids)
            assert name == names[ids[0]]


def test_refuses_a_non_empty_output_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["--output_dir", str(tmp_path), *TOY]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_overwrite_removes_only_the_demo_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "pytorch_model.bin").write_bytes(b"old")
    with pytest.raises(EDMemError):
        prepare_output_dir(tmp_path, overwrite=False)
    prepare_output_dir(tmp_path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_file_as_output_dir_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(EDMemError):
        prepare_output_dir(target, overwrite=True)


def test_help_lists_the_size_knobs(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--output_dir", "--overwrite", "--num_cities", "--pretrain_steps", "--d_model",
                 "--entity_embed_size", "--seed", "summary.json", "curves.png"):
        assert flag in text, flag


def test_only_the_pretrained_model_freezes_the_memory(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from edmem.demo.pipeline import DemoSettings, run_qa_argv
    from edmem.training.args import parse_args

    paths = SimpleNamespace(task="geo", data_dir=tmp_path, datafile_prefix="entity_linking/el_",
                            entid2entityitemid=tmp_path / "v.json", entity_tokens=tmp_path / "t.json")
    settings = DemoSettings(output_dir=tmp_path)
    pretrained = parse_args(run_qa_argv(settings, paths, tmp_path, tmp_path / "ft", train=True,
                                        pretrain_ckpt=tmp_path / "pretrain"))
    scratch = parse_args(run_qa_argv(settings, paths, tmp_path, tmp_path / "b", train=True,
                                     pretrain_ckpt=None))
    assert pretrained.freeze_entity_memory and pretrained.pretrain_ckpt == str(tmp_path / "pretrain")
    assert not scratch.freeze_entity_memory and scratch.pretrain_ckpt is None
    assert pretrained.task == "geo" and pretrained.generate_target == "entity_linking"


@pytest.mark.slow
def test_the_demo_ends_with_a_model_dir_and_two_commands_that_work(toy_run: Path) -> None:
    """runs/demo/model is a model directory; the printed `ask` line runs as printed."""
    import shlex
    import subprocess

    from edmem.demo.pipeline import try_it_lines
    from edmem.inference.model_dir import read_metadata

    meta = read_metadata(toy_run / "model")
    assert meta["num_entities"] > 0 and (toy_run / "model" / "aliases.jsonl").is_file()
    question = "what is the capital of france?"
    ask, serve = try_it_lines(toy_run / "model", question)
    assert shlex.split(ask)[1:] == ["ask", "--model", str(toy_run / "model"), question]
    assert shlex.split(serve)[1:] == ["serve", "--model", str(toy_run / "model")]
    done = subprocess.run(ask, shell=True, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"question: {question}\n") and "answer:" in done.stdout
    assert "mention:  [france]" in done.stdout


def test_sealed_split_hides_the_files_and_puts_them_back_on_failure(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from edmem.demo.pipeline import sealed_split

    el, sling = tmp_path / "el_geo-test.jsonl", tmp_path / "sling_invocab-test.json"
    el.write_text("q\n")
    sling.write_text("{}\n")
    paths = SimpleNamespace(el={"test": el}, sling={"test": sling})
    with pytest.raises(RuntimeError):
        with sealed_split(paths, "test", tmp_path / "vault"):
            assert not el.exists() and not sling.exists()
            assert (tmp_path / "vault" / el.name).read_text() == "q\n"
            raise RuntimeError("a stage failed")
    assert el.read_text() == "q\n" and sling.read_text() == "{}\n"
    assert not (tmp_path / "vault").exists()
