"""Pretraining items: a cached passage, masked on the fly (docs/pretraining.md).

An item holds the original's pretraining fields as Python int lists of one length (the encoder
side, ``input_ids`` and ``input_entity_link``, is shorter when a mention was deleted):
``input_ids`` (masked), ``labels`` (the unmasked input), ``input_entity_link`` and
``output_entity_link`` (memory rows, NIL = 0), plus ``salient`` (1 at the ``<E_s>`` of every
SSM-masked mention, for recall@k) and ``index``; ``input_entity_cue`` (encoder side, 1 at the
memory-cue mention's ``<E_s>``) only in items that have a cue. ``labels``/``output_entity_link`` are *not*
shifted: the model shifts them right to form the decoder input (docs/model.md).
"""

from __future__ import annotations

from typing import Any, Callable, Collection

import numpy as np
from torch.utils.data import Dataset

from edmem.data.entity_rows import EntityRows
from edmem.constants import NIL_ENTITY
from edmem.pretraining.collate import CUE_FIELD
from edmem.pretraining.corpus import TokenCache
from edmem.pretraining.masking import MaskingConfig, SpecialTokenIds, example_rng, mask_example

# Vectorised original-id -> memory-row map (ids outside the memory must come back as NIL).
RowMap = Callable[[np.ndarray], np.ndarray]


def row_map(entity_rows: EntityRows) -> RowMap:
    """Vectorised id -> row through an :class:`EntityRows` (full or compact memory).

    Ids without a row (outside a compact vocabulary, or beyond the memory) become NIL instead of
    raising: a pretraining corpus links far more entities than a small memory holds, and NIL
    positions are ignored by the EL losses and by recall@k. The markers stay, so the text is the
    same whatever the memory.
    """
    row_to_id = entity_rows.rows_to_ids(np.arange(entity_rows.num_rows))
    # Ascending for memories built by training; rows appended later (`edmem memory add`,
    # docs/knowledge.md) may break the order, so search a sorted view and map back.
    order = np.argsort(row_to_id, kind="stable")
    sorted_ids = row_to_id[order]

    def to_rows(ids: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
        return np.where(sorted_ids[pos] == ids, order[pos], NIL_ENTITY)

    return to_rows


class PretrainDataset(Dataset):
    """Map-style view of a :class:`TokenCache` that masks each passage when it is fetched.

    Masks depend on ``(seed, epoch, index)`` only; call :meth:`set_epoch` at each epoch start for
    fresh masks. For evaluation keep one epoch so every evaluation sees the same masks.
    """

    def __init__(self, cache: TokenCache, special: SpecialTokenIds, masking: MaskingConfig,
                 to_rows: RowMap, seed: int = 42, cue_rows: Collection[int] | None = None):
        self.cache = cache
        self.special = special
        self.masking = masking
        self.to_rows = to_rows
        self.seed = seed
        self.epoch = 0
        # mentions of these rows are never deleted: they are the cue (edmem memory, docs/knowledge.md)
        self.cue_rows = None if cue_rows is None else np.asarray(sorted(set(cue_rows)), dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, Any]:
        input_ids, entity_ids = self.cache[index]
        links = self.to_rows(entity_ids)
        deletable = None if self.cue_rows is None else ~np.isin(links, self.cue_rows)
        masked = mask_example(input_ids, self.special, self.masking, example_rng(self.seed, self.epoch, index),
                              deletable, linked=links != NIL_ENTITY)
        encoder_links = links if masked.kept is None else links[masked.kept]
        item = {"index": int(index), "input_ids": masked.input_ids.tolist(), "labels": masked.labels.tolist(),
                "input_entity_link": encoder_links.tolist(), "output_entity_link": links.tolist(),
                "salient": masked.salient.tolist()}
        if masked.cue is not None:
            item[CUE_FIELD] = masked.cue[masked.kept].tolist()
        return item
