"""Unit tests of the training pieces that need no model: flags, step counts, schedule, early
stopping, data order, AdamW, atomic I/O, RNG capture, compact entity rows, prediction writer."""

from __future__ import annotations

import argparse
import json
import math
import random
import re

import numpy as np
import pytest
import torch

from edmem.data.entity_rows import EntityRows
from edmem.errors import CheckpointError, DataError
from edmem.inference.writer import entity_name, predictions_object, write_predictions
from edmem.runtime.atomic import atomic_torch_save, atomic_write
from edmem.training import checkpointing as ck
from edmem.training.args import ORIGINAL_ORDER, build_parser, parse_args, str2bool
from edmem.training.optim import AdamW, parameter_groups
from edmem.training.sampling import epoch_batches, epoch_indices
from edmem.training.schedule import EarlyStopping, calculate_num_steps, linear_schedule

REQUIRED = ["--task", "wq", "--output_dir", "out"]


# ---- flags ----------------------------------------------------------------------------------
def test_str2bool_accepts_exactly_the_original_spellings():
    assert str2bool("True") is True and str2bool("true") is True
    assert str2bool("False") is False and str2bool("false") is False
    for bad in ("TRUE", "1", "yes", "0", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            str2bool(bad)


def test_run_qa_defaults_are_the_originals():
    a = parse_args(REQUIRED)
    expected = dict(data_dir="./data", datafile_prefix="", overwrite_output=False, do_train=False,
                    do_predict=False, model_name="facebook/bart-large", pretrain_ckpt=None,
                    num_lower_layers=4, num_upper_layers=8, entity_embed_size=256,
                    entity_vocab_size=1000010, dropout=0.1, elloss_weight=1.0,
                    entity_token_weight=None, lower_decoder_attn="lower_encoder",
                    inference_nearest_k_entity=100, do_cased=False, generate_target="answer",
                    final_layer_loss="answer_only", apply_el_loss="all",
                    prepend_question_in_decoder_input=True, add_another_bos=True,
                    max_input_length=50, max_output_length=20, no_repeat_ngram_size=3,
                    train_batch_size=64, predict_batch_size=64, learning_rate=1e-5,
                    weight_decay=0.01, adam_epsilon=1e-8, max_grad_norm=0.1,
                    gradient_accumulation_steps=1, num_train_epochs=1000, warmup_ratio=0.1,
                    wait_step=10, log_level=20, log_level_replica=30, eval_period=1000, prefix="",
                    debug=False, seed=42, trie_for_each_instance=True, entity_copy=0,
                    rescale_logits="none", compact_entity_memory=False, resume=False)
    for key, value in expected.items():
        assert getattr(a, key) == value, key
    assert a.do_lowercase is True and a.fp16 is False and a.train_from_scratch is True


def test_boolean_and_none_spellings():
    a = parse_args(REQUIRED + ["--do_train", "--overwrite_output", "True", "--debug",
                               "--add_another_bos", "False", "--pretrain_ckpt", "None",
                               "--entity_token_weight", "1.0", "--local-rank=1"])
    assert a.do_train and a.overwrite_output and a.debug and a.add_another_bos is False
    assert a.pretrain_ckpt is None and a.entity_token_weight == 1.0 and a.local_rank == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(REQUIRED + ["--debug", "yes"])


def test_friendly_commands_imply_their_action_and_keep_run_qa_flags():
    t = parse_args(REQUIRED + ["--num_beams", "3"], mode="train")
    assert t.do_train and t.generate_target == "entity_linking" and t.num_beams == 3
    p = parse_args(REQUIRED, mode="predict")
    assert p.do_predict and not p.do_train
    help_text = build_parser("train", "edmem train").format_help()
    assert "examples:" in help_text and "optimisation" in help_text and "--resume" in help_text


def test_namespace_order_matches_the_original_args_file(parity_dir):
    text = (parity_dir / "e2e_run" / "main" / "args").read_text()
    keys = re.findall(r"(\w+)=", text)
    keys = [k for k in keys if k in ORIGINAL_ORDER or k in ("do_lowercase", "fp16",
                                                              "train_from_scratch", "n_gpu")]
    ours = [k for k in vars(parse_args(REQUIRED)) if k in keys]
    assert ours == keys


# ---- steps, schedule, early stopping --------------------------------------------------------
def test_step_counts_match_the_spec_examples():
    wq = calculate_num_steps(3054, 16, 8, 1000, 1, 0.05)
    assert (wq.steps_per_epoch, wq.total_global_steps, wq.warmup_steps) == (24, 24000, 1200)
    e2e = calculate_num_steps(20, 4, 1, 5, 1, 0.05)        # e2e_run/main: 25 steps, warmup 1
    assert (e2e.total_local_steps, e2e.total_global_steps, e2e.warmup_steps) == (25, 25, 1)
    ga = calculate_num_steps(10, 4, 2, 3, 2, 0.1)          # ceil(10/2)*2=10, 2 steps/epoch, 6 local
    assert (ga.data_size, ga.total_local_steps, ga.total_global_steps) == (10, 6, 3)


def test_linear_schedule_matches_the_original_lrs():
    # optim_steps.json of the parity vectors: warmup 1, total 25, lr 1e-3 -> 0, 1e-3, 9.5833e-4
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-3)
    sched = linear_schedule(opt, 1, 25)
    lrs = []
    for _ in range(3):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 1e-3, 1e-3 * 23 / 24])


def test_early_stopping_counts_evaluations_without_strict_improvement():
    stop = EarlyStopping(wait_step=3)
    assert stop.update(0.0)                    # -1 -> 0: the first evaluation always saves
    assert not stop.update(0.0)                # equal is not better
    assert stop.update(0.1) and stop.wait == 0
    for _ in range(3):
        assert not stop.should_stop
        stop.update(0.05)
    assert stop.should_stop
    fresh = EarlyStopping(wait_step=5)
    fresh.load_state_dict(stop.state_dict())
    assert (fresh.best, fresh.wait, fresh.wait_step) == (0.1, 3, 5)


# ---- data order ------------------------------------------------------------------------------
def test_epoch_order_is_a_function_of_seed_and_epoch_and_shards_cover_everything():
    a0 = epoch_indices(11, 0, 7)
    assert sorted(a0) == list(range(11)) and a0 == epoch_indices(11, 0, 7)
    assert a0 != epoch_indices(11, 1, 7)       # set_epoch every epoch (Q3)
    shards = [epoch_indices(11, 2, 7, rank, 2) for rank in range(2)]
    assert len(shards[0]) == len(shards[1]) == 6
    assert set(shards[0]) | set(shards[1]) == set(range(11))
    assert [len(b) for b in epoch_batches(11, 4, 0, 7)] == [4, 4, 3]
    assert epoch_indices(5, 0, 0, shuffle=False) == [0, 1, 2, 3, 4]


# ---- optimiser --------------------------------------------------------------------------------
def _reference_adamw(p, grads, lr, wd, eps=1e-8, b1=0.9, b2=0.999):
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
        p = p - lr * wd * p
    return p


def test_adamw_is_the_original_update_rule():
    rng = np.random.default_rng(0)
    start = rng.normal(size=5)
    grads = [rng.normal(size=5) * 1e-3 for _ in range(4)]
    p = torch.nn.Parameter(torch.tensor(start))
    opt = AdamW([p], lr=1e-2, weight_decay=0.1)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p.detach().numpy(), _reference_adamw(start, grads, 1e-2, 0.1),
                               rtol=1e-12)


def test_no_decay_groups_cover_biases_layernorms_and_embedding_tables():
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = torch.nn.Embedding(5, 4)
            self.layernorm_embedding = torch.nn.LayerNorm(4)
            self.fc = torch.nn.Linear(4, 4)
            self.EntityEmbedding = torch.nn.Module()
            self.EntityEmbedding.weight = torch.nn.Parameter(torch.zeros(4, 7))
            self.head = torch.nn.Linear(4, 5, bias=False)
            self.head.weight = self.shared.weight      # tied: listed once

    decay, no_decay = parameter_groups(Tiny(), 0.01)
    assert decay["names"] == ["fc.weight"] and decay["weight_decay"] == 0.01
    assert set(no_decay["names"]) == {"shared.weight", "layernorm_embedding.weight",
                                      "layernorm_embedding.bias", "fc.bias",
                                      "EntityEmbedding.weight"}
    assert no_decay["weight_decay"] == 0.0


# ---- atomic I/O and RNG ---------------------------------------------------------------------
def test_atomic_write_keeps_the_old_file_when_the_writer_dies(tmp_path):
    target = tmp_path / "pytorch_model.bin"
    atomic_torch_save({"a": torch.ones(2)}, target)

    def dies(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["pytorch_model.bin"]


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    data_rng = np.random.RandomState(3)
    random.seed(1); np.random.seed(2); torch.manual_seed(3)
    ck.save_training_state(tmp_path, {"rng": [ck.capture_rng_state(data_rng)]})
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), data_rng.rand())
    random.seed(9); np.random.seed(9); torch.manual_seed(9); data_rng.seed(9)
    state = ck.load_training_state(tmp_path)
    ck.restore_rng_state(state["rng"][0], data_rng)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), data_rng.rand()) == expected


def test_a_foreign_training_state_is_a_clear_error(tmp_path):
    torch.save({"something": 1}, tmp_path / ck.TRAINING_STATE)
    with pytest.raises(CheckpointError, match="not an edmem training state"):
        ck.load_training_state(tmp_path)
    assert ck.load_training_state(tmp_path / "missing") is None


# ---- compact memory and writer --------------------------------------------------------------
def test_compact_rows_keep_reserved_rows_and_map_back(tmp_path):
    rows = EntityRows.compact_from_ids([5000, 12, 999_999, 12])
    assert rows.num_rows == 13 and rows.id_to_row(12) == 10 and rows.id_to_row(999_999) == 12
    assert rows.id_to_row(3) == 3 and 5000 in rows and 13 not in rows
    assert rows.rows_to_ids(np.array([[12, 0, 10]])).tolist() == [[999_999, 0, 12]]
    with pytest.raises(DataError, match="no row"):
        rows.id_to_row(77)
    rows.save(tmp_path)
    again = EntityRows.load(tmp_path)
    assert again.compact and again.rows_to_ids(np.arange(13)).tolist() == \
        rows.rows_to_ids(np.arange(13)).tolist()
    assert EntityRows.load(tmp_path / "none") is None
    full = EntityRows.identity(20)
    assert full.id_to_row(19) == 19 and 20 not in full


def test_writer_names_unnamed_ids_with_the_empty_string(tmp_path):
    names = {10: "Jamaican English", 11: "Zürich"}
    assert entity_name(names, 5) == "" and entity_name(names, 10) == "Jamaican English"
    path = write_predictions(tmp_path / "predictions.json", {"0": [11, 10], "8": [3, 10]}, names)
    text = path.read_text()
    assert text.isascii()                      # json.dump defaults, like the original
    assert json.loads(text) == {"0": ["Zürich", [11, 10]], "8": ["", [3, 10]]}
    assert list(predictions_object({"b": [10], "a": [11]}, names)) == ["b", "a"]
