"""The pretrain application (``edmem pretrain``): build tokenizer, corpora, model and optimiser,
run the training loop, keep the best checkpoint. :func:`pretrain` runs it in this process,
:func:`main` is the command (bad input ends as one ``edmem pretrain: error: ...`` line, exit 1).

The output directory is a valid ``--pretrain_ckpt`` for ``edmem.run_qa`` / ``edmem train``:
``pytorch_model.bin`` in the original layout (every alias key) + ``config.json``, plus
``entity_rows.json`` when the memory is compact. Alongside: ``pretrain_metrics.json`` (the best
dev metrics and every evaluation), ``args``, ``log.txt``, ``tensorboard/`` and
``training_state.pt`` (what ``--resume`` continues from).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torch.utils.data import Subset

from edmem.apps.common import (UsageError, amp_scaler, begin_training, build_config,
                               check_length_fits, load_entity_rows, load_tokenizer, load_weights,
                               open_tensorboard, require_positive, run_in_process_group,
                               run_precision, scaler_state, start_run, wrap_ddp)
from edmem.apps.common import build_model as build_checked_model
from edmem.constants import PRETRAINING
from edmem.data.entity_rows import EntityRows
from edmem.data.entity_vocab import load_id2entity
from edmem.data.markers import encode_with_mentions
from edmem.errors import USER_ERRORS, CheckpointError, DataError
from edmem.modeling.checkpoints import WEIGHTS_NAME
from edmem.modeling.model import EDMemModel
from edmem.pretraining.args import parse_args
from edmem.pretraining.collate import PretrainCollator
from edmem.pretraining.corpus import TokenCache, open_or_build_cache
from edmem.pretraining.dataset import PretrainDataset, row_map
from edmem.pretraining.evaluate import evaluate_pretraining
from edmem.pretraining.masking import MaskingConfig, SpecialTokenIds
from edmem.pretraining.metrics import ACCESSES, PERPLEXITY, RECALL_KS, format_metrics, selection_score
from edmem.runtime import distributed as dist_utils
from edmem.runtime.atomic import atomic_write_text
from edmem.runtime.console import report_error
from edmem.runtime.distributed import DistInfo
from edmem.runtime.hub import resolve_model_name
from edmem.runtime.logging_setup import get_logger
from edmem.training import checkpointing as ck
from edmem.training.loop import DevResult, LoopState, TrainJob, train
from edmem.training.optim import build_optimizer
from edmem.training.schedule import StepCounts, calculate_num_steps, linear_schedule

logger = get_logger()

METRICS_FILE = "pretrain_metrics.json"
SELECTION_METRICS = (PERPLEXITY,) + tuple(f"{a}_recall@{k}" for a in ACCESSES for k in RECALL_KS)


@dataclass
class PretrainResult:
    """What ``edmem demo`` (or any caller) needs after pretraining."""

    output_dir: Path
    checkpoint: Path                       # output_dir/pytorch_model.bin (a --pretrain_ckpt dir's file)
    best_metrics: dict[str, float] | None  # dev metrics of the kept checkpoint (None without dev)
    best_step: int
    global_step: int
    selection_metric: str
    stopped_by: str


def check_args(args: argparse.Namespace) -> None:
    """Refuse settings that would fail late (after tokenising a large corpus)."""
    if args.selection_metric not in SELECTION_METRICS:
        raise UsageError(f"--selection_metric {args.selection_metric!r}: expected one of {SELECTION_METRICS}")
    require_positive(args, ("train_batch_size", "predict_batch_size", "gradient_accumulation_steps",
                            "eval_period"))
    require_positive(args, ("max_seq_length",), minimum=2)  # BOS + EOS
    if args.max_steps <= 0 and args.num_train_epochs < 1:
        raise UsageError("give --max_steps > 0 or --num_train_epochs >= 1")
    if args.compact_entity_memory and not args.id2entity_file:
        raise UsageError("--compact_entity_memory needs --id2entity_file (the ids that get memory rows)")
    if args.pretrain_ckpt is not None and not Path(args.pretrain_ckpt).is_dir():
        raise CheckpointError(f"--pretrain_ckpt {args.pretrain_ckpt}: directory not found")


def entity_rows_for(args: argparse.Namespace, out: Path) -> EntityRows:
    """Fine-tuning's rule: the saved mapping when resuming, else compact from the vocabulary, else
    the full identity memory. The vocabulary is only read when it decides the rows."""
    names = load_id2entity(args.id2entity_file) if args.compact_entity_memory else None
    return load_entity_rows(args, out, names)


def build_model(args: argparse.Namespace, tokenizer: Any, num_rows: int) -> EDMemModel:
    """A randomly initialised model in LM+EL mode (the original pretrained from scratch, Q32), asking
    each memory read for enough candidates for recall@100 (capped by the memory size)."""
    return build_checked_model(build_config(args, tokenizer, num_rows, generate_target=PRETRAINING,
                                            min_top_k=max(RECALL_KS)), args.model_name)


def masking_configs(args: argparse.Namespace) -> tuple[MaskingConfig, MaskingConfig]:
    """(training, dev) masking. Dev keeps the original rules only — no deletion or cue (recall@k is
    read on span-masked mentions aligned in encoder and decoder), independent span draws — so
    dev recall is comparable across objectives."""
    masking = MaskingConfig(args.mlm_probability, args.ssm_probability, args.mlm_random_replace,
                            args.loss_on_mask_tokens, args.mention_deletion_probability,
                            args.memory_cue_probability, args.ssm_single_mention_probability)
    return masking, replace(masking, mention_deletion_probability=0.0, memory_cue_probability=0.0,
                            ssm_single_mention_probability=0.0)


def dev_evaluation(metrics: dict[str, float] | None, selection_metric: str, step: int) -> DevResult:
    """Pretraining's dev result for the loop: ``selection_metric`` selects; without a dev file
    (``metrics`` None) the latest step wins, so the last evaluation's checkpoint is kept."""
    if metrics is None:
        return DevResult(score=float(step), metric="step", summary="no dev file")
    return DevResult(score=selection_score(metrics, selection_metric), metric=selection_metric,
                      summary=format_metrics(metrics), metrics=metrics)


