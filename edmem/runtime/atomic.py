"""Atomic file writes: a temp file in the same directory, fsync, then ``os.replace``, so a
process killed at any moment leaves either the old or the new file, never a torn one.

Torch is imported only by :func:`atomic_torch_save`, so torch-free layers (evaluation, data) can
write files atomically too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temp file over ``path`` (same directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
    return atomic_write(path, write)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` atomically."""
    import torch  # here, not at the top: the text writers must not need torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def remove_stale_temp_files(directory: str | Path) -> None:
    """Delete ``.<name>.*.tmp`` leftovers of a killed writer (they are never read)."""
    for tmp in Path(directory).glob(".*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass
