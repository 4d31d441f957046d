"""Backends for the eval-mode entity-memory reads (exact, hnsw, ivf, ivfpq) and the lean
(fp16 / bf16 / int8, memory-mapped) entity table. See docs/model.md, "Memory indexes"."""

from edmem.index.backends import KINDS, KNOBS, ExactIndex, FaissIndex, Knobs, MemoryIndex
from edmem.index.store import attach_memory_index, load_memory_index, table_digest
from edmem.index.table import DTYPES, LeanTable, MemoryIndexError

__all__ = ["DTYPES", "KINDS", "KNOBS", "ExactIndex", "FaissIndex", "Knobs", "LeanTable", "MemoryIndex",
           "MemoryIndexError", "attach_memory_index", "load_memory_index", "table_digest"]
