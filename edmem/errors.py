"""Errors that point the user at the exact place of bad input (file, line, field)."""

from __future__ import annotations

from pathlib import Path


class EDMemError(Exception):
    """Base class: any error the command line reports as a clear message (no traceback)."""


class DataError(EDMemError, ValueError):
    """Bad input data. The message names the file, the 1-based line (if any) and the field (if any)."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class CheckpointError(EDMemError):
    """A checkpoint that does not fit the model (missing/unexpected keys, shape mismatch)."""


class UsageError(EDMemError):
    """Flags or arguments that cannot work together; reported like bad input (one line, non-zero
    exit). The evaluation commands exit 2 for it, the run/pretrain commands 1."""
