"""The run_QA application: what ``run_QA.py`` does with its flags (validate, set up, train with
dev selection, predict with the best checkpoint), wired from the data, model, training,
inference and evaluation layers. Behind ``python -m edmem.run_qa`` (:func:`main`),
``edmem train`` (:func:`train_main`) and ``edmem predict`` (:func:`predict_main`); bad input ends
as one ``<prog>: error: ...`` line and a non-zero exit.

Order (docs/training.md): validate flags -> process group -> output dir (+ overwrite protection)
-> log.txt / args -> seed -> entity vocabulary and memory rows -> tokenizer + config -> data ->
model (+ ``--pretrain_ckpt``) -> train (resume state, DDP) -> barrier -> predict with the best
checkpoint of ``--output_dir``.
"""

from __future__ import annotations

import argparse
import sys
from itertools import takewhile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edmem.apps.common import (amp_scaler, begin_training, build_config, build_model,
                               check_length_fits, load_entity_rows, load_tokenizer, load_weights,
                               open_tensorboard, require_positive, run_in_process_group,
                               run_precision, scaler_state, start_run, wrap_ddp)
from edmem.constants import ENTITY_LINKING
from edmem.data.collate import ELCollator
from edmem.data.dataset import ELDataset
from edmem.data.entity_rows import NUM_RESERVED
from edmem.data.entity_vocab import load_id2entity
from edmem.data.examples import ELEncodingOptions
from edmem.data.formats import load_el_split
from edmem.data.jsonio import check_file
from edmem.errors import USER_ERRORS, CheckpointError, DataError, UsageError
from edmem.evaluation.api import SelectionScores, selection_scores
from edmem.inference.answer_types import ANSWER_TYPES, AnswerTypePrior, fit_from_examples, load_answer_types
from edmem.inference.fact_overrides import load_fact_overrides
from edmem.inference.export import export_model_dir as write_model_dir
from edmem.inference.export import load_entity_types
from edmem.inference.model_dir import load_model_dir, read_metadata
from edmem.inference.predict import apply_rankers, predict_entities
from edmem.inference.writer import (prediction_paths, predictions_object, write_predictions,
                                    write_scores)
from edmem.modeling.checkpoints import SAFE_WEIGHTS_NAME, WEIGHTS_NAME
from edmem.runtime import distributed as dist_utils
from edmem.runtime.console import report_error
from edmem.runtime.distributed import DistInfo
from edmem.runtime.hub import resolve_model_name
from edmem.runtime.logging_setup import get_logger
from edmem.training import checkpointing as ck
from edmem.training.args import parse_args
from edmem.training.loop import DevResult, LoopState, TrainJob, train
from edmem.training.optim import build_optimizer
from edmem.training.schedule import calculate_num_steps, linear_schedule

EXIT_NAN = 3
PROG = "python -m edmem.run_qa"

logger = get_logger()


# ---------------------------------------------------------------------------- flag checks
def validate_args(args: argparse.Namespace) -> None:
    """Refuse what edmem does not build, and the original's crash-later cases, up front."""
    if args.generate_target != ENTITY_LINKING:
        raise UsageError(f"--generate_target {args.generate_target}: answer generation is not "
                         "implemented in edmem; use --generate_target entity_linking")
    if not (args.do_train or args.do_predict):
        raise UsageError("at least one of --do_train and --do_predict is required")
    if args.task == "all":
        raise UsageError("--task all (multi-task answer generation) is not supported for entity "
                         "linking; train one task at a time")
    if args.entity_mask_file:
        raise UsageError("--entity_mask_file (the memory-masking ablation) is not supported")
    if args.output_scores:
        raise UsageError("--output_scores is a generation option; use --save_scores for the "
                         "top-k entity scores")
    if args.model is not None:
        validate_model_dir_args(args)
    elif args.id2entity_file is None:
        raise UsageError("--id2entity_file is required (entid2entityitemid_*.json)")
    else:  # a hub name that cannot be reached fails here, within seconds (edmem.runtime.hub)
        args.model_name = resolve_model_name(args.model_name)
    if args.id2entity_file is not None and not str(args.id2entity_file).endswith(".json"):
        raise UsageError(f"--id2entity_file must be a .json file, got {args.id2entity_file}")
    for name in ("id2entity_file", "id2entitytokens_file", "alias_file"):
        path = getattr(args, name)
        if path is not None:
            check_file(path, field=f"--{name}")
    require_positive(args, ("train_batch_size", "predict_batch_size", "gradient_accumulation_steps",
                            "eval_period", "num_train_epochs", "inference_nearest_k_entity",
                            "wait_step"))
    require_positive(args, ("max_input_length",), minimum=2)
    task_dir = Path(args.data_dir) / args.task
    if not task_dir.is_dir():
        raise DataError(f"task directory not found (from --data_dir {args.data_dir} and "
                        f"--task {args.task})", task_dir)
    if args.do_train and args.pretrain_ckpt is not None and not Path(args.pretrain_ckpt).is_dir():
        raise CheckpointError(f"--pretrain_ckpt {args.pretrain_ckpt}: directory not found")


