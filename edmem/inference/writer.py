"""``{prefix}predictions.json`` exactly as the original writes it (docs/training.md, "Prediction"), plus optional scores.

Format: one JSON object ``{id: [entity_name, [k entity ids, best first]]}`` in dataset order.
Written with ``json.dump`` defaults (``ensure_ascii=True``) like the original's single-process
file; its multi-process file used ``ensure_ascii=False`` (docs/quirks.md Q6) — both parse to the same JSON, and
here the two cases produce the same bytes. Keys are example ids, so the order never matters to
readers (Q29); we keep dataset order in both cases anyway.

Ids without a name (the reserved rows 0–9, or any id missing from ``--id2entity_file``) are
written with the empty name ``""``: the original raised ``KeyError`` there. An empty name can
never equal a normalised answer, so it scores as wrong, and the id list still shows what won.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from edmem.runtime.atomic import atomic_write_text

UNNAMED_ENTITY = ""
PREDICTIONS = "predictions.json"
SCORES = "prediction_scores.json"


class NameTable(Protocol):
    def get(self, entity_id: int, default: str | None = None) -> str | None: ...


def entity_name(names: NameTable, entity_id: int) -> str:
    """The name written for ``entity_id`` (``""`` when the vocabulary has none)."""
    name = names.get(int(entity_id))
    return UNNAMED_ENTITY if name is None else str(name)


def predictions_object(topk: Mapping[str, Sequence[int]], names: NameTable) -> dict[str, list[Any]]:
    """``{id: [name of top-1, [ids]]}`` from ``{id: [ids, best first]}``."""
    return {qid: [entity_name(names, ids[0]) if len(ids) else UNNAMED_ENTITY, [int(i) for i in ids]]
            for qid, ids in topk.items()}


def prediction_paths(output_dir: str | Path, prefix: str) -> tuple[Path, Path]:
    out = Path(output_dir)
    return out / f"{prefix}{PREDICTIONS}", out / f"{prefix}{SCORES}"


def write_predictions(path: str | Path, topk: Mapping[str, Sequence[int]], names: NameTable) -> Path:
    """Write the original-format predictions file atomically."""
    return atomic_write_text(path, json.dumps(predictions_object(topk, names)))


def write_scores(path: str | Path, topk: Mapping[str, Sequence[int]],
                 scores: Mapping[str, Sequence[float]]) -> Path:
    """``{id: {"ids": [...], "scores": [...]}}``: the raw dot-product scores of the EL head, in
    the same order as the ids (a separate file so the predictions file stays the original's)."""
    obj = {qid: {"ids": [int(i) for i in ids], "scores": [float(s) for s in scores[qid]]}
           for qid, ids in topk.items()}
    return atomic_write_text(path, json.dumps(obj))
