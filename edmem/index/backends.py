"""Memory-read backends for the eval-mode reads: one interface, ``search(queries, k) → (scores,
rows)`` and ``gather(rows) → embeddings`` (docs/model.md, "Memory indexes").

* ``exact`` — every row scored, blocked top-k (:func:`edmem.modeling.topk.fused_topk`) over the
  float table or a lean (fp16 / bf16 / int8) one;
* ``hnsw``, ``ivf``, ``ivfpq`` — FAISS indexes (inner product) that propose candidates; the
  candidates are then re-scored exactly from the table (``rerank`` of them), so the returned
  scores are true inner products and the softmax over the top-k sees the same values as the
  exact path whenever the candidates contain the exact top-k.

Knobs: ``ef_search`` / ``hnsw_m`` / ``ef_construction`` (hnsw), ``nlist`` / ``nprobe`` (ivf,
ivfpq), ``pq_bytes`` (ivfpq code size in bytes per row), ``rerank`` (candidates re-scored).
With a fp16 / bf16 / int8 table the FAISS vectors are stored at that precision too (scalar
quantizer); ``ivfpq`` stores only its codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from edmem.index.table import LeanTable
from edmem.modeling.topk import DEFAULT_BLOCK_ROWS, DenseRows, fused_topk

KINDS = ("exact", "hnsw", "ivf", "ivfpq")


class MemoryIndex(Protocol):
    """What an eval-mode memory read needs from a backend."""

    kind: str
    num_rows: int
    dim: int

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def gather(self, rows: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Knobs:
    """Build and search settings of the approximate backends (defaults measured in
    benchmarks/bench_memory.py; 0 = derived from the table size)."""

    nprobe: int = 32
    ef_search: int = 128
    pq_bytes: int = 32
    nlist: int = 0            # 0 → ≈ sqrt(N), at least 1
    hnsw_m: int = 32
    ef_construction: int = 80
    rerank: int = 0           # 0 → max(k, 100) candidates re-scored exactly
    block_rows: int = DEFAULT_BLOCK_ROWS
    train_rows: int = 0       # 0 → min(N, 64 · nlist) rows to train IVF / PQ

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "Knobs":
        unknown = sorted(set(kwargs) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown memory index knob(s) {unknown}; expected {sorted(cls.__dataclass_fields__)}")
        knobs = cls(**{k: int(v) for k, v in kwargs.items()})
        for name, value in vars(knobs).items():
            if value < 0:
                raise ValueError(f"memory index knob {name} must be >= 0 (got {value})")
        return knobs

    def lists(self, num_rows: int) -> int:
        """IVF lists for ``num_rows`` rows."""
        return self.nlist or max(1, int(math.sqrt(num_rows)))


KNOBS = tuple(Knobs.__dataclass_fields__)


class ExactIndex:
    """Every row scored: blocked top-k over a float (d, N) parameter or a :class:`LeanTable`."""

    kind = "exact"

    def __init__(self, table: LeanTable | DenseRows, knobs: Knobs | None = None):
        self.table = table
        self.knobs = knobs or Knobs()
        self.num_rows, self.dim = table.num_rows, table.dim

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = _table_device(self.table)
        with torch.autocast(device.type, enabled=False):   # scores in float32 even under autocast
            values, rows = fused_topk(queries.detach().float().to(device), self.table, k, self.knobs.block_rows)
        return values.to(queries.device), rows.to(queries.device)

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        return self.table.gather(rows.to(_table_device(self.table))).to(rows.device)


def _table_device(table: LeanTable | DenseRows) -> torch.device:
    return table.rows.device


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("the hnsw / ivf / ivfpq memory indexes need faiss-cpu (pip install faiss-cpu)") from exc
    return faiss


def _scalar_type(faiss: Any, dtype: str) -> Any:
    return {"fp16": faiss.ScalarQuantizer.QT_fp16, "bf16": faiss.ScalarQuantizer.QT_bf16,
            "int8": faiss.ScalarQuantizer.QT_8bit}[dtype]


class FaissIndex:
    """A FAISS index over the table's rows (candidates) + exact re-scoring from the table."""

    def __init__(self, kind: str, table: LeanTable | DenseRows, index: Any, knobs: Knobs):
        self.kind, self.table, self.index, self.knobs = kind, table, index, knobs
        self.num_rows, self.dim = table.num_rows, table.dim
        self.apply_knobs()

    @classmethod
    def build(cls, kind: str, table: LeanTable | DenseRows, knobs: Knobs | None = None,
              dtype: str = "fp32", seed: int = 0) -> "FaissIndex":
        """Train (IVF / PQ: on an evenly spaced sample of rows) and fill a new index, adding the
        rows ``knobs.block_rows`` at a time (no float32 copy of the whole table)."""
        faiss = _faiss()
        knobs = knobs or Knobs()
        d, n = table.dim, table.num_rows
        ip = faiss.METRIC_INNER_PRODUCT
        if kind == "hnsw":
            index = (faiss.IndexHNSWFlat(d, knobs.hnsw_m, ip) if dtype == "fp32"
                     else faiss.IndexHNSWSQ(d, _scalar_type(faiss, dtype), knobs.hnsw_m, ip))
            index.hnsw.efConstruction = knobs.ef_construction
        elif kind in ("ivf", "ivfpq"):
            nlist = min(knobs.lists(n), n)
            quantizer = faiss.IndexFlatIP(d)
            if kind == "ivf":
                index = (faiss.IndexIVFFlat(quantizer, d, nlist, ip) if dtype == "fp32"
                         else faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, _scalar_type(faiss, dtype), ip))
            else:
                if d % knobs.pq_bytes:
                    raise ValueError(f"pq_bytes {knobs.pq_bytes} must divide the row size {d}")
                index = faiss.IndexIVFPQ(quantizer, d, nlist, knobs.pq_bytes, 8, ip)
            index.own_fields = True
            quantizer.this.disown()
            sample = min(n, knobs.train_rows or max(64 * nlist, 256 * 40 if kind == "ivfpq" else 0))
            rows = np.linspace(0, n - 1, sample).astype(np.int64)
            index.cp.seed = seed
            index.train(np.ascontiguousarray(table.gather(torch.from_numpy(rows)).numpy()))
        else:
            raise ValueError(f"memory index kind {kind!r}; expected one of {KINDS[1:]}")
        for start in range(0, n, knobs.block_rows):
            stop = min(n, start + knobs.block_rows)
            index.add(np.ascontiguousarray(table.gather(torch.arange(start, stop)).numpy()))
        return cls(kind, table, index, knobs)

    def apply_knobs(self) -> None:
        faiss = _faiss()
        if self.kind == "hnsw":
            faiss.downcast_index(self.index).hnsw.efSearch = self.knobs.ef_search
        else:
            faiss.extract_index_ivf(self.index).nprobe = self.knobs.nprobe

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = min(k, self.num_rows)
        wanted = min(self.num_rows, max(k, self.knobs.rerank or 100))
        if self.kind == "hnsw":  # the beam must be at least as wide as the answer
            faiss_index = _faiss().downcast_index(self.index)
            faiss_index.hnsw.efSearch = max(self.knobs.ef_search, wanted)
        q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
        _, found = self.index.search(q, wanted)
        cand = torch.from_numpy(found)
        missing = cand < 0
        cand = cand.clamp(min=0)
        exact = torch.bmm(self.table.gather(cand), torch.from_numpy(q).unsqueeze(2)).squeeze(2)
        exact.masked_fill_(missing, float("-inf"))
        values, order = exact.topk(k, dim=1)
        return values.to(queries.device), cand.gather(1, order).to(queries.device)

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        return self.table.gather(rows.cpu()).to(rows.device)
