"""The ``args`` record of ``--output_dir`` and the settings check of ``--resume``.

Every start of a training run appends one line to ``args`` (the original's ``Namespace(...)``
text, so the first line is what ``run_QA.py`` wrote); earlier lines are never overwritten. A
resumed run must continue with the settings that shaped the saved state: :func:`resume_changes`
compares the flags of this start with the last recorded start and :func:`check_resume` refuses
any difference, naming each flag ``old -> new``, unless ``--resume_force`` is given. See
docs/reliability.md.
"""

from __future__ import annotations

import argparse
import ast
import math
from pathlib import Path
from typing import Any

from edmem.errors import EDMemError
from edmem.runtime.atomic import atomic_write_text

ARGS_FILE = "args"

# Flags that never change what a run computes (where files go, logging, resources, what happens
# after training). Every other recorded flag must match on --resume.
NEUTRAL_FLAGS = frozenset({
    "output_dir", "overwrite_output", "resume", "resume_force", "do_predict", "predict_on_dev",
    "prefix", "save_scores", "tensorboard", "num_threads", "dist_timeout", "local_rank",
    "log_level", "log_level_replica", "save_training_state", "predict_batch_size", "n_gpu",
    "device", "cache_dir", "do_train", "output_scores", "gradient_checkpointing",
})


class SettingsMismatch(EDMemError):
    """``--resume`` with flags that differ from the run being resumed."""


def parse_namespace(line: str) -> dict[str, Any] | None:
    """The flags of one ``Namespace(a=1, b='x')`` line (literals only, never evaluated as code);
    None for a line that is not one."""
    try:
        tree = ast.parse(line.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == "Namespace" and not call.args):
        return None
    flags: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            return None
        node = keyword.value
        if isinstance(node, ast.Name) and node.id in ("nan", "inf"):
            flags[keyword.arg] = float(node.id)
            continue
        try:
            flags[keyword.arg] = ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            flags[keyword.arg] = ast.unparse(node)  # compared as text
    return flags


def recorded_starts(output_dir: str | Path) -> list[dict[str, Any]]:
    """The flags of every recorded start, oldest first (unreadable lines are skipped)."""
    path = Path(output_dir) / ARGS_FILE
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    return [flags for flags in map(parse_namespace, text.splitlines()) if flags is not None]


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        return True
    return old == new


def resume_changes(previous: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """``--flag old -> new`` for each result-changing flag that differs (flags missing on either
    side, e.g. added by a newer edmem, are not compared)."""
    current = vars(args)
    return [f"--{name} {previous[name]!r} -> {current[name]!r}"
            for name in previous
            if name in current and name not in NEUTRAL_FLAGS and not _same(previous[name], current[name])]


def check_resume(output_dir: str | Path, args: argparse.Namespace) -> list[str]:
    """Compare this ``--resume`` start with the last recorded one. Raises :class:`SettingsMismatch`
    on a difference unless ``args.resume_force``; returns the differences (logged by the caller)."""
    starts = recorded_starts(output_dir)
    if not starts:
        return []
    changes = resume_changes(starts[-1], args)
    if changes and not getattr(args, "resume_force", False):
        raise SettingsMismatch(
            f"--resume: {Path(output_dir) / ARGS_FILE} records other settings for this run: "
            f"{'; '.join(changes)}. Resume with the original flags, or pass --resume_force True "
            "to continue with the new ones")
    return changes


def append_start(output_dir: str | Path, args: argparse.Namespace) -> Path:
    """Append this start's ``Namespace(...)`` line to ``args`` (atomic; old lines kept)."""
    path = Path(output_dir) / ARGS_FILE
    old = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    return atomic_write_text(path, f"{old}{args}\n")
