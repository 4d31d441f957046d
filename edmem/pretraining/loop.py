"""The pretraining step loop: the fine-tuning loop's mechanics with a step budget and dev metrics.

    for each epoch (train_data.set_epoch(epoch): fresh masks), for each micro-batch of this rank:
        forward (LM + EL losses); loss /= GA; all-reduce the loss numbers (NaN anywhere stops all)
        backward (DDP gradient sync only on the micro-step that ends an accumulation)
        every GA micro-steps: clip, AdamW step, schedule step, zero grads, global_step += 1
            every eval_period optimizer steps and at the last one:
                dev recall@k / perplexity -> log + TensorBoard -> keep the best checkpoint
                -> save the resume state -> optional early stop
        stop at the step budget (--max_steps, or the epochs' worth of steps)

What is shared with fine-tuning is imported from :mod:`edmem.training` (data order, loss numbers
and their all-reduce, NaN stop, fault injection, early stopping, progress bar, loop state). The
micro-step itself is repeated here because ``edmem.training.loop.train`` fixes the model inputs,
the dev metric type (EM) and has no step budget; see docs/pretraining.md ("integration").
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from edmem.pretraining.collate import MODEL_FIELDS
from edmem.pretraining.metrics import format_metrics
from edmem.training import distributed as dist_utils
from edmem.training.distributed import DistInfo
from edmem.training.faults import maybe_inject_fault
from edmem.training.loop import LOSS_NAMES, LoopState, _detail_str, _loss_numbers, _progress
from edmem.training.sampling import epoch_batches
from edmem.training.schedule import EarlyStopping, StepCounts

logger = logging.getLogger("__main__")

PERPLEXITY = "perplexity"


def selection_score(metrics: dict[str, float], name: str) -> float:
    """Higher is better: recall values as they are, perplexity negated."""
    return -metrics[PERPLEXITY] if name == PERPLEXITY else metrics[name]


@dataclass
class PretrainJob:
    """What the loop needs; built by :func:`edmem.pretraining.runner.pretrain`."""

    model: nn.Module                                   # DDP-wrapped when world_size > 1
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_data: Any                                    # PretrainDataset (has set_epoch)
    collate: Callable[[list], dict]
    evaluate: Callable[[], dict[str, float] | None]    # dev metrics over all ranks, None without dev
    save_best: Callable[[int, dict[str, float] | None], None]   # (global_step, metrics)
    save_state: Callable[[LoopState], None]            # resume state (every rank calls it)
    counts: StepCounts                                 # total_global_steps = the step budget
    num_epochs: int
    dist: DistInfo
    train_batch_size: int
    gradient_accumulation_steps: int
    max_grad_norm: float
    eval_period: int
    wait_step: int                                     # 0 = never stop early
    selection_metric: str
    seed: int
    save_training_state: bool = True
    tensorboard: Any = None
    state: LoopState = field(default_factory=lambda: LoopState(best=-math.inf))


@dataclass
class LoopOutcome:
    global_step: int
    best_score: float
    stopped_by: str          # "steps" | "early_stopping" | "nan" | "resumed_finished"


def run(job: PretrainJob) -> LoopOutcome:
    model, optimizer, scheduler, st = job.model, job.optimizer, job.scheduler, job.state
    ga, world, total = job.gradient_accumulation_steps, job.dist.world_size, job.counts.total_global_steps
    stopper = EarlyStopping(job.wait_step if job.wait_step > 0 else math.inf, best=st.best, wait=st.wait)
    if st.finished:
        logger.info("The saved training state is finished; nothing left to train")
        return LoopOutcome(st.global_step, stopper.best, "resumed_finished")
    is_ddp = hasattr(model, "no_sync")
    logged = torch.zeros(len(LOSS_NAMES) + 1)
    steps_since_log = 0
    stopped_by = "steps"
    model.train()
    train_start = time.time()
    logger.info("Starting pretraining: %d optimizer steps (%d warm-up), %d micro-batches per epoch",
                total, job.counts.warmup_steps, job.counts.steps_per_epoch)

    while st.epoch < job.num_epochs and st.global_step < total and stopped_by == "steps":
        logger.info("%sEpoch %d%s", "*" * 20, st.epoch + 1, "*" * 20)
        job.train_data.set_epoch(st.epoch)
        batches = epoch_batches(len(job.train_data), job.train_batch_size, st.epoch, job.seed,
                                job.dist.rank, world)
        progress = _progress(len(batches), st.batch_in_epoch, st.epoch, job.dist)
        for indices in batches[st.batch_in_epoch:]:
            st.batch_in_epoch += 1
            st.local_step += 1
            sync = st.local_step % ga == 0 or st.batch_in_epoch == len(batches) and st.epoch == job.num_epochs - 1
            batch = job.collate([job.train_data[i] for i in indices])
            inputs = {k: batch[k].to(job.dist.device) for k in MODEL_FIELDS}
            with model.no_sync() if (is_ddp and not sync) else contextlib.nullcontext():
                out = model(**inputs, return_dict=True)
                numbers = _loss_numbers(out, ga)
                maybe_inject_fault("nan", job.dist.rank, st.global_step + 1, numbers)
                numbers = dist_utils.all_reduce_sum(numbers.to(job.dist.device)).cpu() / world
                if not torch.isfinite(numbers).all():
                    logger.error("NaN/inf loss at global step %d (epoch %d); stopping on every rank",
                                 st.global_step + 1, st.epoch + 1)
                    stopped_by = "nan"
                    break
                (out.loss / ga).backward()
            maybe_inject_fault("crash", job.dist.rank, st.global_step + 1)
            logged += numbers
            progress.update(1)
            if not sync:
                continue

            torch.nn.utils.clip_grad_norm_(model.parameters(), job.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            st.global_step += 1
            steps_since_log += 1
            if job.tensorboard is not None:
                job.tensorboard.add_scalar("train/lr", scheduler.get_last_lr()[0], st.global_step)
                job.tensorboard.add_scalar("train/loss", float(numbers[0]), st.global_step)

            last = st.global_step >= total
            if st.global_step % job.eval_period == 0 or last:
                logger.info("Train duration: %.3fs", time.time() - train_start)
                mean = logged / max(1, steps_since_log)
                metrics = job.evaluate()
                logger.info("Step %d, Train loss %.2f, %s, Detail loss: %s, epoch=%d", st.global_step,
                            float(mean[0]), format_metrics(metrics) if metrics else "no dev file",
                            _detail_str(mean), st.epoch + 1)
                _tensorboard(job.tensorboard, st.global_step, mean, metrics)
                logged.zero_()
                steps_since_log = 0
                # Without a dev file the latest checkpoint is the one kept.
                score = selection_score(metrics, job.selection_metric) if metrics else float(st.global_step)
                previous = stopper.best
                if stopper.update(score):
                    logger.info("Saving model with best %s: %.4g -> %.4g on epoch=%d, global_step=%d",
                                job.selection_metric if metrics else "step", previous, score,
                                st.epoch + 1, st.global_step)
                    job.save_best(st.global_step, metrics)
                st.best, st.wait = stopper.best, stopper.wait
                st.finished = stopper.should_stop or last
                if job.save_training_state:
                    job.save_state(st)
                if stopper.should_stop:
                    stopped_by = "early_stopping"
                    break
                model.train()
                train_start = time.time()
            if last:
                break
        progress.close()
        if stopped_by == "steps" and st.global_step < total:
            st.epoch += 1
            st.batch_in_epoch = 0
    st.finished = True
    logger.info("Best %s on dev: %.4g after %d steps (%s)", job.selection_metric, stopper.best,
                st.global_step, stopped_by)
    return LoopOutcome(st.global_step, stopper.best, stopped_by)


def _tensorboard(writer: Any, step: int, mean: torch.Tensor, metrics: dict[str, float] | None) -> None:
    if writer is None:
        return
    writer.add_scalar("train/loss_since_last_eval", float(mean[0]), step)
    for name, value in zip(LOSS_NAMES, mean[1:].tolist()):
        if not math.isnan(value):
            writer.add_scalar(f"train/{name}", value, step)
    for name, value in (metrics or {}).items():
        if not math.isnan(value):
            writer.add_scalar(f"dev/{name}", value, step)
    writer.flush()
