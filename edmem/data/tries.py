"""Prefix-trie pickles of the original's static entity linking, read without executing code.

A pickle can run arbitrary code on load. The trie files are plain nested dicts of token ids, which
the pickle protocol builds with opcodes that never look up a class, so :class:`PlainUnpickler`
refuses *every* class lookup: a file that needs one (os.system, a custom class, ...) is rejected
with an error naming the file. ``edmem export-trie IN.pkl OUT.json`` converts a trie to JSON.

JSON keys are strings: int keys (token ids) are written as decimal strings, str keys (question
ids at the top of a per-question trie file) as they are. :func:`load_trie_json` restores int keys
below the top level (``per_question=True``) or everywhere (``per_question=False``).
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import sys
from pathlib import Path
from typing import Any

from edmem.data.jsonio import read_json
from edmem.errors import DataError

Trie = dict


class PlainUnpickler(pickle.Unpickler):
    """Unpickler for plain data (dict, list, tuple, str, bytes, int, float, bool, None) only."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}': only plain data "
                                     "(dicts, lists, numbers, strings) is allowed")


def load_plain_pickle(path: str | Path) -> Any:
    """Load a pickle that holds only plain data; DataError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path)
    try:
        with path.open("rb") as handle:
            return PlainUnpickler(handle).load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"unsafe or invalid pickle: {exc}", path) from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise DataError(f"unreadable pickle ({type(exc).__name__}: {exc})", path) from None


def loads_plain_pickle(data: bytes) -> Any:
    """:func:`load_plain_pickle` for bytes in memory (raises ``pickle.UnpicklingError``)."""
    return PlainUnpickler(io.BytesIO(data)).load()


def load_trie(path: str | Path) -> Trie:
    """A prefix-trie pickle: a dict (per question id, or one trie) of nested dicts of token ids."""
    trie = load_plain_pickle(path)
    if not isinstance(trie, dict):
        raise DataError(f"expected a dict at the top of the trie, got {type(trie).__name__}", path)
    return trie


def _jsonable(node: Any, path: Path, where: str) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if isinstance(key, bool) or not isinstance(key, (int, str)):
                raise DataError(f"key {key!r} at {where or 'top'} is neither int nor str", path)
            text = str(key)
            if text in out:
                raise DataError(f"keys {text!r} clash at {where or 'top'} once written as JSON strings",
                                path)
            out[text] = _jsonable(value, path, f"{where}/{text}")
        return out
    if isinstance(node, (list, tuple)):
        return [_jsonable(value, path, f"{where}[{i}]") for i, value in enumerate(node)]
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise DataError(f"value of type {type(node).__name__} at {where or 'top'} cannot be written as JSON",
                    path)


def trie_to_json(trie: Trie, path: str | Path = "<trie>") -> dict[str, Any]:
    """A JSON-ready copy of ``trie`` with every key as a string (int keys in decimal)."""
    return _jsonable(trie, Path(path), "")


def _int_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {int(key): _int_keys(value) for key, value in node.items()}
    return node


def load_trie_json(path: str | Path, per_question: bool = True) -> Trie:
    """Read an exported trie back with int token-id keys (top-level keys stay str if per_question)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError("expected a JSON object", path)
    try:
        if per_question:
            return {key: _int_keys(value) for key, value in data.items()}
        return _int_keys(data)
    except ValueError as exc:
        raise DataError(f"non-integer token-id key ({exc})", path) from None


def export_trie(in_path: str | Path, out_path: str | Path) -> int:
    """Convert a trie pickle to JSON; returns the number of top-level entries."""
    trie = load_trie(in_path)
    data = trie_to_json(trie, in_path)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, separators=(",", ":"))
    return len(data)


def main(argv: list[str] | None = None) -> int:
    """``edmem export-trie IN.pkl OUT.json``."""
    parser = argparse.ArgumentParser(
        prog="edmem export-trie",
        description="Convert a prefix-trie pickle to JSON. The pickle is read with a restricted "
                    "unpickler that refuses anything but plain data. JSON keys are strings: int "
                    "token ids are written in decimal.")
    parser.add_argument("input", help="trie pickle, e.g. prefix_trie/wq/wq_top1_entity_trie.pkl")
    parser.add_argument("output", help="JSON file to write")
    args = parser.parse_args(argv)
    try:
        count = export_trie(args.input, args.output)
    except DataError as exc:
        print(f"edmem export-trie: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {count} entries to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
