"""Atomic file writes (temp file in the same directory, fsync, ``os.replace``) and the clean-up of
the temp files a killed writer leaves behind. Pure Python: the evaluation commands use it without
torch. See docs/reliability.md for what is atomic and why.

A temp file is named ``.<target name>.edmem-<pid>-<random>.tmp``, so the clean-up can recognise
exactly the files edmem created and never touches a user's own hidden ``*.tmp`` files; it also
skips temp files of a writer that is still running (its pid is alive).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from edmem.errors import WriteError

TEMP_MARK = "edmem"
_TEMP_RE = re.compile(r"^\..+\." + TEMP_MARK + r"-(\d+)-[A-Za-z0-9_]+\.tmp$")


def temp_prefix(path: Path) -> str:
    """The name prefix of ``path``'s temp files (this process): ``.<name>.edmem-<pid>-``."""
    return f".{path.name}.{TEMP_MARK}-{os.getpid()}-"


def _write_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the write failed": OS errors, torch.save's RuntimeError
    (``PytorchStreamWriter failed writing file``) and safetensors' own error type."""
    errors: list[type[BaseException]] = [OSError, RuntimeError]
    try:
        from safetensors import SafetensorError
        errors.append(SafetensorError)
    except ImportError:  # pragma: no cover - safetensors is a dependency
        pass
    return tuple(errors)


def free_space(directory: Path) -> str:
    """Human-readable free space of ``directory``'s file system (``"unknown"`` if it cannot tell)."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if free < 1024 or unit == "TB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return "unknown"  # pragma: no cover


def atomic_write(path: str | Path, write: Callable[[str], None], make_parents: bool = True) -> Path:
    """Call ``write(tmp_path)`` then move the temp file over ``path`` (same directory, created
    unless ``make_parents`` is False).

    On failure the temp file is removed, ``path`` keeps its previous content, and a write error
    (OS error, torch's or safetensors' own error types) becomes :class:`WriteError` naming the
    file and the free space.
    """
    path = Path(path)
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, _write_errors()):
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise WriteError(f"cannot write {path}: {reason} ({free_space(path.parent)} free on "
                             f"its file system; the previous file, if any, is unchanged)") from exc
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str, make_parents: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
    return atomic_write(path, write, make_parents=make_parents)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Delete the temp files of edmem writers that died (``.<name>.edmem-<pid>-<rand>.tmp`` whose
    pid is gone); nothing else. Returns what was removed."""
    removed = []
    for tmp in Path(directory).glob(f".*.{TEMP_MARK}-*.tmp"):
        match = _TEMP_RE.match(tmp.name)
        if match is None or _pid_alive(int(match.group(1))) or not tmp.is_file():
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` atomically (a failure is a :class:`WriteError`)."""
    import torch  # here, not at the top: the text writers must not need torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
