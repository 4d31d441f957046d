"""The shared training loop (``edmem.training.loop.train``) on a toy model: what fine-tuning and
pretraining pass in as data — batch fields, evaluation, step budget, wait_step 0, set_epoch —
and the neutral best-checkpoint record."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from edmem.runtime.distributed import DistInfo
from edmem.training import checkpointing as ck
from edmem.training.loop import DevResult, LoopState, TrainJob, percent, train
from edmem.training.schedule import calculate_num_steps, linear_schedule


class Toy(nn.Module):
    """Linear regression with the model's output shape (loss + detail losses)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(1, 1)

    def forward(self, x, y, return_dict=True):
        loss = ((self.w(x.float()) - y.float()) ** 2).mean()
        return SimpleNamespace(loss=loss, detail_loss=SimpleNamespace(lm_loss=loss.detach()))


class Items:
    """Items with an epoch-dependent target; records set_epoch calls."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch, self.epochs_seen = n, 0, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"x": [i], "y": [2 * i + self.epoch], "unused": [0]}


def _collate(items: list) -> dict:
    return {k: torch.tensor([it[k] for it in items]) for k in items[0]}


def _job(data, scores, *, epochs=3, max_steps=0, wait_step=0, best=-1.0, batch=2, ga=1):
    model = Toy()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    counts = calculate_num_steps(len(data), batch, 1, epochs, ga, 0.0)
    saved, evaluated = [], []

    def evaluate() -> DevResult:
        score = scores[len(evaluated)]
        evaluated.append(score)
        return DevResult(score=score, metric="toy", summary=f"toy {score}",
                          metrics={"toy": score}, notes=(f"note {score}",))

    job = TrainJob(model=model, optimizer=optimizer, scheduler=linear_schedule(optimizer, 0, 100),
                   train_data=data, collate=_collate, evaluate=evaluate,
                   save_best=lambda epoch, step, result: saved.append((step, result.score)),
                   save_state=lambda st: None, counts=counts, dist=DistInfo(),
                   train_batch_size=batch, gradient_accumulation_steps=ga, max_grad_norm=1.0,
                   eval_period=2, wait_step=wait_step, num_train_epochs=epochs, seed=0,
                   max_steps=max_steps, input_fields=("x", "y"), format_score=lambda s: f"{s:.1f}",
                   state=LoopState(best=best))
    return job, saved, evaluated


def test_step_budget_set_epoch_and_wait_step_zero(caplog) -> None:
    data = Items(8)                        # 4 micro-batches per epoch
    job, saved, evaluated = _job(data, [0.5, 0.4, 0.3, 0.2, 0.1], epochs=2, max_steps=7,
                                 best=float("-inf"))
    with caplog.at_level(logging.INFO, logger="__main__"):
        result = train(job)
    assert (result.global_step, result.stopped_by) == (7, "steps")
    assert data.epochs_seen == [0, 1]
    assert evaluated == [0.5, 0.4, 0.3, 0.2]   # steps 2, 4, 6 and the last one (7)
    assert saved == [(2, 0.5)]                  # strict improvement only; wait_step 0 never stops
    assert job.state.finished and job.state.global_step == 7
    text = caplog.text
    assert "Step 2, Train loss" in text and ", toy 0.5, Detail loss: lm_loss: " in text
    assert "Step 2, note 0.5" in text
    assert "Saving model with best toy: -inf -> 0.5 on epoch=1, global_step=2" in text


def test_early_stopping_and_epochs(caplog) -> None:
    job, saved, evaluated = _job(Items(8), [0.1, 0.1, 0.1, 0.9, 0.9, 0.9], epochs=3, wait_step=2)
    result = train(job)
    assert result.stopped_by == "early_stopping" and result.global_step == 6
    assert saved == [(2, 0.1)] and result.best == 0.1

    job, saved, evaluated = _job(Items(8), [0.1 * k for k in range(1, 7)], epochs=3, wait_step=2)
    result = train(job)
    assert (result.stopped_by, result.global_step, len(saved)) == ("epochs", 12, 6)


def test_percent_is_the_original_printout() -> None:
    assert percent(0.125) == "%.2f%%" % 12.5 == "12.50%"
    assert percent(-1.0) == "-100.00%"


def test_best_record_is_neutral_and_old_records_still_read(tmp_path) -> None:
    (tmp_path / ck.BEST_META).write_text(json.dumps(
        {"epoch": 3, "global_step": 40, "dev_em": 0.25, "entity_rows": "full"}))
    assert ck.read_best_record(tmp_path) == {"epoch": 3, "global_step": 40, "score": 0.25,
                                             "metric": "EM", "entity_rows": "full"}
    (tmp_path / ck.BEST_META).write_text(json.dumps(
        {"epoch": 1, "global_step": 8, "score": -12.5, "metric": "perplexity"}))
    assert ck.read_best_record(tmp_path)["metric"] == "perplexity"
    assert ck.read_best_record(tmp_path / "missing") is None


@pytest.mark.parametrize("ga", [1, 3])
def test_gradient_accumulation_ends_on_the_last_micro_batch(ga) -> None:
    job, _, _ = _job(Items(10), [0.0] * 20, epochs=2, ga=ga)   # 5 micro-batches per epoch
    result = train(job)
    assert result.global_step == job.counts.total_global_steps == -(-10 // ga)
    assert job.state.local_step == 10