def validate_model_dir_args(args: argparse.Namespace) -> None:
    """``--model DIR`` predicts with a model directory: it cannot be trained further here."""
    if args.do_train:
        raise UsageError("--model is for prediction; to fine-tune from a checkpoint use "
                         "--pretrain_ckpt with --model_name and the model flags")
    read_metadata(args.model)


def load_splits(args: argparse.Namespace, rows: Any) -> dict[str, list]:
    """The splits this run needs (fix of Q35: predict-only reads only the predicted split).

    Training examples must link into the memory (their ids are training labels); evaluation
    splits are read without that check since their entity ids are only scored, never trained on.
    """
    need = set()
    if args.do_train:
        need |= {"train", "dev"}
    if args.do_predict:
        need.add("dev" if args.predict_on_dev else "test")
    if args.debug:
        need = {"train"}
    splits: dict[str, list] = {}
    for split in sorted(need, key=["train", "dev", "test"].index):
        kwargs: dict[str, Any] = {}
        if split == "train":
            kwargs["is_entity"] = rows.is_target
        examples, _ = load_el_split(args.data_dir, args.task, args.datafile_prefix, split, **kwargs)
        if not examples:
            raise DataError(f"no usable {split} examples", f"{args.data_dir}/{args.task}")
        splits[split] = examples
    if args.debug:  # the original: first 10 training examples as train, dev and test
        splits = {name: splits["train"][:10] for name in ("train", "dev", "test")}
    return splits


# ---------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> int:
    """Train and/or predict as the flags say. Returns the exit status."""
    validate_args(args)
    return run_in_process_group(args, _run)


def _run(args: argparse.Namespace, dist: DistInfo) -> int:
    out = start_run(args, dist, "log.txt" if args.do_train else f"{args.prefix}log.txt")
    logger.info(str(out))
    logger.info("Using %d gpus", dist.world_size if dist.device.type == "cuda" else 0)
    if dist.distributed:
        logger.info("World size %d (backend %s), rank %d", dist.world_size,
                    "nccl" if dist.device.type == "cuda" else "gloo", dist.rank)

    model_dir = None
    if args.model is not None:
        model_dir = load_model_dir(args.model, device="cpu")
        names, rows, tokenizer, config = (model_dir.entities, model_dir.rows, model_dir.tokenizer,
                                          model_dir.config)
        options = model_dir.encoding
        logger.info("Model directory %s: %d entities, %d memory rows", args.model, len(names),
                    rows.num_rows)
    else:
        names = load_id2entity(args.id2entity_file)
        rows = load_entity_rows(args, out, names)
        if rows.compact:
            logger.info("Compact entity memory: %d rows (10 reserved + %d entities of %s)",
                        rows.num_rows, rows.num_rows - 10, args.id2entity_file)
        tokenizer = load_tokenizer(args.model_name)
        warn_reserved_ids(names, rows, args.id2entity_file)
        config = build_config(args, tokenizer, rows.num_rows)
        # the decoder sequence is the question plus one token (edmem.data.examples.decoder_side)
        check_length_fits("max_input_length", args.max_input_length, config, args.model_name, extra=1)
        options = ELEncodingOptions.from_args(args)
    splits = load_splits(args, rows)
    collate = ELCollator(pad_token_id=config.pad_token_id,
                         decoder_start_token_id=config.decoder_start_token_id)
    lenient = _lenient_id_to_row(rows)

    def eval_dataset(examples: list) -> ELDataset:
        return ELDataset(examples, tokenizer, options, is_training=False, id_to_row=lenient)

    model = model_dir.model if model_dir is not None else build_model(config, args.model_name)
    status = 0
    if args.do_train:
        status = _train(args, dist, out, model, rows, names, splits, tokenizer, options, collate,
                        eval_dataset)
        if dist.is_main:
            export_model_dir(args, out, config, tokenizer, rows, options)
        dist_utils.barrier()
    if args.do_predict and status == EXIT_NAN and not _has_checkpoint(out):
        logger.error("Training stopped on a NaN/inf loss before the first checkpoint was saved: no "
                     "predictions written (try a lower --learning_rate)")
        return status
    if args.do_predict:
        _predict(args, dist, out, model, rows, names, splits, collate, eval_dataset,
                 weights_loaded=model_dir is not None)
    return status


