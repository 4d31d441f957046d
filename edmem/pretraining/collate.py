"""Batches of pretraining items: right padding everywhere (docs/pretraining.md).

``input_ids`` pad with ``<pad>``, ``labels`` with -100 (no LM loss on padding), entity links and
``salient`` and ``input_entity_cue`` with NIL/0. ``attention_mask = input_ids != pad``. No decoder fields: the model builds
the decoder input by shifting ``labels`` (and ``output_entity_link``) right.
"""

from __future__ import annotations

from typing import Any, Sequence

from edmem.constants import LABEL_IGNORE, NIL_ENTITY
from edmem.data.collate import pad

PAD_VALUES = {"labels": LABEL_IGNORE, "input_entity_link": NIL_ENTITY, "output_entity_link": NIL_ENTITY,
              "salient": 0}
# Fields the model's forward takes; the rest (salient, index) is bookkeeping for evaluation.
MODEL_FIELDS = ("input_ids", "attention_mask", "labels", "input_entity_link", "output_entity_link")
# Only with memory-cue masking (``PretrainCollator(with_cue=True)``); the model takes it too.
CUE_FIELD = "input_entity_cue"


class PretrainCollator:
    """Callable for ``DataLoader(collate_fn=...)``; picklable (plain attributes only)."""

    def __init__(self, pad_token_id: int, with_cue: bool = False):
        self.pad_token_id = pad_token_id
        self.with_cue = with_cue

    @property
    def model_fields(self) -> tuple[str, ...]:
        """The batch fields the model's forward takes."""
        return (*MODEL_FIELDS, CUE_FIELD) if self.with_cue else MODEL_FIELDS

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        batch: dict[str, Any] = {"input_ids": pad([it["input_ids"] for it in items], self.pad_token_id)}
        batch["attention_mask"] = (batch["input_ids"] != self.pad_token_id).long()
        for name, value in PAD_VALUES.items():
            batch[name] = pad([it[name] for it in items], value)
        if self.with_cue:  # memory-cue masking (docs/pretraining.md); items without a cue get zeros
            batch[CUE_FIELD] = pad([it.get(CUE_FIELD, [0] * len(it["input_ids"])) for it in items], 0)
        batch["index"] = [it["index"] for it in items]
        return batch
