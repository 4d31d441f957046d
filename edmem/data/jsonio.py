"""Low-level JSON / JSONL reading with errors that name file and line. Pure Python (no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from edmem.errors import DataError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; blank lines are skipped.

    Raises DataError naming the file and line for unreadable files, invalid JSON or non-objects.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path)
    with path.open("r", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", path, line_no) from None
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, line_no)
            yield line_no, obj


def read_json(path: str | Path, **load_kwargs: Any) -> Any:
    """Load one JSON document, raising DataError (with the position) on failure.

    ``load_kwargs`` go to ``json.load`` (e.g. ``object_pairs_hook`` for compact large files).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path)
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle, **load_kwargs)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", path, exc.lineno) from None