def export_model_dir(args: argparse.Namespace, out: Path, config: Any, tokenizer: Any, rows: Any,
                     options: Any) -> Path | None:
    """``<output_dir>/model``: the best checkpoint as a self-describing model directory
    (docs/linking.md), with the entity names/types of --id2entity_file and --alias_file."""
    if ck.read_best_record(out) is None:
        logger.warning("No best checkpoint in %s: no model directory written", out)
        return None
    target = write_model_dir(out, out / "model", config=config, tokenizer=tokenizer,
                    id2entity_file=args.id2entity_file, rows=rows, encoding=options,
                    alias_file=args.alias_file, name=Path(args.output_dir).name or "edmem",
                    extra={"task": args.task}, answer_types=load_answer_types(out))
    logger.info("Model directory written to %s", target)
    return target


def fit_answer_types(args: argparse.Namespace, out: Path, dist: DistInfo, train_examples: list
                     ) -> tuple[AnswerTypePrior, Callable[[int], str | None]] | tuple[None, None]:
    """``--answer_type_weight`` > 0: the answer-type prior fitted on the train split, saved in
    ``--output_dir`` (the model directory gets a copy; prediction reads it there), and the
    id -> type lookup it was fitted with. 0: none, and one left by an earlier run in the same
    directory is removed so that it cannot rerank."""
    path = out / ANSWER_TYPES
    if args.answer_type_weight <= 0:
        if dist.is_main and path.exists():
            path.unlink()
            logger.warning("Removed %s of an earlier run (--answer_type_weight 0)", path)
        return None, None
    types = load_entity_types(args.id2entity_file)
    prior = fit_from_examples(train_examples, types, args.answer_type_weight, args.id2entity_file)
    if dist.is_main:
        prior.save(out)
    logger.info("Answer-type prior: %d typed train questions over %d types (%s), weight %g",
                sum(prior.questions.values()), len(prior.questions), ", ".join(prior.types),
                prior.weight)
    return prior, types.get


def type_lookup(args: argparse.Namespace, names: Any) -> Callable[[int], str | None]:
    """id -> entity type: a model directory's entity table, else --id2entity_file's ``type``s."""
    if hasattr(names, "type_of"):
        return names.type_of
    return load_entity_types(args.id2entity_file).get


def _has_checkpoint(out: Path) -> bool:
    return (out / WEIGHTS_NAME).is_file() or (out / SAFE_WEIGHTS_NAME).is_file()


def warn_reserved_ids(names: Any, rows: Any, path: str) -> int:
    """Vocabulary ids 0-9 get no row of their own in a compact memory (rows 0-9 are reserved):
    count them and log a warning naming a few, instead of dropping them silently."""
    if not rows.compact:
        return 0
    reserved = list(takewhile(lambda i: i < NUM_RESERVED, names.ids()))  # ids are sorted
    if reserved:
        logger.warning("%s: %d entity id(s) below %d (%s) are reserved rows of the compact memory; "
                       "they cannot be predicted or trained on", path, len(reserved), NUM_RESERVED,
                       ", ".join(map(str, reserved)))
    return len(reserved)


def _lenient_id_to_row(rows: Any) -> Callable[[int], int]:
    """Eval items carry no entity links, so an id outside the memory only needs to not crash."""
    return lambda entity_id: rows.id_to_row(entity_id) if entity_id in rows else 0


