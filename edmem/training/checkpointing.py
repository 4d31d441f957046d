"""Checkpoint and resume I/O. Every write is atomic (:mod:`edmem.runtime.atomic`), so a process
killed at any moment leaves either the old or the new file, never a torn one, and the previous
best checkpoint stays loadable.

Files in ``--output_dir``:

* the best model, in the original layout (``pytorch_model.bin`` with the alias keys +
  ``config.json``) so the original's tools read it, and as ``model.safetensors`` (canonical keys);
  ``entity_rows.json`` too when the memory is compact. Written model files first and
  ``pytorch_model.bin`` last; ``best_checkpoint.json`` (epoch, step, score and the metric's name)
  after all of them.
* ``training_state.pt``: everything ``--resume`` needs (model, optimizer, scheduler, step
  counters, data position, early-stopping state, RNG states of every rank), saved at every
  evaluation. One file, replaced atomically.

Loading uses ``torch.load(weights_only=True)``: RNG states are stored as tensors and lists, so
no pickled code is ever executed.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edmem.errors import CheckpointError
from edmem.modeling.checkpoints import save_checkpoint
from edmem.runtime import distributed as dist_utils
from edmem.runtime.atomic import atomic_torch_save, atomic_write_text
from edmem.runtime.devices import to_cpu
from edmem.runtime.distributed import DistInfo

logger = logging.getLogger("__main__")

TRAINING_STATE = "training_state.pt"
BEST_META = "best_checkpoint.json"
STATE_FORMAT = "edmem-training-state/1"


# ---- RNG states ----------------------------------------------------------------------------
def capture_rng_state(extra_numpy: np.random.RandomState | None = None) -> dict[str, Any]:
    """The RNG streams that shape training (python, numpy, torch CPU/CUDA, the dataset's draws),
    as tensors/lists so the state loads with ``weights_only=True``."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": _numpy_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()   # the current device's (a CPU ByteTensor)
    if extra_numpy is not None:
        state["dataset"] = _numpy_state(extra_numpy.get_state())
    return state


def restore_rng_state(state: dict[str, Any], extra_numpy: np.random.RandomState | None = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
    if extra_numpy is not None and "dataset" in state:
        extra_numpy.set_state(_numpy_tuple(state["dataset"]))


def _numpy_state(st: tuple) -> list[Any]:
    name, keys, pos, has_gauss, cached = st
    return [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
            float(cached)]


def _numpy_tuple(st: list[Any]) -> tuple:
    name, keys, pos, has_gauss, cached = st
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


# ---- training state (resume) ---------------------------------------------------------------
def save_training_state(output_dir: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``training_state.pt`` (rank 0 only; the caller gathered every rank's RNG)."""
    return atomic_torch_save({"format": STATE_FORMAT, **state}, Path(output_dir) / TRAINING_STATE)


def load_training_state(output_dir: str | Path) -> dict[str, Any] | None:
    """The saved training state, or None when the directory has none."""
    path = Path(output_dir) / TRAINING_STATE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn file cannot happen (atomic), but a foreign one can
        raise CheckpointError(f"{path}: cannot read the training state ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an edmem training state")
    return state


def load_resume_state(output_dir: str | Path, resume: bool) -> dict[str, Any] | None:
    """``--resume``: the saved training state, or None (with a warning when there is none)."""
    if not resume:
        return None
    state = load_training_state(output_dir)
    if state is None:
        logger.warning("--resume: no %s in %s; starting a new run", TRAINING_STATE, output_dir)
    return state


def save_resume_state(output_dir: str | Path, model: Any, optimizer: Any, scheduler: Any,
                      loop: dict[str, Any], dist: DistInfo, counts: Any,
                      data_rng: np.random.RandomState | None = None, **extra: Any) -> None:
    """Collective (every rank calls it): gather every rank's RNG states, rank 0 writes
    ``training_state.pt`` (model, optimizer, scheduler, loop position, step counts, ``extra``)."""
    rng = dist_utils.gather_objects(capture_rng_state(data_rng))
    if dist.is_main:
        save_training_state(output_dir, {
            "model": to_cpu(model.state_dict()),
            "optimizer": to_cpu(optimizer.state_dict()), "scheduler": scheduler.state_dict(),
            "loop": loop, "rng": rng, "world_size": dist.world_size, "counts": asdict(counts),
            **extra})
    dist_utils.barrier()


def restore_resume_state(saved: dict[str, Any], model: Any, optimizer: Any, scheduler: Any,
                         dist: DistInfo, counts: Any,
                         data_rng: np.random.RandomState | None = None) -> dict[str, Any]:
    """Load a saved state into model, optimizer, scheduler and this rank's RNGs; return the loop
    position. Refused when the world size or the step counts differ from the saving run's."""
    if saved["world_size"] != dist.world_size:
        raise CheckpointError(f"the training state was saved by {saved['world_size']} process(es); "
                              f"resume it with the same number (got {dist.world_size})")
    if saved["counts"] != asdict(counts):
        raise CheckpointError("the training state was saved with other step counts (batch size, "
                              "epochs, data or gradient accumulation changed); resume with the "
                              "original flags")
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"the training state does not fit the model flags: {exc}") from None
    model._tie_weights()
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    restore_rng_state(saved["rng"][dist.rank], data_rng)
    return saved["loop"]


# ---- best checkpoint -----------------------------------------------------------------------
def save_best_checkpoint(model: Any, out: Path, rows: Any, epoch: int, step: int, score: float,
                         metric: str) -> None:
    """The best model (:func:`edmem.modeling.checkpoints.save_checkpoint`: original layout +
    safetensors + config, ``pytorch_model.bin`` last), the memory rows of a compact memory
    before it, and ``best_checkpoint.json`` after all of them."""
    if rows.compact:
        rows.save(out)
    save_checkpoint(model, out)
    atomic_write_text(out / BEST_META, json.dumps(
        {"epoch": epoch, "global_step": step, "score": score, "metric": metric,
         "entity_rows": "compact" if rows.compact else "full"}))
    logger.info("Checkpoint saved to %s", out)


def read_best_record(output_dir: str | Path) -> dict[str, Any] | None:
    """``best_checkpoint.json`` with the neutral keys ``score`` and ``metric``; a record written
    before them (the score under ``dev_em``, fine-tuning's EM) reads the same. None if absent."""
    path = Path(output_dir) / BEST_META
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if "dev_em" in record and "score" not in record:
        record["score"] = record.pop("dev_em")
        record.setdefault("metric", "EM")
    return record
