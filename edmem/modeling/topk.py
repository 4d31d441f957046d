"""Exact top-k of ``query @ rowsᵀ`` over a large row table, fused and blocked (docs/model.md).

Why a kernel of its own: at 1M rows the eval-mode read is one (M, N) product and a top-k over
its scores. Here the rows are scored one block at a time (``block_rows``; a block's scores are
M × block floats, never M × N), each block keeps its own top-k, and the per-block winners are
merged by one final ``topk`` over M × (blocks · k) candidates (no running merge per block). Row
sources may store the table compressed (fp16 / bf16 / int8, ``edmem.index.table``): a block is
widened to float32 just before its product, so no float32 copy of the table ever exists.
Measured trade-offs (block size, layouts) are in docs/model.md.

The row source is any object with ``num_rows``, ``dim`` and ``scores(query, start, stop)``
returning the float32 (M, stop − start) scores; :class:`DenseRows` wraps a float tensor in either
layout (the model's (d, N) parameter or an (N, d) matrix).
"""

from __future__ import annotations

from typing import Protocol

import torch

#: Rows scored per block. Smaller blocks (2k–8k rows, L2-sized) measured 1.5–4× slower on the
#: 2-core machine: each product is then too small to keep both threads busy.
DEFAULT_BLOCK_ROWS = 65536


class RowScorer(Protocol):
    """A table that scores queries against a range of its rows."""

    num_rows: int
    dim: int

    def scores(self, query: torch.Tensor, start: int, stop: int) -> torch.Tensor: ...


class DenseRows:
    """A float table seen as rows: ``weight`` is (N, d), or (d, N) with ``columns=True`` (the
    model's entity parameter, read without a transposed copy)."""

    def __init__(self, weight: torch.Tensor, columns: bool = False):
        self.rows = weight.t() if columns else weight
        self.num_rows, self.dim = self.rows.shape

    def scores(self, query: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        block = self.rows[start:stop]
        if block.dtype != query.dtype:
            block = block.to(query.dtype)
        return query @ block.t()

    def gather(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (any shape) as float32, shape ``ids.shape + (d,)``."""
        return self.rows.index_select(0, ids.reshape(-1)).float().view(*ids.shape, self.dim)


def fused_topk(query: torch.Tensor, table: RowScorer, k: int,
               block_rows: int = DEFAULT_BLOCK_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (values, row ids), each (M, k) sorted by descending score, of ``query @ tableᵀ``."""
    k = min(k, table.num_rows)
    if table.num_rows <= block_rows:
        return table.scores(query, 0, table.num_rows).topk(k, dim=1)
    values, ids = [], []
    for start in range(0, table.num_rows, block_rows):
        stop = min(start + block_rows, table.num_rows)
        v, i = table.scores(query, start, stop).topk(min(k, stop - start), dim=1)
        values.append(v)
        ids.append(i + start)
    best, order = torch.cat(values, dim=1).topk(k, dim=1)
    return best, torch.cat(ids, dim=1).gather(1, order)
