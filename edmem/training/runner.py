"""``run(args)``: what ``run_QA.py`` does with its flags — set up, train, predict — built from
the data, model, training and inference pieces. Shared by ``python -m edmem.run_qa``,
``edmem train`` and ``edmem predict``; :func:`main_with_errors` turns bad input into a one-line
message and a non-zero exit.

Order (spec §7.1, §9): validate flags → process group → output dir (+ overwrite protection)
→ log.txt / args → seed → entity vocabulary and memory rows → tokenizer + config → data →
model (+ ``--pretrain_ckpt``) → train (resume state, DDP) → barrier → predict with the best
checkpoint of ``--output_dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch

from edmem.errors import USER_ERRORS, CheckpointError, DataError, EDMemError
from edmem.data.jsonio import check_file
from edmem.training import checkpointing as ck
from edmem.training import distributed as dist_utils
from edmem.training import run_record
from edmem.training.distributed import DistInfo
from edmem.training.logging_setup import close_logging, get_logger, setup_logging

EXIT_ERROR = 1
EXIT_NAN = 3

logger = get_logger()
T = TypeVar("T")


class UsageError(EDMemError):
    """Flags that cannot work together (reported like bad input: one line, non-zero exit)."""


# ---------------------------------------------------------------------------- flag checks
def validate_args(args: argparse.Namespace) -> None:
    """Refuse what edmem does not build, and the original's crash-later cases, up front."""
    if args.generate_target != "entity_linking":
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
    if args.id2entity_file is None:
        raise UsageError("--id2entity_file is required (entid2entityitemid_*.json)")
    if not str(args.id2entity_file).endswith(".json"):
        raise UsageError(f"--id2entity_file must be a .json file, got {args.id2entity_file}")
    for name in ("id2entity_file", "id2entitytokens_file"):
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


def require_positive(args: argparse.Namespace, names: tuple[str, ...], minimum: int = 1) -> None:
    """Refuse a flag of ``names`` below ``minimum``."""
    for name in names:
        if getattr(args, name) < minimum:
            raise UsageError(f"--{name} must be at least {minimum} (got {getattr(args, name)})")


def check_length_fits(flag: str, length: int, config: Any, model_name: str, extra: int = 0) -> None:
    """Refuse a truncation length the model's learned positions cannot hold (``extra``: tokens
    the decoder side adds to it), before any data is read."""
    limit = config.max_position_embeddings - extra
    if length > limit:
        raise UsageError(f"--{flag} {length} is too long for the model of --model_name {model_name}: "
                         f"it has {config.max_position_embeddings} positions, so at most {limit}")


def prepare_output_dir(args: argparse.Namespace, dist: DistInfo) -> Path:
    """Create ``--output_dir``; with ``--do_train`` refuse to clobber a checkpoint unless
    ``--overwrite_output True`` (or ``--resume``, which continues it)."""
    out = Path(args.output_dir)
    has_ckpt = (out / "pytorch_model.bin").exists() or (out / ck.TRAINING_STATE).exists()
    if args.do_train and has_ckpt and not (args.overwrite_output or args.resume):
        raise UsageError(f"output directory {out} already holds a checkpoint; pass "
                         "--overwrite_output True to replace it or --resume to continue it")
    dist_utils.barrier()
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ck.remove_stale_temp_files(out)
    dist_utils.barrier()
    return out


def begin_training(out: Path, args: argparse.Namespace, dist: DistInfo) -> None:
    """Called once every input has been read and checked, right before the loop: record this
    start in ``args`` (appended) and, for a fresh ``--overwrite_output`` run, discard the older
    run's resume state (so it cannot be resumed by mistake). A run that fails on bad input
    before this point leaves the output directory as it was (docs/reliability.md)."""
    if dist.is_main:
        run_record.append_start(out, args)  # one line per start, earlier starts kept
        if args.overwrite_output and not args.resume:
            for name in (ck.TRAINING_STATE, ck.BEST_META):
                (out / name).unlink(missing_ok=True)
    dist_utils.barrier()


def start_run(args: argparse.Namespace, dist: DistInfo, log_name: str) -> Path:
    """The output directory (:func:`prepare_output_dir`) with ``log_name`` opened and the flags
    logged; a ``--resume`` checked against the recorded settings; torch threads set; every RNG
    seeded. The start is recorded in ``args`` later, by :func:`begin_training`."""
    from edmem.training.loop import seed_everything

    out = prepare_output_dir(args, dist)
    changes = []
    if args.do_train and args.resume and (out / ck.TRAINING_STATE).is_file():
        changes = run_record.check_resume(out, args)  # every rank: read-only, before any append
    setup_logging(out / log_name, dist.is_main, args.log_level, args.log_level_replica)
    logger.info(str(args))
    for change in changes:
        logger.warning("--resume_force: resuming with a changed flag %s", change)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    seed_everything(args.seed)
    return out


