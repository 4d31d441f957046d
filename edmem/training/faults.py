"""Fault injection for the distributed tests (never active unless ``EDMEM_FAULT`` is set).

``EDMEM_FAULT=<kind>@<rank>:<step>`` with kind ``nan`` (the loss numbers of that rank become NaN
on optimizer step ``step``) or ``crash`` (that rank raises at ``step``). The tests use it to show
that a NaN on one rank stops every rank (Q20) and that a crashed rank ends the whole job with a
non-zero exit instead of a hang.
"""

from __future__ import annotations

import os

import torch


def _parse() -> tuple[str, int, int] | None:
    spec = os.environ.get("EDMEM_FAULT")
    if not spec:
        return None
    kind, _, where = spec.partition("@")
    rank, _, step = where.partition(":")
    return kind, int(rank), int(step)


def maybe_inject_fault(kind: str, rank: int, step: int, numbers: torch.Tensor | None = None) -> None:
    fault = _parse()
    if fault is None or fault[0] != kind or fault[1] != rank or fault[2] != step:
        return
    if kind == "nan" and numbers is not None:
        numbers.fill_(float("nan"))
    elif kind == "crash":
        raise RuntimeError(f"EDMEM_FAULT: injected crash on rank {rank} at step {step}")
