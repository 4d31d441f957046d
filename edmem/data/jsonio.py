"""Low-level JSON / JSONL reading with errors that name file and line. Pure Python (no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from edmem.errors import DataError


def check_file(path: str | Path, field: str | None = None) -> Path:
    """``path`` as a Path if it is a readable regular file; else DataError saying what it is
    (missing, or a directory where a file is expected)."""
    path = Path(path)
    if path.is_dir():
        raise DataError("is a directory, expected a file", path, field=field)
    if not path.is_file():
        raise DataError("file not found", path, field=field)
    return path


def decode_error(path: str | Path, exc: UnicodeDecodeError) -> DataError:
    """A DataError for a file that is not UTF-8: the first bad line and byte column (found by
    re-reading the file in binary; only done on the error path)."""
    line_no = None
    column = None
    try:
        with Path(path).open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as bad:
                    line_no, column = number, bad.start + 1
                    break
    except OSError:
        pass
    where = f" at byte {column} of the line" if column is not None else ""
    return DataError(f"not UTF-8 text ({exc.reason}{where}); save the file as UTF-8", path, line_no)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; blank lines are skipped.

    Raises DataError naming the file and line for unreadable files, non-UTF-8 bytes, invalid
    JSON or non-objects.
    """
    path = check_file(path)
    with path.open("r", encoding="utf-8") as handle:
        line_no = 0
        while True:
            try:
                line = handle.readline()
            except UnicodeDecodeError as exc:
                raise decode_error(path, exc) from None
            if not line:
                return
            line_no += 1
            text = line.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", path, line_no) from None
            except RecursionError:
                raise DataError("JSON nested too deeply", path, line_no) from None
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, line_no)
            yield line_no, obj


def read_json(path: str | Path, **load_kwargs: Any) -> Any:
    """Load one JSON document, raising DataError (with the position) on failure.

    ``load_kwargs`` go to ``json.load`` (e.g. ``object_pairs_hook`` for compact large files).
    """
    path = check_file(path)
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle, **load_kwargs)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", path, exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise decode_error(path, exc) from None
    except RecursionError:
        raise DataError("JSON nested too deeply", path) from None
    except DataError as exc:  # raised by an object hook (e.g. a duplicate key)
        if exc.path is None:
            raise DataError(exc.reason, path, exc.line, exc.field) from None
        raise


T = TypeVar("T")


def read_tagged_json(path: str | Path, tag: str, what: str, parse: Callable[[dict], T]) -> T | None:
    """An optional one-document JSON file whose ``"format"`` is ``tag``: None when it is absent,
    else ``parse(document)``. Any failure — undecodable text, invalid JSON, another format, a
    missing or mistyped field (``parse`` raises ValueError / KeyError / TypeError /
    AttributeError) — is one DataError naming the file: ``unreadable <what> (<why>)``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != tag:
            raise ValueError(f"not an {tag} file")
        return parse(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:   # UnicodeDecodeError too
        raise DataError(f"unreadable {what} ({exc})", path) from None


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a key given twice in one object (``json`` would keep
    the last one silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DataError(f"key {key!r} appears twice in one object (the last would silently win)",
                            field=key)
        result[key] = value
    return result