# ---------------------------------------------------------------------------- building blocks
def load_entity_rows(args: argparse.Namespace, out: Path, names: Any) -> Any:
    """The memory's row mapping: the one saved in ``--output_dir`` (compact runs), else a compact
    one from the vocabulary (``--compact_entity_memory True``), else the identity."""
    from edmem.data.entity_rows import EntityRows

    saved = EntityRows.load(out) if (args.resume or not args.do_train) else None
    if saved is not None:
        return saved
    if args.compact_entity_memory:
        return EntityRows.compact_from_ids(names.ids())
    return EntityRows.identity(args.entity_vocab_size)


def build_config(args: argparse.Namespace, tokenizer: Any, num_rows: int,
                 generate_target: str = "entity_linking", min_top_k: int = 0) -> Any:
    """The model config from ``--model_name`` and the model flags, for ``num_rows`` memory rows.

    ``generate_target``: the model's mode (``"pretraining"``: LM + EL losses). ``min_top_k``:
    raise ``--inference_nearest_k_entity`` to at least this many candidates per memory read,
    capped by the memory size (pretraining's recall@100)."""
    from edmem.config import EDMemConfig
    from edmem.data.tokenization import marker_ids

    start, end = marker_ids(tokenizer)
    top_k = args.inference_nearest_k_entity
    if min_top_k:
        top_k = min(num_rows, max(top_k, min_top_k))
    try:
        config = EDMemConfig.from_bart_config(
            args.model_name, args, entity_vocab_size=num_rows, generate_target=generate_target,
            entity_start_token_id=start, entity_end_token_id=end, inference_nearest_k_entity=top_k)
    except (ValueError, OSError, TypeError, KeyError, AttributeError) as exc:
        # config.json of --model_name is an untrusted input (docs/reliability.md)
        raise UsageError(f"--model_name {args.model_name}: cannot build the model config "
                         f"({type(exc).__name__}: {exc})") from None
    if config.vocab_size != len(tokenizer):
        raise UsageError(f"--model_name {args.model_name}: the config's vocabulary "
                         f"({config.vocab_size - 2} + 2 markers) differs from the tokenizer's "
                         f"({len(tokenizer)})")
    return config


def load_tokenizer(model_name: str) -> Any:
    from edmem.data.tokenization import load_tokenizer as _load
    try:
        return _load(model_name)
    except Exception as exc:  # noqa: BLE001 - a third-party loader on untrusted files (docs/reliability.md)
        raise UsageError(f"--model_name {model_name}: cannot load a BART tokenizer (a hub name, "
                         f"or a directory with vocab.json + merges.txt): {type(exc).__name__}: "
                         f"{exc}") from None


def build_model(config: Any, model_name: str) -> Any:
    """``EDMemModel(config)``, with a config.json whose sizes cannot make a model (negative,
    inconsistent or too large to allocate) reported as one line naming ``--model_name``."""
    from edmem.modeling.model import EDMemModel

    try:
        return EDMemModel(config)
    except (ValueError, TypeError, RuntimeError, MemoryError, OverflowError) as exc:
        raise UsageError(f"--model_name {model_name}: cannot build a model from its config.json "
                         f"({type(exc).__name__}: {exc})") from None


def load_splits(args: argparse.Namespace, rows: Any) -> dict[str, list]:
    """The splits this run needs (fix of Q35: predict-only reads only the predicted split).

    Training examples must link into the memory (their ids are training labels); evaluation
    splits are read without that check since their entity ids are only scored, never trained on.
    """
    from edmem.data.formats import load_el_split

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


def load_weights(model: Any, directory: str | Path, what: str, model_name: str | None = None) -> None:
    """Load ``directory``'s checkpoint into ``model``; a mismatch names the checkpoint and (when
    given) ``--model_name``, whose config.json shapes the model too."""
    from edmem.modeling.checkpoints import load_original_state_dict
    try:
        report = load_original_state_dict(model, directory, strict=True)
    except CheckpointError as exc:
        source = f"the model flags and the config.json of --model_name {model_name}" if model_name else "the model flags"
        hint = f" (do {source} match the checkpoint?)" if "does not fit" in str(exc) else ""
        raise CheckpointError(f"{what} {directory}: {exc}{hint}") from None
    if report.filled:
        logger.info("Filled from the config: %s", ", ".join(report.filled))
    logger.info("Loaded checkpoint from %s", directory)