def _train(args, dist, out, model, rows, names, splits, tokenizer, options, collate,
           eval_dataset) -> int:
    resume_state = ck.load_resume_state(out, args.resume)
    if resume_state is None:
        if args.pretrain_ckpt is None:
            logger.warning("No --pretrain_ckpt: training from scratch (random initialisation)")
        else:
            load_weights(model, args.pretrain_ckpt, "--pretrain_ckpt", args.model_name)
    if args.freeze_entity_memory:
        model.EntityEmbedding.weight.requires_grad_(False)
        logger.info("Entity memory frozen (--freeze_entity_memory): the optimizer skips the table")
    model.to(dist.device)

    data_rng = np.random.RandomState(args.seed + dist.rank)
    train_data = ELDataset(splits["train"], tokenizer, options, is_training=True, rng=data_rng,
                           id_to_row=rows.id_to_row)
    dev_data = eval_dataset(splits["dev"])
    counts = calculate_num_steps(len(train_data), args.train_batch_size, dist.world_size,
                                 args.num_train_epochs, args.gradient_accumulation_steps,
                                 args.warmup_ratio)
    print(f"Data size for each epoch under DistributedSampler:  {counts.data_size}") \
        if dist.is_main else None
    logger.info("Total global training steps: %d, Total local training steps: %d, Warmup steps: %d",
                counts.total_global_steps, counts.total_local_steps, counts.warmup_steps)
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay, args.adam_epsilon)
    scheduler = linear_schedule(optimizer, counts.warmup_steps, counts.total_global_steps)
    precision = run_precision(args, dist)
    scaler = amp_scaler(precision, dist, resume_state)

    state = LoopState()
    if resume_state is not None:
        state = LoopState(**ck.restore_resume_state(resume_state, model, optimizer, scheduler, dist,
                                                    counts, data_rng, source=out / ck.TRAINING_STATE))
        logger.info("Resumed from %s: epoch %d, batch %d, global step %d, best EM %.2f%%, wait %d",
                    out / ck.TRAINING_STATE, state.epoch + 1, state.batch_in_epoch,
                    state.global_step, state.best * 100, state.wait)

    prior, type_of = fit_answer_types(args, out, dist, splits["train"])

    def evaluate() -> DevResult:
        predictions = predict_entities(model, dev_data, collate, args.predict_batch_size, dist, rows,
                                       precision=precision)
        apply_rankers(predictions, splits["dev"], type_of, prior)
        return dev_result(selection_scores(predictions_object(predictions.topk, names), splits["dev"]))

    def save_best(epoch: int, step: int, result) -> None:
        if dist.is_main:
            ck.save_best_checkpoint(model, out, rows, epoch, step, result.score, result.metric)

    def save_state(st: LoopState) -> None:
        ck.save_resume_state(out, model, optimizer, scheduler, st.to_dict(), dist, counts, data_rng,
                             entity_rows="compact" if rows.compact else "full",
                             **scaler_state(scaler))

    begin_training(out, args, dist)
    with open_tensorboard(out, dist, args.tensorboard, state.global_step) as writer:
        result = train(TrainJob(
            model=wrap_ddp(model, dist, args.gradient_checkpointing), optimizer=optimizer, scheduler=scheduler,
            train_data=train_data, collate=collate, evaluate=evaluate, save_best=save_best,
            save_state=save_state, counts=counts, dist=dist, train_batch_size=args.train_batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            max_grad_norm=args.max_grad_norm, eval_period=args.eval_period,
            wait_step=args.wait_step, num_train_epochs=args.num_train_epochs, seed=args.seed,
            shuffle=not args.debug, save_training_state=args.save_training_state,
            tensorboard=writer, state=state, precision=precision, scaler=scaler))
    if result.stopped_by == "resumed_finished":
        return 0
    logger.info("Best EM on validation data: %.2f", result.best * 100)
    if result.stopped_by == "nan":
        logger.error("Training stopped on a NaN/inf loss%s", "; predicting with the best checkpoint "
                     "so far" if args.do_predict and _has_checkpoint(out) else "")
        return EXIT_NAN
    return 0


