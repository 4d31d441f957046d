"""Batches of pretraining items: right padding everywhere (spec §11 collator).

``input_ids`` pad with ``<pad>``, ``labels`` with -100 (no LM loss on padding), entity links and
``salient`` with NIL/0. ``attention_mask = input_ids != pad``. No decoder fields: the model builds
the decoder input by shifting ``labels`` (and ``output_entity_link``) right.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from edmem.data.formats import NIL_ENTITY
from edmem.pretraining.masking import IGNORE_INDEX

PAD_VALUES = {"labels": IGNORE_INDEX, "input_entity_link": NIL_ENTITY, "output_entity_link": NIL_ENTITY,
              "salient": 0}
# Fields the model's forward takes; the rest (salient, index) is bookkeeping for evaluation.
MODEL_FIELDS = ("input_ids", "attention_mask", "labels", "input_entity_link", "output_entity_link")


def pad_right(rows: Sequence[np.ndarray], value: int) -> torch.Tensor:
    """Stack 1-D int arrays into a (B, T_max) int64 tensor, right-padded with ``value``."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return torch.from_numpy(out)


class PretrainCollator:
    """Callable for ``DataLoader(collate_fn=...)``; picklable (plain attributes only)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {"input_ids": pad_right([it["input_ids"] for it in items], self.pad_token_id)}
        batch["attention_mask"] = (batch["input_ids"] != self.pad_token_id).long()
        for name, value in PAD_VALUES.items():
            batch[name] = pad_right([it[name] for it in items], value)
        batch["index"] = [it["index"] for it in items]
        return batch
