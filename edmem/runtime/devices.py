"""Where tensors live: the one place that turns ``--device {auto,cpu,cuda}`` (and a launcher's
local rank) into a ``torch.device``, picks the process-group backend, and moves what is logged,
gathered or saved to the CPU (docs/training.md, "Devices and precision").

Rules:
* ``auto`` = CUDA when torch sees a GPU, else CPU; ``cpu`` = CPU even on a GPU machine (the
  subprocess tests pin it); ``cuda`` without a GPU is refused with one clear line.
* Under several processes, local rank r uses ``cuda:r``; a rank without its own GPU is refused.
* Backend: NCCL for CUDA devices, gloo for CPU.
"""

from __future__ import annotations

from typing import Any

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A device that cannot be used (reported as one line by the command-line tools)."""


def cuda_count() -> int:
    """GPUs torch can use (0 when torch has no CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(name: str = "auto", local_rank: int = -1) -> torch.device:
    """The device of this process for ``--device name`` and the launcher's ``local_rank``
    (-1 = a single process: GPU 0)."""
    if name not in DEVICE_CHOICES:
        raise DeviceError(f"--device {name}: expected one of {', '.join(DEVICE_CHOICES)}")
    count = cuda_count()
    if name == "cpu" or (name == "auto" and count == 0):
        return torch.device("cpu")
    if count == 0:
        raise DeviceError(f"--device cuda: CUDA is not available (torch {torch.__version__}, "
                          f"built with CUDA {torch.version.cuda or 'none'}, no GPU visible); "
                          "use --device cpu or auto")
    index = max(local_rank, 0)
    if index >= count:
        raise DeviceError(f"local rank {local_rank} has no GPU ({count} visible); start at most "
                          f"{count} processes per node or pass --device cpu")
    return torch.device("cuda", index)


def backend_for(device: torch.device) -> str:
    """The torch.distributed backend for ``device``: NCCL on CUDA, gloo on CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def activate(device: torch.device) -> None:
    """Make ``device`` the current CUDA device (so NCCL and ``torch.cuda.*`` calls use it)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor detached and on the CPU (nested dicts, lists and tuples), for
    what is saved, gathered or logged: the files and pickles then load on any machine."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {key: to_cpu(value) for key, value in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(to_cpu(value) for value in obj)
    return obj
