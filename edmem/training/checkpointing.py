"""Checkpoint and resume I/O. Every write is atomic: a temp file in the same directory, fsync,
then ``os.replace``, so a process killed at any moment leaves either the old or the new file —
never a torn one — and the previous best checkpoint stays loadable.

Files in ``--output_dir``:

* the best model, in the original layout (``pytorch_model.bin`` with the alias keys +
  ``config.json``) so the original's tools read it, and as ``model.safetensors`` (canonical keys);
  ``entity_rows.json`` too when the memory is compact. Written model files first and
  ``pytorch_model.bin`` last; ``best_checkpoint.json`` (step, score) after all of them.
* ``training_state.pt``: everything ``--resume`` needs (model, optimizer, scheduler, step
  counters, data position, early-stopping state, RNG states of every rank), saved at every
  evaluation. One file, replaced atomically.

Loading uses ``torch.load(weights_only=True)``: RNG states are stored as tensors and lists, so
no pickled code is ever executed.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edmem.errors import CheckpointError

TRAINING_STATE = "training_state.pt"
BEST_META = "best_checkpoint.json"
STATE_FORMAT = "edmem-training-state/1"


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temp file over ``path`` (same directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
    return atomic_write(path, write)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def remove_stale_temp_files(directory: str | Path) -> None:
    """Delete ``.<name>.*.tmp`` leftovers of a killed writer (they are never read)."""
    for tmp in Path(directory).glob(".*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass


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
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    if extra_numpy is not None:
        state["dataset"] = _numpy_state(extra_numpy.get_state())
    return state


def restore_rng_state(state: dict[str, Any], extra_numpy: np.random.RandomState | None = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
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
