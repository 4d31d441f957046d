"""The training loop of fine-tuning and pretraining (docs/training.md), readable top to bottom.

    for each epoch (train_data.set_epoch(epoch) when it has one), for each micro-batch of this rank:
        forward; loss /= GA; all-reduce the loss numbers (NaN on any rank stops every rank)
        backward (DDP gradient sync only on the micro-step that ends an accumulation)
        every GA micro-steps: clip, AdamW step, schedule step, zero grads, global_step += 1
            every eval_period optimizer steps (and at the last one):
                evaluate -> log line -> save the best checkpoint if strictly better
                -> save the resume state -> stop after wait_step evaluations without improvement
        stop at the last optimizer step (the epochs' worth, or the step budget ``max_steps``)

The two callers differ only in data: which batch fields the model takes (``input_fields``), what
an evaluation returns (a :class:`DevResult`: selection score, its name, what to log) and how a
score is printed. Everything else — building the model, data, optimiser, writing files — lives
in the applications (``edmem.apps.run_qa`` / ``edmem.apps.pretrain``); this module knows nothing
of them: it only runs steps and decides when to evaluate and stop.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from edmem.constants import DETAIL_LOSS_NAMES
from edmem.runtime import distributed as dist_utils
from edmem.runtime import precision as amp
from edmem.runtime.distributed import DistInfo
from edmem.training.faults import maybe_inject_fault
from edmem.training.sampling import epoch_batches
from edmem.training.schedule import EarlyStopping, StepCounts

logger = logging.getLogger("__main__")

TRAIN_INPUTS = ("input_ids", "attention_mask", "labels", "decoder_input_ids",
                "decoder_attention_mask", "input_entity_link", "output_entity_link")


@dataclass
class LoopState:
    """Where training is; saved in the resume state. ``epoch`` is 0-based, ``batch_in_epoch``
    counts the micro-batches of ``epoch`` already consumed by this rank."""

    epoch: int = 0
    batch_in_epoch: int = 0
    local_step: int = 0
    global_step: int = 0
    best: float = -1.0
    wait: int = 0
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DevResult:
    """One dev evaluation, as the caller's ``evaluate`` reports it to the loop."""

    score: float                           # selection score, higher is better (strictly better saves)
    metric: str                            # its name in the log: "EM", "final_recall@1", …
    summary: str                           # the "Step …" line's metrics part: "EM 12.50%"
    metrics: dict[str, float] = field(default_factory=dict)   # TensorBoard scalars dev/<name>
    notes: tuple[str, ...] = ()            # further lines, each logged as "Step S, <note>"


def percent(score: float) -> str:
    """The original's score printout: a fraction as ``12.50%``."""
    return f"{score * 100:.2f}%"


@dataclass
class TrainJob:
    """What the loop needs; built by an application (``edmem.apps.run_qa``, ``edmem.apps.pretrain``)."""

    model: nn.Module                       # DDP-wrapped when world_size > 1
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_data: Any                        # items by index; set_epoch(epoch) is called if it has one
    collate: Callable[[list], dict]
    evaluate: Callable[[], DevResult]     # dev evaluation over all ranks
    save_best: Callable[[int, int, DevResult], None]  # (epoch, global_step, evaluation)
    save_state: Callable[[LoopState], None]  # resume state (collective: every rank calls it)
    counts: StepCounts
    dist: DistInfo
    train_batch_size: int
    gradient_accumulation_steps: int
    max_grad_norm: float
    eval_period: int
    wait_step: int                         # evaluations without improvement before stopping; 0 = never
    num_train_epochs: int
    seed: int
    max_steps: int = 0                     # step budget (counts built for it); 0 = every epoch
    input_fields: tuple[str, ...] = TRAIN_INPUTS   # batch fields passed to the model
    format_score: Callable[[float], str] = percent  # "Saving model with best …: A -> B"
    shuffle: bool = True
    save_training_state: bool = True
    tensorboard: Any = None                # SummaryWriter on rank 0, else None
    state: LoopState = field(default_factory=LoopState)
    precision: str = "fp32"                # "fp32" | "bf16" | "fp16": the forward's autocast
    scaler: Any = None                     # torch.amp.GradScaler for fp16, else None


