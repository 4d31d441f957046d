"""The lean entity table for inference: rows stored as fp32 / fp16 / bf16 / int8 (per-row scale),
saved as safetensors and loaded memory-mapped (docs/model.md, "Lean table").

Why: at 1M rows the float32 table is 1 GB, copied at every start-up and resident while
predicting. The int8 table is 256 MB + 4 MB of scales, mapped from disk (the operating system
pages it in as it is read; nothing is copied at load). The model's own weights are untouched:
this is a read-only copy for the eval-mode reads (:mod:`edmem.index.backends`).

int8: ``row ≈ scale · q`` with ``scale = max|row| / 127`` and ``q = round(row / scale)``, so each
element is off by at most ``scale / 2``. Scores are computed as ``(q @ queryᵀ) · scale``: the
scale multiplies the (block, M) scores, not the block of rows.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from edmem.errors import EDMemError

DTYPES = ("fp32", "fp16", "bf16", "int8")
_TORCH = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.int8}
# safetensors dtype names, and the numpy dtype the raw bytes are mapped as (bf16 as int16 bits).
_ST = {"fp32": ("F32", np.float32), "fp16": ("F16", np.float16), "bf16": ("BF16", np.int16),
       "int8": ("I8", np.int8)}
_FROM_ST = {name: key for key, (name, _) in _ST.items()}


class MemoryIndexError(EDMemError):
    """A memory index or lean table that cannot be used (missing, stale, malformed)."""


class LeanTable:
    """(N, d) entity rows in ``dtype`` (+ per-row ``scale`` for int8); scores and gathers in fp32."""

    def __init__(self, rows: torch.Tensor, dtype: str, scale: torch.Tensor | None = None,
                 source_digest: str = ""):
        if dtype not in DTYPES:
            raise ValueError(f"table dtype {dtype!r}; expected one of {DTYPES}")
        if (dtype == "int8") != (scale is not None):
            raise ValueError("an int8 table needs a per-row scale, other dtypes none")
        self.rows, self.dtype, self.scale = rows, dtype, scale
        self.num_rows, self.dim = rows.shape
        self.source_digest = source_digest

    # ------------------------------------------------------------------ building
    @classmethod
    def from_weight(cls, weight: torch.Tensor, dtype: str = "fp32", columns: bool = True,
                    source_digest: str = "", block_rows: int = 65536) -> "LeanTable":
        """Compress a float table; ``weight`` is the model's (d, N) parameter (``columns``) or (N, d).

        Converted ``block_rows`` rows at a time: the only float32 temporary is one block."""
        source = (weight.t() if columns else weight).detach()
        n, d = source.shape
        blocks = (source[start:start + block_rows] for start in range(0, n, block_rows))
        return cls.from_blocks(blocks, n, d, dtype, source_digest)

    @classmethod
    def from_blocks(cls, blocks: Iterable[torch.Tensor], num_rows: int, dim: int, dtype: str = "fp32",
                    source_digest: str = "") -> "LeanTable":
        """A table filled from consecutive float row blocks (a table never held in float32)."""
        if dtype not in DTYPES:
            raise ValueError(f"table dtype {dtype!r}; expected one of {DTYPES}")
        rows = torch.empty((num_rows, dim), dtype=_TORCH[dtype])
        scale = torch.empty(num_rows, dtype=torch.float32) if dtype == "int8" else None
        start = 0
        for block in blocks:
            block = block.float()
            stop = start + block.shape[0]
            if scale is None:
                rows[start:stop] = block
            else:
                s = block.abs().amax(dim=1).clamp(min=1e-30) / 127.0
                scale[start:stop] = s
                rows[start:stop] = torch.round(block / s[:, None]).clamp_(-127, 127)
            start = stop
        if start != num_rows:
            raise ValueError(f"blocks gave {start} rows, expected {num_rows}")
        return cls(rows, dtype, scale, source_digest)

    # ------------------------------------------------------------------ reading
    def block_scores(self, query_t: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """float32 (stop − start, M) scores of rows ``start:stop`` against ``query_t`` (d, M); the
        block alone is widened to float32 (:func:`edmem.modeling.topk.fused_topk`)."""
        out = self.rows[start:stop].float() @ query_t
        if self.scale is not None:
            out.mul_(self.scale[start:stop, None])
        return out

    def gather(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (any shape) dequantised to float32, shape ``ids.shape + (d,)``."""
        flat = ids.reshape(-1)
        rows = self.rows.index_select(0, flat).float()
        if self.scale is not None:
            rows.mul_(self.scale.index_select(0, flat)[:, None])
        return rows.view(*ids.shape, self.dim)

    def dense(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float32 rows ``start:stop`` as a numpy array (for building FAISS indexes block-wise)."""
        stop = self.num_rows if stop is None else stop
        return self.gather(torch.arange(start, stop)).numpy()

    @property
    def nbytes(self) -> int:
        return self.rows.numel() * self.rows.element_size() + (0 if self.scale is None else self.scale.numel() * 4)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        """Write a safetensors file atomically (temporary file, then rename)."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {"rows": self.rows.contiguous()}
        if self.scale is not None:
            tensors["scale"] = self.scale.contiguous()
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"dtype": self.dtype, "source_digest": self.source_digest})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> "LeanTable":
        """Map a table written by :meth:`save` (any safetensors file with ``rows`` [+ ``scale``])
        without reading it: the tensors are views of a copy-on-write memory map."""
        path = Path(path)
        header, data_start = read_safetensors_header(path)
        meta = header.pop("__metadata__", {}) or {}
        if "rows" not in header:
            raise MemoryIndexError(f"{path}: no 'rows' tensor in this safetensors file")
        entry = header["rows"]
        dtype = _FROM_ST.get(entry["dtype"])
        if dtype is None:
            raise MemoryIndexError(f"{path}: rows of dtype {entry['dtype']}; expected one of "
                              f"{sorted(_FROM_ST)}")
        rows = _map(path, data_start, entry, _ST[dtype][1])
        if dtype == "bf16":
            rows = rows.view(torch.bfloat16)
        scale = _map(path, data_start, header["scale"], np.float32) if "scale" in header else None
        try:
            return cls(rows, dtype, scale, meta.get("source_digest", ""))
        except ValueError as exc:
            raise MemoryIndexError(f"{path}: {exc}") from None


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """(header JSON, offset of the data section) of a safetensors file (8-byte little-endian
    header length, then the JSON header, then the raw tensors)."""
    try:
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100_000_000:
                raise ValueError(f"header of {size} bytes")
            header = json.loads(f.read(size))
    except FileNotFoundError:
        raise MemoryIndexError(f"{path}: file not found") from None
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise MemoryIndexError(f"{path}: not a safetensors file ({exc})") from None
    return header, 8 + size


def _map(path: Path, data_start: int, entry: dict, np_dtype: type) -> torch.Tensor:
    begin, end = entry["data_offsets"]
    shape = tuple(entry["shape"])
    count = int(np.prod(shape)) if shape else 1
    if (end - begin) != count * np.dtype(np_dtype).itemsize:
        raise MemoryIndexError(f"{path}: tensor size does not match its shape {list(shape)}")
    if count == 0:
        return torch.from_numpy(np.zeros(shape, dtype=np_dtype))
    array = np.memmap(path, dtype=np_dtype, mode="c", offset=data_start + begin, shape=shape)
    return torch.from_numpy(array)
