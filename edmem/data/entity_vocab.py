"""Entity vocabularies in the original formats, held compactly (1M names in ~tens of MB).

* ``entid2entityitemid_*.json``: ``{"<id>": {"entity": name, ...}}`` -> :func:`load_id2entity`
* ``entity_*.json``: JSON list of names, index = id -> :func:`load_entity_list`
* ``entity_tokens_*.json``: ``{"<id>": [[token ids], ...]}`` (or one flat list per id) ->
  :func:`load_entity_tokens`

Names are stored as one UTF-8 blob plus an offset array instead of a dict of 1M str objects;
the inner ``{"entity": ...}`` objects are reduced to their name while parsing, so no 1M dicts are
ever built. Pure Python (no numpy / torch).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from pathlib import Path
from itertools import accumulate, islice
from typing import Any, Iterable, Iterator, Sequence

from edmem.data.jsonio import check_file, read_json
from edmem.errors import DataError


class EntityNames:
    """Immutable id -> name table. Dense (ids 0..n-1) or sparse (sorted ids, binary search)."""

    def __init__(self, ids: Iterable[int] | None, names: Sequence[str]):
        joined = "".join(names)
        if joined.isascii():  # the common case: byte length == character length, one encode
            blob, lengths = joined.encode("ascii"), map(len, names)
        else:
            encoded = [name.encode("utf-8") for name in names]
            blob, lengths = b"".join(encoded), map(len, encoded)
        del joined
        self._blob = blob
        self._offsets = array("q", [0])
        self._offsets.extend(accumulate(lengths))
        count = len(names)
        self._ids: array | None = None
        if ids is not None:
            self._ids = ids if isinstance(ids, array) else array("q", ids)
            if len(self._ids) != count:
                raise ValueError("ids and names differ in length")
            if any(a >= b for a, b in zip(self._ids, islice(self._ids, 1, None))):
                raise ValueError("ids must be strictly increasing")
            if count and self._ids[0] == 0 and self._ids[-1] == count - 1:
                self._ids = None  # dense after all

    def _index(self, entity_id: int) -> int:
        if self._ids is None:
            return entity_id if 0 <= entity_id < len(self) else -1
        pos = bisect_left(self._ids, entity_id)
        return pos if pos < len(self._ids) and self._ids[pos] == entity_id else -1

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __contains__(self, entity_id: object) -> bool:
        return isinstance(entity_id, int) and self._index(entity_id) >= 0

    def __getitem__(self, entity_id: int) -> str:
        index = self._index(int(entity_id))
        if index < 0:
            raise KeyError(entity_id)
        return self._blob[self._offsets[index]:self._offsets[index + 1]].decode("utf-8")

    def get(self, entity_id: int, default: str | None = None) -> str | None:
        index = self._index(int(entity_id))
        if index < 0:
            return default
        return self._blob[self._offsets[index]:self._offsets[index + 1]].decode("utf-8")

    def ids(self) -> Iterator[int]:
        return iter(range(len(self))) if self._ids is None else iter(self._ids)

    def items(self) -> Iterator[tuple[int, str]]:
        for entity_id in self.ids():
            yield entity_id, self[entity_id]

    def names(self) -> Iterator[str]:
        for _, name in self.items():
            yield name

    @property
    def max_id(self) -> int:
        return -1 if not len(self) else (len(self) - 1 if self._ids is None else self._ids[-1])

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the table."""
        extra = 0 if self._ids is None else self._ids.itemsize * len(self._ids)
        return len(self._blob) + self._offsets.itemsize * len(self._offsets) + extra


class _Name(str):
    """Marks a string that came from an inner ``{"entity": ...}`` object during parsing."""

    __slots__ = ()


def _pairs_hook(pairs: list[tuple[str, Any]]) -> Any:
    for key, value in pairs:
        if key == "entity" and isinstance(value, str):
            return _Name(value)
    return _Pairs(pairs)  # the outer object (or an inner one without a name; reported below)


class _Pairs(list):
    """The (key, value) pairs of a parsed object that is not an ``{"entity": ...}`` entry."""

    __slots__ = ()


def load_id2entity(path: str | Path) -> EntityNames:
    """``entid2entityitemid_*.json`` -> id -> name (the original's ``load_id2entity``)."""
    path = Path(path)
    pairs = read_json(path, object_pairs_hook=_pairs_hook)
    if type(pairs) is not _Pairs:
        raise DataError('expected an object {"<id>": {"entity": name, ...}}', path)
    keys = [key for key, _ in pairs]
    names = [value for _, value in pairs]
    del pairs
    if not all(type(name) is _Name for name in names):
        key, value = next((k, v) for k, v in zip(keys, names) if type(v) is not _Name)
        raise DataError(f'expected {{"entity": name, ...}}, got {value!r:.80}', path, field=key)
    try:
        ids = array("q", map(int, keys))
    except ValueError:
        bad = next(k for k in keys if not k.strip().lstrip("-").isdigit())
        raise DataError("entity id is not an integer", path, field=bad) from None
    del keys
    if any(a >= b for a, b in zip(ids, islice(ids, 1, None))):  # files are usually in id order
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids = array("q", (ids[i] for i in order))
        names = [names[i] for i in order]
        for a, b in zip(ids, islice(ids, 1, None)):
            if a == b:
                raise DataError(f"entity id {a} appears twice", path, field=str(a))
    if ids and ids[0] < 0:
        raise DataError(f"entity id {ids[0]} is negative (ids are memory rows, 0 or more)", path,
                        field=str(ids[0]))
    return EntityNames(ids, names)


def load_entity_list(path: str | Path) -> EntityNames:
    """``entity_*.json`` (a JSON list of names, index = id) -> id -> name."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of names, got {type(data).__name__}", path)
    for index, name in enumerate(data):
        if not isinstance(name, str):
            raise DataError(f"entry {index} is {name!r}, expected a string", path)
    return EntityNames(None, data)


def load_entity_names(path: str | Path) -> EntityNames:
    """Either vocabulary format, chosen by the file's first non-blank character."""
    with check_file(path).open("rb") as handle:
        head = handle.read(64).lstrip()
    return load_entity_list(path) if head.startswith(b"[") else load_id2entity(path)


def load_entity_tokens(path: str | Path) -> dict[int, list[list[int]]]:
    """``entity_tokens_*.json`` -> {id: [token-id sequences]}; a flat list becomes one sequence."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError("expected an object {\"<id>\": [[token ids], ...]}", path)
    result: dict[int, list[list[int]]] = {}
    for key, value in data.items():
        if not isinstance(value, list):
            raise DataError(f"expected a list of token ids, got {value!r:.80}", path, field=key)
        sequences = value if value and isinstance(value[0], list) else [value]
        for sequence in sequences:
            if not isinstance(sequence, list) or not all(
                    isinstance(t, int) and not isinstance(t, bool) for t in sequence):
                raise DataError(f"expected integer token ids, got {sequence!r:.80}", path, field=key)
        try:
            result[int(key)] = sequences
        except ValueError:
            raise DataError("entity id is not an integer", path, field=key) from None
    return result
