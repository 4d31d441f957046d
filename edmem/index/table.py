"""The lean entity table for inference: rows stored as fp32 / fp16 / bf16 / int8 (per-row scale),
saved as safetensors and loaded memory-mapped (docs/model.md, "Lean table").

Why: at 1M rows the float32 table is 1 GB, copied at every start-up and resident while
predicting. The int8 table is 256 MB + 4 MB of scales, mapped from disk (the operating system
pages it in as it is read; nothing is copied at load). The model's own weights are untouched:
this is a read-only copy for the eval-mode reads (:mod:`edmem.index.backends`).

int8: ``row ≈ scale · q`` with ``scale = max|row| / 127`` and ``q = round(row / scale)``, so each
element is off by at most ``scale / 2``. Scores are computed as ``(q @ queryᵀ) · scale``: the
scale multiplies the (block, M) scores, not the block of rows.

Streaming (a loaded table, Linux): each block's pages are handed back to the operating system
right after the block was scored (``madvise(MADV_DONTNEED)``), so a full scan never keeps the
table in the process's resident set. The file's pages stay in the OS page cache while memory
allows (shared with every other process reading the file, reclaimable under pressure); the
next scan maps them again with minor page faults. ``LeanTable.load(path, resident=True)`` keeps
them mapped instead. Measured in docs/model.md ("Lean table").
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import struct
import sys
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from edmem.errors import EDMemError

DTYPES = ("fp32", "fp16", "bf16", "int8")
_TORCH = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.int8}
# safetensors dtype names, and the numpy dtype the raw bytes are mapped as (bf16 as int16 bits).
_ST = {"fp32": ("F32", np.float32), "fp16": ("F16", np.float16), "bf16": ("BF16", np.int16),
       "int8": ("I8", np.int8)}
_FROM_ST = {name: key for key, (name, _) in _ST.items()}
#: Rows read between two page releases when a streamed table gathers scattered rows
#: (:meth:`LeanTable._streamed_rows`): at most 256 × 64 kB mapped at once.
GATHER_CHUNK = 256


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
        self.pages: MappedPages | None = None   # set by load(): the mapped rows' page releaser

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
        self._release(start, stop)
        return out

    def gather(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (any shape) dequantised to float32, shape ``ids.shape + (d,)``."""
        flat = ids.reshape(-1)
        rows = self.rows.index_select(0, flat) if self.pages is None else self._streamed_rows(flat)
        scale = None if self.scale is None else self.scale.index_select(0, flat)
        return _dequantised(rows, scale).view(*ids.shape, self.dim)

    def _streamed_rows(self, flat: torch.Tensor) -> torch.Tensor:
        """``rows[flat]`` read in ascending row order, GATHER_CHUNK rows at a time, each chunk's
        pages released after it: a read fault maps its 64 kB neighbourhood, so ~10k scattered
        rows would otherwise map most of a 1M-row table at once."""
        order = flat.argsort()
        ascending = flat[order]
        out = self.rows.new_empty((flat.numel(), self.dim))
        for start in range(0, flat.numel(), GATHER_CHUNK):
            chunk = ascending[start:start + GATHER_CHUNK]
            out[order[start:start + GATHER_CHUNK]] = self.rows.index_select(0, chunk)
            self._release(int(chunk[0]), int(chunk[-1]) + 1)
        self._release(0, self.num_rows)   # the neighbourhoods left between chunks
        return out

    def dense(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float32 rows ``start:stop`` as a numpy array (for building FAISS indexes block-wise)."""
        stop = self.num_rows if stop is None else stop
        # a contiguous range: one slice (copied, so the pages can go), not the scattered gather
        rows = self.rows[start:stop].clone()
        self._release(start, stop)
        return _dequantised(rows, None if self.scale is None else self.scale[start:stop]).numpy()

    def _release(self, start: int, stop: int) -> None:
        """Hand rows ``start:stop`` back to the page cache if this table streams (module docstring)."""
        if self.pages is not None:
            self.pages.release(self.rows, start, stop)

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
    def load(cls, path: str | Path, resident: bool = False) -> "LeanTable":
        """Map a table written by :meth:`save` (any safetensors file with ``rows`` [+ ``scale``])
        without reading it: the tensors are views of a copy-on-write memory map.

        ``resident``: keep the rows' pages in the process once read; by default a scan streams
        them (module docstring)."""
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
            table = cls(rows, dtype, scale, meta.get("source_digest", ""))
        except ValueError as exc:
            raise MemoryIndexError(f"{path}: {exc}") from None
        if not resident and rows.numel():
            table.pages = MappedPages.of(rows)
        return table


def _dequantised(rows: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """Stored rows as float32 (int8 rows times their per-row ``scale``)."""
    out = rows.float()
    if scale is not None:
        out.mul_(scale[:, None])
    return out


class MappedPages:
    """Hands the pages of a read-only, file-mapped row tensor back to the operating system.

    ``madvise(MADV_DONTNEED)`` on a private file mapping that was never written drops the pages
    from the process; the next read maps them again from the page cache (or the file). Nothing
    happens once ``rows`` is no longer the mapped tensor (moved to another device, replaced), or
    where ``madvise`` is not available. The mapping is never written (the rows are read-only
    here), so releasing a page loses nothing."""

    _MADV_DONTNEED = 4   # same value on Linux and macOS
    READ_AROUND = 1 << 20   # above the kernel's fault-around (64 kB) and read-around windows

    def __init__(self, base: int, row_bytes: int, num_rows: int, madvise: Callable[..., int]):
        self.base, self.row_bytes, self.num_rows, self._madvise = base, row_bytes, num_rows, madvise

    @classmethod
    def of(cls, rows: torch.Tensor) -> "MappedPages | None":
        madvise = _libc_madvise()
        if madvise is None or rows.device.type != "cpu" or not rows.is_contiguous():
            return None
        return cls(rows.data_ptr(), rows.stride(0) * rows.element_size(), rows.shape[0], madvise)

    def release(self, rows: torch.Tensor, start: int, stop: int) -> None:
        """Release the pages holding rows ``start:stop`` and those mapped just before them; all of
        the rows' pages when ``stop`` is the last row (the end of a scan)."""
        if rows.device.type != "cpu" or rows.data_ptr() != self.base:
            return
        page = mmap.PAGESIZE
        first = self.base // page * page
        # Partial pages included (read-only: a released page that other rows share is simply
        # mapped again). READ_AROUND before the rows: a read fault maps the faulting page's
        # cached neighbours too, so reading this block mapped the tail of the previous one again.
        low = first if stop >= self.num_rows else max(
            first, (self.base + start * self.row_bytes - self.READ_AROUND) // page * page)
        high = -(-(self.base + stop * self.row_bytes) // page) * page
        if high > low:
            self._madvise(ctypes.c_void_p(low), ctypes.c_size_t(high - low), self._MADV_DONTNEED)


def _libc_madvise() -> Callable[..., int] | None:
    """libc's ``madvise`` (Linux / macOS), or None."""
    if not sys.platform.startswith(("linux", "darwin")):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


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
