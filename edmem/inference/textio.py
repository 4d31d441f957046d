"""Reading user text files line by line with errors that name the file and line.

Why not ``open(..., encoding="utf-8")`` directly: a non-UTF-8 byte would surface as a
``UnicodeDecodeError`` with a byte offset and no line, and a huge line would be read whole into
memory before anything could refuse it. Here each line is decoded on its own and checked against
a length limit while it is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from edmem.errors import DataError

#: Longest line accepted by default (bytes); a question is far shorter, a 1 MB line is a mistake.
MAX_LINE_BYTES = 64 * 1024


def iter_lines(path: str | Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` (1-based, newline stripped) for every line of ``path``."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path)
    with path.open("rb") as handle:
        line_no = 0
        while True:
            raw = handle.readline(max_line_bytes + 2)
            if not raw:
                return
            line_no += 1
            if len(raw.rstrip(b"\r\n")) > max_line_bytes:
                raise DataError(f"line longer than {max_line_bytes} bytes (is this the right file?)",
                                path, line_no)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                                f"{exc.start + 1})", path, line_no) from None
            if line_no == 1:
                text = text.lstrip("\ufeff")
            yield line_no, text.rstrip("\r\n")


def iter_json_objects(path: str | Path, max_line_bytes: int = MAX_LINE_BYTES
                      ) -> Iterator[tuple[int, dict[str, Any]]]:
    """JSONL: ``(line_number, object)`` for each non-blank line (bad JSON names the line)."""
    for line_no, text in iter_lines(path, max_line_bytes):
        if not text.strip():
            continue
        yield line_no, parse_json_object(text, path, line_no)


def parse_json_object(text: str, path: str | Path, line_no: int) -> dict[str, Any]:
    """One JSONL line as a JSON object; anything else is a DataError naming the line."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", path, line_no) from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, line_no)
    return obj