def dev_result(scores: SelectionScores) -> DevResult:
    """Fine-tuning's dev result for the loop: EM selects the checkpoint (docs/training.md);
    entity-id accuracy is logged beside it."""
    return DevResult(
        score=scores.em, metric="EM", summary=f"EM {scores.em * 100:.2f}%",
        metrics={"em": scores.em * 100, "entity_id_accuracy": scores.id_accuracy * 100},
        notes=(f"dev entity-id accuracy {scores.id_accuracy * 100:.2f}% ({scores.count} examples)",))


def _predict(args, dist, out, model, rows, names, splits, collate, eval_dataset,
             weights_loaded: bool = False) -> None:
    model.to(dist.device)
    if not weights_loaded:
        load_weights(model, out, "--output_dir", args.model_name)
    attach_index(args, dist, out, model)
    split = "dev" if args.predict_on_dev else "test"
    examples = splits[split]
    predictions = predict_entities(model, eval_dataset(examples), collate,
                                   args.predict_batch_size, dist, rows, progress=True,
                                   precision=run_precision(args, dist))
    source = args.model if args.model is not None else out
    prior, overrides = load_answer_types(source), load_fact_overrides(source)
    type_of = type_lookup(args, names) if prior is not None or overrides else None
    if prior is not None:
        logger.info("Reranking each prediction's top k by the answer-type prior (weight %g, %d types)",
                    prior.weight, len(prior.questions))
    changed = apply_rankers(predictions, examples, type_of, prior, overrides)
    if overrides:
        logger.info("Fact overrides (%d entries) changed %d of %d predictions", len(overrides), changed,
                    len(examples))
    pred_path, score_path = prediction_paths(out, args.prefix)
    if dist.is_main:
        write_predictions(pred_path, predictions.topk, names)
        logger.info("Saved prediction in %s", pred_path)
        if args.save_scores:
            write_scores(score_path, predictions.topk, predictions.scores)
            logger.info("Saved scores in %s", score_path)
    scores = selection_scores(predictions_object(predictions.topk, names), examples)
    logger.info("EM on %s data: %.2f%%", split, scores.em * 100)
    logger.info("Entity-id accuracy on %s data: %.2f%%", split, scores.id_accuracy * 100)
    dist_utils.barrier()


def attach_index(args: argparse.Namespace, dist: DistInfo, out: Path, model: Any) -> None:
    """Route prediction's memory reads through ``--memory_index`` (docs/model.md, "Memory
    indexes"); rank 0 builds and saves a missing index first, the other ranks then load it."""
    if args.memory_index == "exact" and args.memory_index_dtype == "fp32":
        return
    from edmem.index import attach_memory_index, load_memory_index

    knobs = dict(nprobe=args.nprobe, ef_search=args.ef_search, pq_bytes=args.pq_bytes, nlist=args.nlist)
    try:
        for build_turn in (True, False):
            if build_turn == dist.is_main:
                index = load_memory_index(out, model.EntityEmbedding.weight, args.memory_index,
                                          args.memory_index_dtype, **knobs)
            dist_utils.barrier()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    attach_memory_index(model, index)
    logger.info("Memory reads through the %s index (%s rows) of %s", args.memory_index,
                args.memory_index_dtype, out)


# ---------------------------------------------------------------------------- commands
def main_with_errors(argv: list[str] | None, mode: str, prog: str) -> int:
    """Parse, run, and turn bad input into ``<prog>: error: <one line>`` + a non-zero exit."""
    args = parse_args(argv, mode=mode, prog=prog)
    try:
        return run(args)
    except (*USER_ERRORS, OSError) as exc:
        return report_error(prog, exc)
    except UnicodeDecodeError as exc:  # a reader outside edmem.data.jsonio (which names the file)
        return report_error(prog, exc)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """``python -m edmem.run_qa``: the original command line (same flags and defaults)."""
    return main_with_errors(argv, mode="run_qa", prog=PROG)


def train_main(argv: list[str] | None = None) -> int:
    """``edmem train``: ``--do_train`` and ``--generate_target entity_linking`` implied."""
    return main_with_errors(argv, mode="train", prog="edmem train")


def predict_main(argv: list[str] | None = None) -> int:
    """``edmem predict``: ``{prefix}predictions.json`` with the best checkpoint of ``--output_dir``."""
    return main_with_errors(argv, mode="predict", prog="edmem predict")
