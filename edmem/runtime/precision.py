"""Mixed precision: ``--fp16`` / ``--bf16`` → a name, an autocast context and whether a loss
scaler is needed (docs/training.md, "Mixed precision").

* ``fp32`` (default): no autocast; the CPU parity path.
* ``bf16``: ``torch.autocast(<device>, bfloat16)`` — on CUDA the fast path; on CPU autocast-cpu
  (it runs, so the mixed-precision code is tested on any machine; usually no faster on CPUs).
* ``fp16``: ``torch.autocast("cuda", float16)`` with a gradient scaler; CUDA only (refused on CPU).

What stays fp32 under autocast is decided by the model (the softmax over the memory's rows, every
loss, the table gradient and the optimizer's master weights).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    """A precision that cannot be used on this device (one clear line for the user)."""


def precision_name(fp16: bool = False, bf16: bool = False) -> str:
    """``--fp16`` / ``--bf16`` as one name; both at once is refused."""
    if fp16 and bf16:
        raise PrecisionError("--fp16 and --bf16 exclude each other; pick one")
    return "fp16" if fp16 else ("bf16" if bf16 else "fp32")


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse what does not work: fp16 needs CUDA (its loss scaler and kernels are CUDA's)."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision == "fp16" and device.type != "cuda":
        raise PrecisionError("--fp16 needs a CUDA device (got --device cpu or no GPU); use --bf16 "
                             "(autocast-cpu) or fp32 on the CPU")


def autocast(device: torch.device, precision: str) -> Any:
    """The forward pass's context: autocast to ``precision`` on ``device``, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def needs_scaler(precision: str) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
    return precision == "fp16"


def grad_scaler(precision: str, device: torch.device) -> Any:
    """A ``torch.amp.GradScaler`` for fp16, else None (bf16 and fp32 need no loss scaling)."""
    if not needs_scaler(precision):
        return None
    return torch.amp.GradScaler(device.type)