def wrap_ddp(model: Any, dist: DistInfo) -> Any:
    """The model as the training loop drives it: DDP-wrapped under several processes."""
    if not dist.distributed:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None,
        find_unused_parameters=False)


def run_precision(args: argparse.Namespace, dist: DistInfo) -> str:
    """``--fp16`` / ``--bf16`` as "fp32" | "bf16" | "fp16", checked against this process's device
    (:mod:`edmem.runtime.precision`); logged once."""
    from edmem.runtime import precision as amp

    try:
        name = amp.precision_name(getattr(args, "fp16", False), getattr(args, "bf16", False))
        amp.check_precision(name, dist.device)
    except amp.PrecisionError as exc:
        raise UsageError(str(exc)) from None
    if name != "fp32":
        logger.info("Mixed precision: autocast %s on %s (memory softmax, losses and optimizer "
                    "in fp32)", name, dist.device)
    return name


def open_tensorboard(out: Path, dist: DistInfo, enabled: bool, global_step: int) -> Any:
    """A context manager giving a SummaryWriter on ``out/tensorboard`` (rank 0, when enabled;
    events after ``global_step`` that a killed run wrote before a resume are dropped), else None;
    the writer is closed on exit."""
    if not (enabled and dist.is_main):
        return contextlib.nullcontext()
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(out / "tensorboard"), purge_step=global_step + 1 if global_step else None)


# ---------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> int:
    """Train and/or predict as the flags say. Returns the exit status."""
    validate_args(args)
    return run_in_process_group(args, _run)


def run_in_process_group(args: argparse.Namespace, body: Callable[[argparse.Namespace, DistInfo], T]) -> T:
    """Join the process group the launcher describes (``--local_rank``, ``--dist_timeout``), run
    ``body(args, dist)``, and always close the log files and the group afterwards."""
    dist = dist_utils.init_distributed(args.local_rank, args.dist_timeout, args.device)
    try:
        return body(args, dist)
    finally:
        close_logging()
        dist_utils.cleanup()


def _run(args: argparse.Namespace, dist: DistInfo) -> int:
    from edmem.data.collate import ELCollator
    from edmem.data.dataset import ELDataset
    from edmem.data.entity_vocab import load_id2entity
    from edmem.data.examples import ELEncodingOptions

    out = start_run(args, dist, "log.txt" if args.do_train else f"{args.prefix}log.txt")
    logger.info(str(out))
    logger.info("Using %d gpus", dist.world_size if dist.device.type == "cuda" else 0)
    if dist.distributed:
        logger.info("World size %d (backend %s), rank %d", dist.world_size,
                    "nccl" if dist.device.type == "cuda" else "gloo", dist.rank)

    names = load_id2entity(args.id2entity_file)
    rows = load_entity_rows(args, out, names)
    if rows.compact:
        logger.info("Compact entity memory: %d rows (10 reserved + %d entities of %s)",
                    rows.num_rows, rows.num_rows - 10, args.id2entity_file)
    warn_reserved_ids(names, rows, args.id2entity_file)
    tokenizer = load_tokenizer(args.model_name)
    config = build_config(args, tokenizer, rows.num_rows)
    # the decoder sequence is the question plus one token (edmem.data.examples.decoder_side)
    check_length_fits("max_input_length", args.max_input_length, config, args.model_name, extra=1)
    splits = load_splits(args, rows)
    options = ELEncodingOptions.from_args(args)
    collate = ELCollator(pad_token_id=config.pad_token_id,
                         decoder_start_token_id=config.decoder_start_token_id)
    lenient = _lenient_id_to_row(rows)

    def eval_dataset(examples: list) -> ELDataset:
        return ELDataset(examples, tokenizer, options, is_training=False, id_to_row=lenient)

    model = build_model(config, args.model_name)
    status = 0
    if args.do_train:
        status = _train(args, dist, out, model, rows, names, splits, tokenizer, options, collate,
                        eval_dataset)
        dist_utils.barrier()
    if args.do_predict and status == EXIT_NAN and not _has_checkpoint(out):
        logger.error("Training stopped on a NaN/inf loss before the first checkpoint was saved: no "
                     "predictions written (try a lower --learning_rate)")
        return status
    if args.do_predict:
        _predict(args, dist, out, model, rows, names, splits, collate, eval_dataset)
    return status


def _has_checkpoint(out: Path) -> bool:
    from edmem.modeling.checkpoints import SAFE_WEIGHTS_NAME, WEIGHTS_NAME
    return (out / WEIGHTS_NAME).is_file() or (out / SAFE_WEIGHTS_NAME).is_file()


