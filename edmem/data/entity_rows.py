"""Compact entity memory: original entity id <-> memory row.

The official memory has 1,000,010 rows and the row *is* the entity id. A task whose entity
vocabulary lists only some ids (WebQuestions: 8,548 entities) does not need 1M rows: with
``--compact_entity_memory True`` the memory gets

* rows 0–9 = ids 0–9 (row 0 is NIL, the padding value and ``ignore_index`` of every EL loss;
  1–9 are reserved rows that take part in the softmax like in the original), then
* rows 10, 11, … = the vocabulary's ids ≥ 10 in increasing order (rows that ``edmem memory
  add`` appends later follow in the order they were added, docs/knowledge.md).

Ids are mapped to rows before tensors are built (``ELDataset(id_to_row=...)``) and rows back to
ids on every output (predictions, logs, scores), so files always hold original ids. The mapping is
saved next to the checkpoint (:data:`FILENAME`) and reloaded for prediction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from edmem.errors import CheckpointError, DataError
from edmem.runtime.atomic import atomic_write_text

NUM_RESERVED = 10
FILENAME = "entity_rows.json"
FORMAT = "edmem-entity-rows/1"


class EntityRows:
    """A bijection between the vocabulary's entity ids and memory rows.

    ``identity(n)`` is the full memory (row == id, ``n`` rows); ``compact(ids)`` keeps the reserved
    rows plus one row per listed id.
    """

    def __init__(self, row_to_id: np.ndarray, compact: bool):
        self._row_to_id = np.ascontiguousarray(row_to_id, dtype=np.int64)
        self.compact = compact
        self._id_to_row = ({int(i): r for r, i in enumerate(self._row_to_id)} if compact else None)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def identity(cls, num_rows: int) -> "EntityRows":
        return cls(np.arange(num_rows, dtype=np.int64), compact=False)

    @classmethod
    def compact_from_ids(cls, ids: Iterable[int]) -> "EntityRows":
        real = sorted({int(i) for i in ids if int(i) >= NUM_RESERVED})
        return cls(np.array(list(range(NUM_RESERVED)) + real, dtype=np.int64), compact=True)

    # ---- queries ------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        return int(self._row_to_id.shape[0])

    def __len__(self) -> int:
        return self.num_rows

    def __contains__(self, entity_id: object) -> bool:
        if not isinstance(entity_id, (int, np.integer)):
            return False
        if self._id_to_row is None:
            return 0 <= int(entity_id) < self.num_rows
        return int(entity_id) in self._id_to_row

    def is_target(self, entity_id: object) -> bool:
        """Whether a training label may be this id: it has a row, and in a compact memory that row
        is not one of the reserved rows 1-9 (they belong to no vocabulary entity)."""
        if self.compact and isinstance(entity_id, (int, np.integer)) and int(entity_id) < NUM_RESERVED:
            return False
        return entity_id in self

    def id_to_row(self, entity_id: int) -> int:
        """The memory row of an entity id (``DataError`` if the memory has no row for it)."""
        if self._id_to_row is None:
            if 0 <= entity_id < self.num_rows:
                return int(entity_id)
        else:
            row = self._id_to_row.get(int(entity_id))
            if row is not None:
                return row
        raise DataError(f"entity id {entity_id} has no row in the entity memory "
                        f"({self.num_rows} rows{', compact' if self.compact else ''})")

    def row_to_id(self, row: int) -> int:
        return int(self._row_to_id[row])

    def rows_to_ids(self, rows: np.ndarray) -> np.ndarray:
        """Vectorised row -> id for top-k arrays (identity memories return the input)."""
        return rows if not self.compact else self._row_to_id[rows]

    # ---- persistence --------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"format": FORMAT, "num_reserved": NUM_RESERVED, "num_rows": self.num_rows,
                "ids": self._row_to_id[NUM_RESERVED:].tolist()}

    def save(self, directory: str | Path) -> Path:
        """Write ``entity_rows.json`` atomically (temp file + rename)."""
        return atomic_write_text(Path(directory) / FILENAME, json.dumps(self.to_json()))

    @classmethod
    def load(cls, directory: str | Path) -> "EntityRows | None":
        """The mapping saved with a checkpoint, or None (a full, identity memory)."""
        path = Path(directory) / FILENAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"unknown format {data.get('format') if isinstance(data, dict) else data!r:.60}")
            ids = data["ids"]
            if not isinstance(ids, list) or not all(type(i) is int for i in ids):
                raise ValueError("'ids' must be a list of integers")
            # increasing as training writes them; rows appended by `edmem memory add` may follow
            # in any order (docs/knowledge.md), so only distinct and non-reserved is required
            if len(set(ids)) != len(ids) or (ids and min(ids) < NUM_RESERVED):
                raise ValueError(f"'ids' must be distinct and at least {NUM_RESERVED}")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:  # UnicodeDecodeError too
            raise CheckpointError(f"{path}: not a valid entity-row mapping ({exc})") from None
        return cls(np.array(list(range(NUM_RESERVED)) + ids, dtype=np.int64), compact=True)