def step_counts(args: argparse.Namespace, num_passages: int, world_size: int) -> tuple[StepCounts, int]:
    """The fine-tuning formula; ``--max_steps`` replaces the epochs' total (and sets the epochs)."""
    counts = calculate_num_steps(num_passages, args.train_batch_size, world_size, max(1, args.num_train_epochs),
                                 args.gradient_accumulation_steps, args.warmup_ratio)
    if args.max_steps <= 0:
        return counts, max(1, args.num_train_epochs)
    epochs = math.ceil(args.max_steps * args.gradient_accumulation_steps / counts.steps_per_epoch)
    return StepCounts(counts.data_size, counts.steps_per_epoch, counts.steps_per_epoch * epochs,
                      args.max_steps, round(args.max_steps * args.warmup_ratio)), epochs


def _open_cache(path: str, tokenizer: Any, args: argparse.Namespace, dist: DistInfo) -> TokenCache:
    """Rank 0 tokenises (or finds the cache); the others wait, then open the same directory."""
    encode = functools.partial(encode_with_mentions, tokenizer, max_length=args.max_seq_length,
                               bos_prefix=args.add_another_bos)
    settings = {"max_seq_length": args.max_seq_length, "add_another_bos": args.add_another_bos}
    cache = None
    if dist.is_main:
        cache = open_or_build_cache(path, encode, tokenizer, settings, args.cache_dir, progress=True)
    dist_utils.barrier()
    return cache or open_or_build_cache(path, encode, tokenizer, settings, args.cache_dir)


def pretrain(args: argparse.Namespace) -> PretrainResult:
    """Run ``edmem pretrain`` in this process (DDP when launched by torchrun)."""
    check_args(args)
    return run_in_process_group(args, _pretrain)


