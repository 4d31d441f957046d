"""Exact top-k of ``query @ rowsᵀ`` over a large row table, fused and blocked (docs/model.md).

Why a kernel of its own: at 1M rows the eval-mode read is one (M, N) product and a top-k over
its scores, and both the product's shape and the top-k decide how close it comes to the
machine's GEMM rate (measured in docs/model.md, "Memory indexes"):

* the rows are scored one block at a time (``block_rows``), as ``block @ queryᵀ`` — a tall
  (B, d) × (d, M) product: the table block is streamed once, the small query matrix is what the
  GEMM packs (``query @ blockᵀ`` made the GEMM re-pack the table block, measured ~1.5× slower at
  M = 64). A block's scores are B × M floats, never M × N;
* a short first block (8·k rows; later blocks double up to ``block_rows``) gives every query its
  current k-th best score; each later block is only compared with it (one vectorised ``>``), and the few rows above it are merged
  into the running top-k. A full ``topk`` over every block cost as much as a third of the
  product;
* compressed row sources (fp16 / bf16 / int8, ``edmem.index.table``) widen one block to float32
  just before its product, so no float32 copy of the table ever exists;
* a large table (≥ ``SHARD_MIN_ROWS`` per thread) is split into one contiguous shard of rows per
  intra-op thread, each scanned by a worker thread whose own products run on one thread in blocks
  of ``block_rows / threads`` rows (the caller's grad, inference and autocast modes replayed),
  and the shards' top-k are merged: at 1M rows on 2 threads 0.46–0.53 of the GEMM bound against
  0.44–0.47 for one scan with two-thread products (four runs, docs/model.md); at 100k no gain.

Results equal ``(query @ rowsᵀ).topk(k)`` up to ties and float rounding of the scores (the
block product sums in another order). On a non-CPU device every block takes a full ``topk``
(the threshold test would synchronise the device once per block).

The row source is any object with ``num_rows``, ``dim`` and ``block_scores(query_t, start,
stop)`` returning the (stop − start, M) scores ``rows[start:stop] @ query_t``; :class:`DenseRows`
wraps a float tensor in either layout (the model's (d, N) parameter or an (N, d) matrix).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar

import torch

#: Rows scored per block: 16,384 rows × 256 fp32 = 16 MB of table and 4 MB of scores at M = 64
#: (fits the L3 cache); measured against 4k and 64k in docs/model.md.
DEFAULT_BLOCK_ROWS = 16384
#: Rows of the first block per wanted result (k): 8k rows give thresholds that let ~B / 8 rows
#: per query through in the second block, and far fewer after it.
FIRST_BLOCK_PER_K = 8
#: Rows per intra-op thread from which a CPU scan is split into per-thread shards (measured: a
#: gain at 1M rows with 2 threads, none at 100k).
SHARD_MIN_ROWS = 262144

T = TypeVar("T")


class RowScorer(Protocol):
    """A table that scores queries against a range of its rows."""

    num_rows: int
    dim: int

    def block_scores(self, query_t: torch.Tensor, start: int, stop: int) -> torch.Tensor: ...


class DenseRows:
    """A float table seen as rows: ``weight`` is (N, d), or (d, N) with ``columns=True`` (the
    model's entity parameter, read without a transposed copy)."""

    def __init__(self, weight: torch.Tensor, columns: bool = False):
        self.weight, self.columns = weight, columns
        self.rows = weight.t() if columns else weight
        self.num_rows, self.dim = self.rows.shape

    def block_scores(self, query_t: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        block = self.rows[start:stop]
        if block.dtype != query_t.dtype:
            block = block.to(query_t.dtype)
        return block @ query_t

    def gather(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (any shape) as float32, shape ``ids.shape + (d,)``."""
        flat = ids.reshape(-1)
        # (d, N): gather within each contiguous row of N, then transpose the small result — one
        # cache line per element of a row otherwise; ~2x faster at 100k-1M rows (docs/model.md)
        picked = self.weight.index_select(1, flat).t() if self.columns else self.rows.index_select(0, flat)
        return picked.float().reshape(*ids.shape, self.dim)


def fused_topk(query: torch.Tensor, table: RowScorer, k: int, block_rows: int = DEFAULT_BLOCK_ROWS,
               entity_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (values, row ids), each (M, k) sorted by descending score, of ``query @ tableᵀ``.

    ``entity_mask`` (N,): rows with a non-zero entry score ``finfo.min`` (never chosen while k
    unmasked rows remain; docs/quirks.md Q11)."""
    n = table.num_rows
    k = min(k, n)
    if n == 0 or query.shape[0] == 0:     # no rows, or no mention in the batch
        empty = query.new_zeros((query.shape[0], k))
        return empty, empty.long()
    block_rows = max(block_rows, k)
    query_t = query.t().contiguous()
    masked = None if entity_mask is None else entity_mask.to(device=query.device).bool()
    on_cpu = query.device.type == "cpu"
    shards = torch.get_num_threads() if on_cpu else 1
    if shards < 2 or n < shards * SHARD_MIN_ROWS:
        return _scan(query_t, table, k, 0, n, block_rows, masked, threshold=on_cpu)
    cuts = [n * i // shards for i in range(shards + 1)]
    # the shards share the block budget: as many rows in flight as one unsharded scan (peak
    # RSS of the int8 1M EL forward 598 MB with full blocks per shard, 565 MB with half)
    shard_block = max(k, block_rows // shards)
    modes = _CallerModes.here()
    jobs = [_single_thread_pool(shards).submit(modes.run, _scan, query_t, table, k, cuts[i], cuts[i + 1],
                                               shard_block, masked, True) for i in range(shards)]
    parts = [job.result() for job in jobs]
    merged, order = torch.cat([v for v, _ in parts], dim=1).topk(k, dim=1)
    return merged, torch.cat([i for _, i in parts], dim=1).gather(1, order)


def _scan(query_t: torch.Tensor, table: RowScorer, k: int, low: int, high: int, block_rows: int,
          masked: torch.Tensor | None, threshold: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k over rows ``low:high`` (ids are table rows), block after block."""
    k = min(k, high - low)
    # A short first block fills the running top-k cheaply (a full topk over a big block cost as
    # much as the product); its k-th best scores are the first thresholds.
    # Blocks then double up to ``block_rows``: a block as long as all rows seen before it lets
    # ~k rows per query through, whatever ``block_rows`` is.
    size = max(k, FIRST_BLOCK_PER_K * k) if threshold else block_rows
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    start = low
    while start < high:
        stop = min(high, start + size)
        size = min(block_rows, 2 * size)
        scores = table.block_scores(query_t, start, stop)           # (B, M)
        if masked is not None:
            scores.masked_fill_(masked[start:stop, None], torch.finfo(scores.dtype).min)
        best = _merge_block(best, scores, start, k, threshold)
        start = stop
    assert best is not None
    return best


@dataclass(frozen=True)
class _CallerModes:
    """The thread-local modes of the calling thread, replayed in a worker: without them a worker
    would build an autograd graph under the caller's ``no_grad`` (the model's table is a
    parameter), fail on its ``inference_mode`` tensors, or multiply in float32 under its
    autocast."""

    grad: bool
    inference: bool
    autocast: bool
    autocast_dtype: torch.dtype

    @classmethod
    def here(cls) -> "_CallerModes":
        return cls(torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
                   torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        with torch.inference_mode(self.inference), torch.set_grad_enabled(self.grad), \
                torch.autocast("cpu", dtype=self.autocast_dtype, enabled=self.autocast):
            return fn(*args)


_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _single_thread_pool(workers: int) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads whose torch ops run on one intra-op thread each (the
    setting is per thread: the caller's own thread count is untouched)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != workers:
            if _POOL is not None:
                _POOL[1].shutdown(wait=False)
            _POOL = (workers, ThreadPoolExecutor(workers, thread_name_prefix="edmem-topk",
                                                 initializer=torch.set_num_threads, initargs=(1,)))
        return _POOL[1]


def _merge_block(best: tuple[torch.Tensor, torch.Tensor] | None, scores: torch.Tensor, start: int,
                 k: int, threshold: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The running top-k (values, ids), each (M, k), updated with a block's (B, M) ``scores``."""
    if best is None or not threshold:   # the block's own top-k (first block, or no threshold test)
        v, i = scores.t().topk(min(k, scores.shape[0]), dim=1)
        return (v, i + start) if best is None else _keep_best(*best, v, i + start, k)
    values, ids = best
    # Only the rows above a query's current k-th best score can enter its top-k (ties stay out).
    # One pass over the block (a row's best score against the lowest threshold) picks the few
    # rows worth a look; the exact per-query test then runs on those rows only.
    kth = values[:, -1]
    rows = (scores - kth).amax(dim=1).gt(0).nonzero().squeeze(1)   # rows above some query's k-th
    if rows.numel() == 0:
        return best
    query_idx, sub = (scores.index_select(0, rows) > kth).t().nonzero(as_tuple=True)   # by query, row
    row_idx = rows[sub]
    m = values.shape[0]
    counts = torch.bincount(query_idx, minlength=m)
    slot = torch.arange(query_idx.numel(), device=scores.device) - (counts.cumsum(0) - counts)[query_idx]
    width = int(counts.max())
    cand_v = values.new_full((m, width), float("-inf"))
    cand_v[query_idx, slot] = scores[row_idx, query_idx]
    cand_i = ids.new_zeros((m, width))
    cand_i[query_idx, slot] = row_idx + start
    return _keep_best(values, ids, cand_v, cand_i, k)


def _keep_best(values: torch.Tensor, ids: torch.Tensor, new_v: torch.Tensor, new_i: torch.Tensor,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of two (values, ids) candidate sets, per row."""
    merged, order = torch.cat([values, new_v], dim=1).topk(k, dim=1)
    return merged, torch.cat([ids, new_i], dim=1).gather(1, order)