@dataclass
class TrainResult:
    best: float
    global_step: int
    stopped_by: str   # "epochs" | "steps" (the budget) | "early_stopping" | "nan" | "resumed_finished"


def train(job: TrainJob) -> TrainResult:
    model, optimizer, scheduler, st = job.model, job.optimizer, job.scheduler, job.state
    ga, world = job.gradient_accumulation_steps, job.dist.world_size
    total = min(job.max_steps, job.counts.total_global_steps) if job.max_steps else job.counts.total_global_steps
    stopper = EarlyStopping(job.wait_step if job.wait_step > 0 else math.inf, best=st.best, wait=st.wait)
    if st.finished:
        logger.info("The saved training state is finished; nothing left to train")
        return TrainResult(stopper.best, st.global_step, "resumed_finished")
    is_ddp = hasattr(model, "no_sync")
    device = job.dist.device
    # Loss numbers summed since the last evaluation, on the device (moved to the CPU only when
    # logged); ``host`` receives each micro-step's numbers without stalling the GPU (_HostCopy).
    logged = torch.zeros(len(DETAIL_LOSS_NAMES) + 1, device=device)
    host = _HostCopy(len(DETAIL_LOSS_NAMES) + 1, device)
    steps_since_log = 0
    budget = "steps" if job.max_steps else "epochs"
    stopped_by = budget
    model.train()
    train_start = time.time()
    logger.info("Starting training!")

    for epoch in range(st.epoch, job.num_train_epochs):
        st.epoch = epoch
        logger.info("%sEpoch %d%s", "*" * 20, epoch + 1, "*" * 20)
        if hasattr(job.train_data, "set_epoch"):   # per-epoch item content (pretraining's masks)
            job.train_data.set_epoch(epoch)
        batches = epoch_batches(len(job.train_data), job.train_batch_size, epoch, job.seed,
                                job.dist.rank, world, job.shuffle)
        progress = _progress(len(batches), st.batch_in_epoch, epoch, job.dist)
        for indices in batches[st.batch_in_epoch:]:
            st.batch_in_epoch += 1
            st.local_step += 1
            sync = st.local_step % ga == 0 or st.local_step == job.counts.total_local_steps
            batch = job.collate([job.train_data[i] for i in indices])
            inputs = {k: batch[k].to(device, non_blocking=True) for k in job.input_fields}
            # Q31: accumulate locally, all-reduce gradients only on the last micro-step.
            with model.no_sync() if (is_ddp and not sync) else contextlib.nullcontext():
                with amp.autocast(device, job.precision):
                    out = model(**inputs, return_dict=True)
                numbers = _loss_numbers(out, ga)
                maybe_inject_fault("nan", job.dist.rank, st.global_step + 1, numbers)
                numbers = dist_utils.all_reduce_sum(numbers) / world
                host.start(numbers)   # asynchronous copy; read after backward is queued
                loss = out.loss / ga
                (job.scaler.scale(loss) if job.scaler is not None else loss).backward()
            # Q20: every rank sees the same sum, so every rank stops at the same micro-step, before
            # any optimizer step uses the non-finite gradients. Waiting here costs the GPU nothing:
            # the backward pass is already queued behind the copy.
            if not torch.isfinite(host.wait()).all():
                logger.error("NaN/inf loss at global step %d (epoch %d); stopping training on "
                             "every rank", st.global_step + 1, epoch + 1)
                stopped_by = "nan"
                break
            maybe_inject_fault("crash", job.dist.rank, st.global_step + 1)
            logged += numbers
            progress.update(1)
            if not sync:
                continue

            if job.scaler is not None:   # fp16: clip the true gradients; skip a step on inf
                job.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), job.max_grad_norm)
            if job.scaler is not None:
                job.scaler.step(optimizer)
                job.scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            st.global_step += 1
            steps_since_log += 1
            if job.tensorboard is not None:
                job.tensorboard.add_scalar("train/lr", scheduler.get_last_lr()[0], st.global_step)
                job.tensorboard.add_scalar("train/loss", float(host.values[0]), st.global_step)

            last = st.global_step == total
            if st.global_step % job.eval_period == 0 or last:
                logger.info("Train duration: %.3fs", time.time() - train_start)
                result = job.evaluate()
                mean = logged.detach().float().cpu() / max(1, steps_since_log)
                logger.info("Step %d, Train loss %.2f, %s, Detail loss: %s, epoch=%d",
                            st.global_step, float(mean[0]), result.summary, _detail_str(mean), epoch + 1)
                for note in result.notes:
                    logger.info("Step %d, %s", st.global_step, note)
                _tensorboard_eval(job.tensorboard, st.global_step, mean, result)
                logged.zero_()
                steps_since_log = 0
                previous = stopper.best
                if stopper.update(result.score):
                    logger.info("Saving model with best %s: %s -> %s on epoch=%d, global_step=%d",
                                result.metric, job.format_score(previous),
                                job.format_score(result.score), epoch + 1, st.global_step)
                    job.save_best(epoch + 1, st.global_step, result)
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
        if stopped_by != budget or st.global_step == total:
            break
        st.batch_in_epoch = 0
    st.finished = True
    return TrainResult(stopper.best, st.global_step, stopped_by)