def _pretrain(args: argparse.Namespace, dist: DistInfo) -> PretrainResult:
    out = start_run(args, dist, "log.txt")

    args.model_name = resolve_model_name(args.model_name)  # fails fast offline (edmem.runtime.hub)
    tokenizer = load_tokenizer(args.model_name)
    special = SpecialTokenIds.from_tokenizer(tokenizer)
    rows = entity_rows_for(args, out)
    # the decoder reads the shifted passage: same length (before the corpus is tokenised)
    check_length_fits("max_seq_length", args.max_seq_length,
                      build_config(args, tokenizer, rows.num_rows, generate_target=PRETRAINING),
                      args.model_name)
    masking, dev_masking = masking_configs(args)
    train_data = PretrainDataset(_open_cache(args.train_file, tokenizer, args, dist), special, masking,
                                 row_map(rows), seed=args.seed)
    if len(train_data) == 0:  # every line blank or skipped: nothing to train on (the log has why)
        raise DataError("no usable passages (every line is blank or was skipped)", args.train_file)
    dev_data: Any = None
    if args.dev_file:
        # A different seed from training and a fixed epoch: every evaluation sees the same masks.
        dev_data = PretrainDataset(_open_cache(args.dev_file, tokenizer, args, dist), special, dev_masking,
                                   row_map(rows), seed=args.seed + 1)
        if len(dev_data) == 0:
            raise DataError("no usable passages (every line is blank or was skipped)", args.dev_file)
        if args.max_dev_passages > 0:
            dev_data = Subset(dev_data, range(min(args.max_dev_passages, len(dev_data))))
    logger.info("Train passages: %d, dev passages: %d, memory rows: %d%s", len(train_data),
                len(dev_data) if dev_data is not None else 0, rows.num_rows, " (compact)" if rows.compact else "")

    model = build_model(args, tokenizer, rows.num_rows)
    saved = ck.load_resume_state(out, args.resume)
    if saved is None and args.pretrain_ckpt:
        load_weights(model, args.pretrain_ckpt, "--pretrain_ckpt", args.model_name)
    model.to(dist.device)
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay, args.adam_epsilon)
    counts, num_epochs = step_counts(args, len(train_data), dist.world_size)
    scheduler = linear_schedule(optimizer, counts.warmup_steps, counts.total_global_steps)
    logger.info("Step counts: %s", asdict(counts))
    precision = run_precision(args, dist)
    scaler = amp_scaler(precision, dist, saved)

    state = LoopState(best=-math.inf)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"step": 0, "metrics": None}
    if saved is not None:
        state = LoopState(**ck.restore_resume_state(saved, model, optimizer, scheduler, dist, counts,
                                                    source=out / ck.TRAINING_STATE))
        try:
            history, best = json.loads(saved["history"]), json.loads(saved["best"])
            if not (isinstance(history, list) and isinstance(best, dict) and {"step", "metrics"} <= best.keys()):
                raise ValueError("unexpected layout")
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{out / ck.TRAINING_STATE}: the pretraining history is damaged "
                                  f"({type(exc).__name__}: {exc})") from None
        logger.info("Resuming from %s at global step %d (epoch %d, batch %d)", out / ck.TRAINING_STATE,
                    state.global_step, state.epoch + 1, state.batch_in_epoch)
    collate = PretrainCollator(special.pad, with_cue=masking.memory_cue_probability > 0)

    def evaluate() -> DevResult:
        metrics = None
        if dev_data is not None:
            metrics = evaluate_pretraining(model, dev_data, collate, args.predict_batch_size, dist,
                                           special.entity_start, progress=True, precision=precision)
            history.append({"step": state.global_step, **metrics})
        return dev_evaluation(metrics, args.selection_metric, state.global_step)

    def save_best(epoch: int, step: int, result: DevResult) -> None:
        best.update(step=step, metrics=result.metrics or None)
        if dist.is_main:
            ck.save_best_checkpoint(model, out, rows, epoch, step, result.score, result.metric)
        dist_utils.barrier()

    def save_state(st: LoopState) -> None:
        ck.save_resume_state(out, model, optimizer, scheduler, st.to_dict(), dist, counts,
                             history=json.dumps(history), best=json.dumps(best), **scaler_state(scaler))
        if dist.is_main:
            write_metrics(out, args.selection_metric, best, history)

    logger.info("Starting pretraining: %d optimizer steps (%d warm-up), %d micro-batches per epoch",
                counts.total_global_steps, counts.warmup_steps, counts.steps_per_epoch)
    begin_training(out, args, dist)
    with open_tensorboard(out, dist, args.tensorboard, state.global_step) as writer:
        outcome = train(TrainJob(
            model=wrap_ddp(model, dist, args.gradient_checkpointing), optimizer=optimizer, scheduler=scheduler, train_data=train_data,
            collate=collate, evaluate=evaluate, save_best=save_best, save_state=save_state, counts=counts,
            dist=dist, train_batch_size=args.train_batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps, max_grad_norm=args.max_grad_norm,
            eval_period=args.eval_period, wait_step=args.wait_step, num_train_epochs=num_epochs,
            seed=args.seed, max_steps=counts.total_global_steps,  # --max_steps or the epochs' worth
            input_fields=collate.model_fields, format_score=lambda score: f"{score:.4g}",
            save_training_state=args.save_training_state, tensorboard=writer, state=state,
            precision=precision, scaler=scaler))
    logger.info("Best %s on dev: %.4g after %d steps (%s)", args.selection_metric, outcome.best,
                outcome.global_step, outcome.stopped_by)
    if dist.is_main:
        write_metrics(out, args.selection_metric, best, history)
    dist_utils.barrier()
    if not (out / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"pretraining ended ({outcome.stopped_by}) before any checkpoint was saved")
    return PretrainResult(output_dir=out, checkpoint=out / WEIGHTS_NAME, best_metrics=best["metrics"],
                          best_step=int(best["step"]), global_step=outcome.global_step,
                          selection_metric=args.selection_metric, stopped_by=outcome.stopped_by)


def write_metrics(out: Path, selection: str, best: dict[str, Any], history: list[dict[str, Any]]) -> None:
    atomic_write_text(out / METRICS_FILE, json.dumps(
        {"selection_metric": selection, "best_step": best["step"], "best": best["metrics"],
         "history": history}, indent=1))


def main(argv: list[str] | None = None) -> int:
    """``edmem pretrain``: parse the flags, run :func:`pretrain`, print a one-line summary."""
    args = parse_args(argv)
    try:
        result = pretrain(args)
    except (*USER_ERRORS, OSError) as exc:
        return report_error("edmem pretrain", exc)
    except KeyboardInterrupt:
        print("edmem pretrain: interrupted (continue with --resume)", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) != 0:  # one summary per job, not per process
        return 0
    best = result.best_metrics or {}
    shown = (f", {result.selection_metric} {best[result.selection_metric]:.4g}"
             if result.selection_metric in best else "")
    print(f"Pretrained {result.global_step} steps ({result.stopped_by}); best checkpoint from step "
          f"{result.best_step}{shown}: {result.output_dir} (use it as --pretrain_ckpt)")
    return 0
