"""Building blocks both applications (``run_qa``, ``pretrain``) wire the same way: the output
directory, the process group, logging and seeding at start, the model config from the flags,
tokenizer and weights loading, DDP wrapping, TensorBoard. Flag names appear here because every
function takes the parsed flags of ``edmem.training.args`` / ``edmem.pretraining.args``."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from edmem.config import EDMemConfig
from edmem.constants import ENTITY_LINKING
from edmem.data.entity_rows import EntityRows
from edmem.data.tokenization import load_tokenizer as load_bart_tokenizer
from edmem.data.tokenization import marker_ids
from edmem.errors import CheckpointError, UsageError
from edmem.modeling.checkpoints import WEIGHTS_NAME, load_original_state_dict
from edmem.runtime import distributed as dist_utils
from edmem.runtime import precision as amp
from edmem.runtime.atomic import remove_stale_temp_files
from edmem.runtime.distributed import DistInfo
from edmem.runtime.logging_setup import close_logging, get_logger, setup_logging
from edmem.runtime.seeding import seed_everything
from edmem.training import checkpointing as ck
from edmem.training import run_record
from edmem.training.args import config_settings

logger = get_logger()
T = TypeVar("T")


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
    has_ckpt = (out / WEIGHTS_NAME).exists() or (out / ck.TRAINING_STATE).exists()
    if args.do_train and has_ckpt and not (args.overwrite_output or args.resume):
        raise UsageError(f"output directory {out} already holds a checkpoint; pass "
                         "--overwrite_output True to replace it or --resume to continue it")
    dist_utils.barrier()
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out)
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


def run_in_process_group(args: argparse.Namespace, body: Callable[[argparse.Namespace, DistInfo], T]) -> T:
    """Join the process group the launcher describes (``--local_rank``, ``--dist_timeout``), run
    ``body(args, dist)``, and always close the log files and the group afterwards."""
    dist = dist_utils.init_distributed(args.local_rank, args.dist_timeout, args.device)
    try:
        return body(args, dist)
    finally:
        close_logging()
        dist_utils.cleanup()


def load_entity_rows(args: argparse.Namespace, out: Path, names: Any) -> EntityRows:
    """The memory's row mapping: the one saved in ``--output_dir`` (compact runs), else a compact
    one from the vocabulary (``--compact_entity_memory True``), else the identity."""
    saved = EntityRows.load(out) if (args.resume or not args.do_train) else None
    if saved is not None:
        return saved
    if args.compact_entity_memory:
        return EntityRows.compact_from_ids(names.ids())
    return EntityRows.identity(args.entity_vocab_size)


def build_config(args: argparse.Namespace, tokenizer: Any, num_rows: int,
                 generate_target: str = ENTITY_LINKING, min_top_k: int = 0) -> EDMemConfig:
    """The model config from ``--model_name`` and the model flags, for ``num_rows`` memory rows.

    ``generate_target``: the model's mode (``"pretraining"``: LM + EL losses). ``min_top_k``:
    raise ``--inference_nearest_k_entity`` to at least this many candidates per memory read,
    capped by the memory size (pretraining's recall@100)."""
    start, end = marker_ids(tokenizer)
    top_k = args.inference_nearest_k_entity
    if min_top_k:
        top_k = min(num_rows, max(top_k, min_top_k))
    try:
        config = EDMemConfig.from_bart_config(
            args.model_name, config_settings(args), entity_vocab_size=num_rows,
            generate_target=generate_target, entity_start_token_id=start, entity_end_token_id=end,
            inference_nearest_k_entity=top_k)
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
    """The BART tokenizer of ``--model_name`` with the markers, or one clear UsageError."""
    try:
        return load_bart_tokenizer(model_name)
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


def load_weights(model: Any, directory: str | Path, what: str, model_name: str | None = None) -> None:
    """Load a checkpoint directory into ``model`` (strict); ``what`` names the flag in errors, and
    a mismatch names ``--model_name`` too (its config.json shapes the model)."""
    try:
        report = load_original_state_dict(model, directory, strict=True)
    except CheckpointError as exc:
        source = f"the model flags and the config.json of --model_name {model_name}" if model_name else "the model flags"
        hint = f" (do {source} match the checkpoint?)" if "does not fit" in str(exc) else ""
        raise CheckpointError(f"{what} {directory}: {exc}{hint}") from None
    if report.filled:
        logger.info("Filled from the config: %s", ", ".join(report.filled))
    logger.info("Loaded checkpoint from %s", directory)


def wrap_ddp(model: Any, dist: DistInfo, gradient_checkpointing: bool = False) -> Any:
    """The model as the training loop drives it: with ``--gradient_checkpointing`` its layers
    recompute their activations in backward (non-reentrant checkpoints: same gradients, dropout
    included; docs/training.md); DDP-wrapped under several processes."""
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
        logger.info("Gradient checkpointing: each transformer layer is recomputed in backward")
    if not dist.distributed:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None,
        find_unused_parameters=False)


def run_precision(args: argparse.Namespace, dist: DistInfo) -> str:
    """``--fp16`` / ``--bf16`` as "fp32" | "bf16" | "fp16", checked against this process's device
    (:mod:`edmem.runtime.precision`); logged once."""
    try:
        name = amp.precision_name(getattr(args, "fp16", False), getattr(args, "bf16", False))
        amp.check_precision(name, dist.device)
    except amp.PrecisionError as exc:
        raise UsageError(str(exc)) from None
    if name != "fp32":
        logger.info("Mixed precision: autocast %s on %s (memory softmax, losses and optimizer "
                    "in fp32)", name, dist.device)
    return name


def amp_scaler(precision: str, dist: DistInfo, resume_state: dict[str, Any] | None) -> Any:
    """fp16's gradient scaler (None otherwise), restored from the resume state when it has one."""
    scaler = amp.grad_scaler(precision, dist.device)
    if scaler is not None and resume_state is not None and "scaler" in resume_state:
        scaler.load_state_dict(resume_state["scaler"])
    return scaler


def scaler_state(scaler: Any) -> dict[str, Any]:
    """``{"scaler": state}`` for the resume state, or nothing without a scaler."""
    return {} if scaler is None else {"scaler": scaler.state_dict()}


def open_tensorboard(out: Path, dist: DistInfo, enabled: bool, global_step: int) -> Any:
    """A context manager giving a SummaryWriter on ``out/tensorboard`` (rank 0, when enabled;
    events after ``global_step`` that a killed run wrote before a resume are dropped), else None;
    the writer is closed on exit."""
    if not (enabled and dist.is_main):
        return contextlib.nullcontext()
    from torch.utils.tensorboard import SummaryWriter  # heavy (tensorboard): only when asked for
    return SummaryWriter(str(out / "tensorboard"), purge_step=global_step + 1 if global_step else None)
