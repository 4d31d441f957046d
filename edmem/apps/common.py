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
from edmem.runtime.atomic import atomic_write_text, remove_stale_temp_files
from edmem.runtime.distributed import DistInfo
from edmem.runtime.logging_setup import close_logging, get_logger, setup_logging
from edmem.runtime.seeding import seed_everything
from edmem.training import checkpointing as ck
from edmem.training.args import config_settings

logger = get_logger()
T = TypeVar("T")


def require_positive(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Refuse a flag of ``names`` below 1."""
    for name in names:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1 (got {getattr(args, name)})")


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
        if args.do_train and args.overwrite_output and not args.resume:
            # A fresh run must not leave an older run's resume state behind.
            for name in (ck.TRAINING_STATE, ck.BEST_META):
                (out / name).unlink(missing_ok=True)
    dist_utils.barrier()
    return out


def start_run(args: argparse.Namespace, dist: DistInfo, log_name: str) -> Path:
    """The output directory (:func:`prepare_output_dir`) with ``log_name`` opened and the flags
    logged (and, when training, written to ``args``); torch threads set; every RNG seeded."""
    out = prepare_output_dir(args, dist)
    setup_logging(out / log_name, dist.is_main, args.log_level, args.log_level_replica)
    logger.info(str(args))
    if dist.is_main and args.do_train:
        atomic_write_text(out / "args", f"{args}\n")
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
    except (ValueError, OSError) as exc:
        raise UsageError(f"--model_name {args.model_name}: cannot build the model config ({exc})") from None
    if config.vocab_size != len(tokenizer):
        raise UsageError(f"--model_name {args.model_name}: the config's vocabulary "
                         f"({config.vocab_size - 2} + 2 markers) differs from the tokenizer's "
                         f"({len(tokenizer)})")
    return config


def load_tokenizer(model_name: str) -> Any:
    """The BART tokenizer of ``--model_name`` with the markers, or one clear UsageError."""
    try:
        return load_bart_tokenizer(model_name)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"--model_name {model_name}: cannot load a BART tokenizer (a hub name, "
                         f"or a directory with vocab.json + merges.txt): {exc}") from None


def load_weights(model: Any, directory: str | Path, what: str) -> None:
    """Load a checkpoint directory into ``model`` (strict); ``what`` names the flag in errors."""
    try:
        report = load_original_state_dict(model, directory, strict=True)
    except CheckpointError as exc:
        raise CheckpointError(f"{what} {directory}: {exc} (do the model flags match the checkpoint?)") from None
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
