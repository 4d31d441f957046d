"""EL batches (docs/data.md): shift the decoder side right, pad encoder right / decoder left.

The decoder is left-padded so that its last column is the final ``<E_s>`` of every row (the
position the EL head reads) and the answer id sits in the last column of ``output_entity_link``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from edmem.constants import LABEL_IGNORE, NIL_ENTITY



def shift_right(values: Sequence[int], start: int) -> list[int]:
    """``[start] + values[:-1]`` (the decoder-start shift; the last element is dropped)."""
    return [start, *values[:-1]]


def pad(rows: Sequence[Sequence[int]], value: int, left: bool = False) -> torch.Tensor:
    """Pad int rows to the longest one (left or right) into an int64 tensor."""
    width = max((len(row) for row in rows), default=0)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for r, row in enumerate(rows):
        if row:
            values = torch.as_tensor(list(row), dtype=torch.long)
            if left:
                out[r, width - len(row):] = values
            else:
                out[r, :len(row)] = values
    return out


@dataclass(frozen=True)
class ELCollator:
    """Collate EL items (from ``edmem.data.examples``) into the original's batch dict.

    Training items (with ``output_entity_link``) yield ``input_entity_link``,
    ``output_entity_link`` and ``labels`` as well; eval items only ids and masks.
    """

    pad_token_id: int = 1
    decoder_start_token_id: int = 2

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        pad_id = self.pad_token_id
        batch: dict[str, Any] = {"id": [item["id"] for item in items]}
        batch["input_ids"] = pad([item["input_ids"] for item in items], pad_id)
        batch["decoder_input_ids"] = pad(
            [shift_right(item["decoder_input_ids"], self.decoder_start_token_id) for item in items],
            pad_id, left=True)
        batch["attention_mask"] = (batch["input_ids"] != pad_id).long()
        batch["decoder_attention_mask"] = (batch["decoder_input_ids"] != pad_id).long()
        training = [("output_entity_link" in item) for item in items]
        if any(training):
            if not all(training):
                raise ValueError("a batch mixes training and evaluation items")
            batch["input_entity_link"] = pad([item["input_entity_link"] for item in items], NIL_ENTITY)
            batch["output_entity_link"] = pad(
                [shift_right(item["output_entity_link"], NIL_ENTITY) for item in items],
                NIL_ENTITY, left=True)
            labels = pad([item["labels"] for item in items], pad_id, left=True)
            labels[labels == pad_id] = LABEL_IGNORE
            batch["labels"] = labels
        return batch