def _loss_numbers(out: Any, scale: float) -> torch.Tensor:
    """``[loss, lm, el, enc, dec, final]`` (detached, fp32, divided by GA) for logging, on the
    loss's device: a missing part, or one the model left on another device (DetailLoss's 0 is a
    CPU tensor), is moved there explicitly — never a cross-device stack."""
    device = out.loss.device
    detail = out.detail_loss
    parts = [out.loss] + [getattr(detail, name, None) for name in DETAIL_LOSS_NAMES]
    values = [p.detach().float().reshape(()).to(device) if torch.is_tensor(p)
              else torch.tensor(0.0 if p is None else float(p), device=device)
              for p in parts]
    return torch.stack(values) / scale


class _HostCopy:
    """A micro-step's loss numbers copied to the CPU without a blocking sync at the copy: on CUDA
    a non-blocking copy into pinned memory plus an event; :meth:`wait` waits for that event only
    (the work queued after the copy keeps the GPU busy). On the CPU it is a plain view."""

    def __init__(self, size: int, device: torch.device):
        self.cuda = device.type == "cuda"
        self.values = torch.zeros(size, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None

    def start(self, numbers: torch.Tensor) -> None:
        if self.cuda:
            self.values.copy_(numbers.detach(), non_blocking=True)
            self.event.record()
        else:
            self.values = numbers.detach()

    def wait(self) -> torch.Tensor:
        if self.cuda:
            self.event.synchronize()
        return self.values


def _detail_str(mean: torch.Tensor) -> str:
    """``lm_loss: 0.0, el_loss: 6.91…, …`` — the original's DetailLoss printout."""
    return ", ".join(f"{name}: {float(value)}" for name, value in zip(DETAIL_LOSS_NAMES, mean[1:].tolist()))


def _tensorboard_eval(writer: Any, step: int, mean: torch.Tensor, result: DevResult) -> None:
    if writer is None:
        return
    for name, value in result.metrics.items():
        if not math.isnan(value):
            writer.add_scalar(f"dev/{name}", value, step)
    writer.add_scalar("train/loss_since_last_eval", float(mean[0]), step)
    for name, value in zip(DETAIL_LOSS_NAMES, mean[1:].tolist()):
        if not math.isnan(value):
            writer.add_scalar(f"train/{name}", value, step)
    writer.flush()


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, done: int, epoch: int, dist: DistInfo) -> Any:
    """A tqdm bar on rank 0 when stderr is a terminal (``disable=None``)."""
    if not dist.is_main:
        return _NoProgress()
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=done, desc=f"epoch {epoch + 1}", unit="batch",
                leave=False, disable=None)
