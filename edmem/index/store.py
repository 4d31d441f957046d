"""Build, save, reload and attach memory indexes (docs/model.md, "Memory indexes").

Files, in ``<model dir>/memory_index/``:

* ``table-<dtype>.safetensors`` — the lean table (:class:`~edmem.index.table.LeanTable`);
* ``<kind>-<dtype>.faiss`` + ``<kind>-<dtype>.json`` — a FAISS index and what it was built from.

Every file records the checksum (:func:`table_digest`) of the model table it came from. Loading
with the model's table checks it: an index built from another table is an error naming both
checksums (predicting through a stale index would silently answer from the old memory).
Loading without the table (``table=None``: the lean, low-memory start-up) checks that the lean
table and the FAISS index come from the same table.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from edmem.index.backends import KINDS, ExactIndex, FaissIndex, Knobs, MemoryIndex
from edmem.index.table import DTYPES, LeanTable, MemoryIndexError
from edmem.modeling.topk import DenseRows

INDEX_DIR = "memory_index"


def table_digest(weight: torch.Tensor) -> str:
    """``sha256:<hex>`` of the table's shape, dtype and bytes (1M × 256 fp32: one pass over 1 GB;
    cost in docs/model.md)."""
    data = weight.detach().cpu().contiguous()
    h = hashlib.sha256(f"{tuple(data.shape)}:{data.dtype}".encode())
    h.update(data.view(torch.uint8).reshape(-1).numpy().data if data.numel() else b"")
    return "sha256:" + h.hexdigest()


def index_dir(model_dir_or_path: str | Path) -> Path:
    """``<model dir>/memory_index`` (a path already named ``memory_index`` is used as is)."""
    path = Path(model_dir_or_path)
    return path if path.name == INDEX_DIR else path / INDEX_DIR


def _stale(path: Path, saved: str, current: str) -> MemoryIndexError:
    return MemoryIndexError(
        f"{path}: stale memory index: built from the table with checksum {saved}, but the model's "
        f"table has checksum {current}; delete {path.parent} to rebuild it")


def load_lean_table(directory: Path, dtype: str, weight: torch.Tensor | None = None,
                    digest: str | None = None) -> LeanTable:
    """The lean table of ``dtype``: loaded (memory-mapped) if saved, else built from ``weight``
    (the model's (d, N) table) and saved. With ``digest`` a saved table must match it."""
    path = directory / f"table-{dtype}.safetensors"
    if path.is_file():
        table = LeanTable.load(path)
        if digest is not None and table.source_digest != digest:
            raise _stale(path, table.source_digest, digest)
        return table
    if weight is None:
        raise MemoryIndexError(f"{path}: lean table not found (build it once with the model's table)")
    table = LeanTable.from_weight(weight, dtype, columns=True, source_digest=digest or table_digest(weight))
    directory.mkdir(parents=True, exist_ok=True)
    table.save(path)
    return LeanTable.load(path)  # the mapped copy: the built one is freed


def load_memory_index(model_dir_or_path: str | Path, table: torch.Tensor | None, kind: str = "exact",
                      dtype: str = "fp32", **knobs: Any) -> MemoryIndex:
    """The ``kind`` backend over the model's entity table, built and saved on first use.

    ``table``: the model's (d, N) entity parameter (checked against the saved files' checksum),
    or None to start from the saved files alone (no float32 table in memory at all).
    ``dtype``: storage of the rows read by the index (fp32 / fp16 / bf16 / int8). ``knobs``:
    :class:`~edmem.index.backends.Knobs` (nprobe, ef_search, pq_bytes, …).
    """
    if kind not in KINDS:
        raise ValueError(f"memory index kind {kind!r}; expected one of {KINDS}")
    if dtype not in DTYPES:
        raise ValueError(f"memory index dtype {dtype!r}; expected one of {DTYPES}")
    settings = Knobs.from_kwargs(**knobs)
    directory = index_dir(model_dir_or_path)
    if kind == "exact" and dtype == "fp32" and table is not None:
        return ExactIndex(DenseRows(table.detach(), columns=True), settings)  # the live parameter
    digest = table_digest(table) if table is not None else None
    rows = load_lean_table(directory, dtype, table, digest)
    if kind == "exact":
        return ExactIndex(rows, settings)
    return _load_or_build_faiss(directory, kind, dtype, rows, settings, digest)


def _load_or_build_faiss(directory: Path, kind: str, dtype: str, rows: LeanTable, knobs: Knobs,
                         digest: str | None) -> FaissIndex:
    import faiss

    path = directory / f"{kind}-{dtype}.faiss"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            saved = meta["source_digest"]
        except (ValueError, KeyError) as exc:
            raise MemoryIndexError(f"{meta_path}: unreadable index description ({exc})") from None
        expected = digest if digest is not None else rows.source_digest
        if saved != expected:
            raise _stale(path, saved, expected)
        built = Knobs(**{**asdict(knobs), **{k: meta["knobs"][k] for k in _BUILD_KNOBS if k in meta["knobs"]}})
        return FaissIndex(kind, rows, faiss.read_index(str(path)), built)
    if digest is None and not rows.source_digest:
        raise MemoryIndexError(f"{path}: index not found")
    index = FaissIndex.build(kind, rows, knobs, dtype)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index.index, str(tmp))
    os.replace(tmp, path)
    meta = {"kind": kind, "dtype": dtype, "source_digest": digest or rows.source_digest,
            "num_rows": rows.num_rows, "dim": rows.dim, "knobs": asdict(knobs),
            "faiss": faiss.__version__}
    tmp_meta = meta_path.with_name(meta_path.name + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp_meta, meta_path)
    return index


# Knobs fixed when an index is built (a saved index keeps them; search knobs come from the caller).
_BUILD_KNOBS = ("pq_bytes", "nlist", "hnsw_m", "ef_construction", "train_rows")


def attach_memory_index(model: torch.nn.Module, index: MemoryIndex | None,
                        drop_table: bool = False) -> None:
    """Route the model's eval-mode memory reads through ``index`` (None: back to the built-in read).

    ``drop_table``: replace the float32 entity parameter by a shapeless placeholder (meta device)
    to free its memory; the model can then only predict (training needs the full table)."""
    table = model.EntityEmbedding
    if index is not None and (index.num_rows, index.dim) != (table.weight.shape[1], table.weight.shape[0]):
        raise MemoryIndexError(f"memory index of {index.num_rows} × {index.dim} rows does not fit the "
                               f"model's {table.weight.shape[1]} × {table.weight.shape[0]} entity table")
    table.index = index
    if drop_table:
        table.weight = torch.nn.Parameter(torch.empty(table.weight.shape, device="meta"), requires_grad=False)