def warn_reserved_ids(names: Any, rows: Any, path: str) -> int:
    """Vocabulary ids 0-9 get no row of their own in a compact memory (rows 0-9 are reserved):
    count them and log a warning naming a few, instead of dropping them silently."""
    from itertools import takewhile

    from edmem.data.entity_rows import NUM_RESERVED

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
    from edmem.data.dataset import ELDataset
    from edmem.inference.predict import dev_scores, predict_entities
    from edmem.training.loop import LoopState, TrainJob, train
    from edmem.training.optim import build_optimizer
    from edmem.training.schedule import calculate_num_steps, linear_schedule

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

    def evaluate():
        predictions = predict_entities(model, dev_data, collate, args.predict_batch_size, dist, rows,
                                       precision=precision)
        return em_evaluation(dev_scores(splits["dev"], predictions.topk, names))

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
            model=wrap_ddp(model, dist), optimizer=optimizer, scheduler=scheduler,
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


def amp_scaler(precision: str, dist: DistInfo, resume_state: dict[str, Any] | None) -> Any:
    """fp16's gradient scaler (None otherwise), restored from the resume state when it has one."""
    from edmem.runtime import precision as amp

    scaler = amp.grad_scaler(precision, dist.device)
    if scaler is not None and resume_state is not None and "scaler" in resume_state:
        scaler.load_state_dict(resume_state["scaler"])
    return scaler


def scaler_state(scaler: Any) -> dict[str, Any]:
    """``{"scaler": state}`` for the resume state, or nothing without a scaler."""
    return {} if scaler is None else {"scaler": scaler.state_dict()}


def em_evaluation(scores: Any) -> Any:
    """Fine-tuning's dev result for the loop: EM selects the checkpoint (spec §7.4); entity-id
    accuracy is logged beside it. ``scores``: :class:`edmem.inference.predict.DevScores`."""
    from edmem.training.loop import Evaluation

    return Evaluation(
        score=scores.em, metric="EM", summary=f"EM {scores.em * 100:.2f}%",
        metrics={"em": scores.em * 100, "entity_id_accuracy": scores.id_accuracy * 100},
        notes=(f"dev entity-id accuracy {scores.id_accuracy * 100:.2f}% ({scores.count} examples)",))


def _predict(args, dist, out, model, rows, names, splits, collate, eval_dataset) -> None:
    from edmem.inference.predict import dev_scores, predict_entities
    from edmem.inference.writer import prediction_paths, write_predictions, write_scores

    model.to(dist.device)
    load_weights(model, out, "--output_dir", args.model_name)
    split = "dev" if args.predict_on_dev else "test"
    examples = splits[split]
    predictions = predict_entities(model, eval_dataset(examples), collate,
                                   args.predict_batch_size, dist, rows, progress=True,
                                   precision=run_precision(args, dist))
    pred_path, score_path = prediction_paths(out, args.prefix)
    if dist.is_main:
        write_predictions(pred_path, predictions.topk, names)
        logger.info("Saved prediction in %s", pred_path)
        if args.save_scores:
            write_scores(score_path, predictions.topk, predictions.scores)
            logger.info("Saved scores in %s", score_path)
    scores = dev_scores(examples, predictions.topk, names)
    logger.info("EM on %s data: %.2f%%", split, scores.em * 100)
    logger.info("Entity-id accuracy on %s data: %.2f%%", split, scores.id_accuracy * 100)
    dist_utils.barrier()


# ---------------------------------------------------------------------------- error boundary
def main_with_errors(argv: list[str] | None, mode: str, prog: str) -> int:
    """Parse, run, and turn bad input into ``<prog>: error: <one line>`` + a non-zero exit."""
    from edmem.training.args import parse_args

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


def report_error(prog: str, exc: BaseException) -> int:
    """Print bad input as one line ``<prog>: error: [rank r] <message>`` (the rank only under
    several processes); return :data:`EXIT_ERROR`."""
    import os

    where = f"[rank {os.environ.get('RANK', '0')}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    if isinstance(exc, USER_ERRORS):
        message = str(exc)
    elif isinstance(exc, OSError) and exc.filename is not None:
        message = f"{exc.filename}: {exc.strerror or exc}"
    elif isinstance(exc, UnicodeDecodeError):
        message = f"an input file is not UTF-8 text ({exc.reason} at byte {exc.start})"
    else:
        message = f"{type(exc).__name__}: {exc}"
    print(f"{prog}: error: {where}{message}", file=sys.stderr)
    return EXIT_ERROR
