"""torch.distributed plumbing: who am I, and the few collectives the loop needs.

Fixes of the original (docs/quirks.md):
* Q4 — the world size comes from the launcher (``WORLD_SIZE`` set by ``torchrun`` or the legacy
  ``torch.distributed.launch``), never from ``torch.cuda.device_count()``; the device and the
  backend (gloo on CPU, NCCL on CUDA) come from ``--device`` via :mod:`edmem.runtime.devices`.
* Q20 — a NaN loss on any rank is turned into a flag that every rank sees (:func:`any_rank`).
* A crashed rank cannot hang the others forever: the process group has a timeout
  (``--dist_timeout``) and ``torchrun`` tears the whole job down when one worker dies.

Every helper degrades to a no-op in a single process, so the training loop has no
``if distributed`` branches of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from edmem.errors import EDMemError
from edmem.runtime import devices


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = -1
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(local_rank_arg: int = -1, timeout_s: float = 1800.0,
                     device: str = "auto") -> DistInfo:
    """Join the process group described by the launcher's environment, or run alone.

    ``local_rank_arg`` is the legacy ``--local_rank`` argument; ``LOCAL_RANK`` wins when both
    exist. ``device`` is ``--device`` (auto / cpu / cuda, resolved by
    :mod:`edmem.runtime.devices`): GPU jobs use NCCL with one device per local rank, CPU jobs gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        where = _resolve(device, local_rank_arg)
        devices.activate(where)
        return DistInfo(rank=0, local_rank=local_rank_arg, world_size=1, device=where)

    local_rank = int(os.environ.get("LOCAL_RANK", local_rank_arg))
    if local_rank < 0:
        raise EDMemError("WORLD_SIZE > 1 but neither LOCAL_RANK nor --local_rank is set; "
                         "start several processes with torchrun")
    if "MASTER_ADDR" not in os.environ or "RANK" not in os.environ:
        raise EDMemError("WORLD_SIZE > 1 but MASTER_ADDR/RANK are not set; start the job with "
                         "torchrun --nproc_per_node N -m edmem.run_qa ...")
    where = _resolve(device, local_rank)
    devices.activate(where)
    if not dist.is_initialized():
        dist.init_process_group(backend=devices.backend_for(where),
                                timeout=timedelta(seconds=timeout_s))
    return DistInfo(rank=dist.get_rank(), local_rank=local_rank,
                    world_size=dist.get_world_size(), device=where)


def _resolve(name: str, local_rank: int) -> torch.device:
    try:
        return devices.resolve_device(name, local_rank)
    except devices.DeviceError as exc:
        raise EDMemError(str(exc)) from None


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a small float tensor over ranks (a copy; the input is untouched)."""
    out = values.detach().clone()
    if _active():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on at least one rank."""
    if not _active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (pickled; for small results)."""
    if not _active():
        return [obj]
    obj = devices.to_cpu(obj)   # tensors travel as CPU pickles (NCCL would need them on the GPU)
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not _active():
        return obj
    box = [devices.to_cpu(obj)]
    dist.broadcast_object_list(box, src=0)
    return box[0]
