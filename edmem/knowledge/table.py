"""Row-level changes to the entity table: append rows, initialise them, hide rows.

The table is one (d_e, N) parameter shared by the three memory readers (docs/model.md); a new
entity is a new column at the end, so no existing row moves and every id -> row already handed
out stays valid. Rows are hidden through the original's entity mask (``config.hidden_entity_rows``,
applied by every eval-mode read: docs/knowledge.md), never deleted, so nothing is renumbered.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from edmem.constants import ROW_INIT_METHODS
from edmem.data.entity_rows import NUM_RESERVED, EntityRows


def append_rows(model: Any, rows: EntityRows, new_ids: Sequence[int]) -> tuple[EntityRows, list[int]]:
    """Give ``new_ids`` one new table column each (zeros until initialised).

    Returns the extended id <-> row mapping (always compact: an identity memory whose new ids are
    not exactly N, N+1, ... can no longer be row == id) and the new rows in ``new_ids`` order.
    """
    table = model.EntityEmbedding.weight
    old_n = table.shape[1]
    grown = torch.zeros(table.shape[0], old_n + len(new_ids), dtype=table.dtype, device=table.device)
    with torch.no_grad():
        grown[:, :old_n] = table
    model.EntityEmbedding.weight = nn.Parameter(grown, requires_grad=table.requires_grad)
    model._tie_weights()
    model.config.entity_vocab_size = old_n + len(new_ids)
    row_to_id = np.concatenate([rows.rows_to_ids(np.arange(rows.num_rows)),
                                np.asarray(list(new_ids), dtype=np.int64)])
    return EntityRows(row_to_id, compact=True), list(range(old_n, old_n + len(new_ids)))


def reference_norm(model: Any, upto: int) -> float:
    """Mean norm of the real (non-reserved) rows below ``upto``: the scale new rows get."""
    table = model.EntityEmbedding.weight.detach()
    real = table[:, NUM_RESERVED:upto] if upto > NUM_RESERVED else table[:, :upto]
    return float(real.norm(dim=0).mean()) if real.numel() else 1.0


@torch.no_grad()
def name_queries(model: Any, tokenizer: Any, names: Sequence[str], *, bos_prefix: bool,
                 max_length: int) -> torch.Tensor:
    """(len(names), d_e): the encoder memory's query at ``<E_s>`` when the text is just the name.

    Why this initialises a row well: the encoder read scores row e by ``query · e``, so a row
    pointing along the query the model forms for the name is the one it retrieves when it reads
    that name — the model's own reading of the name, before any fitting.
    """
    from edmem.data.collate import pad
    from edmem.data.formats import Mention
    from edmem.data.markers import encode_with_mentions

    encoded = [encode_with_mentions(tokenizer, name, [Mention(0, len(name), NUM_RESERVED)], max_length,
                                    bos_prefix=bos_prefix)[0] for name in names]
    pad_id = tokenizer.pad_token_id
    input_ids = pad(encoded, pad_id)
    attention = (input_ids != pad_id).long()
    was_training = model.training
    model.eval()
    try:
        hidden = model.LowerEncoder(input_ids, _padding_mask(attention, model), None)
    finally:
        model.train(was_training)
    start = model.config.entity_start_token_id
    rows, cols = torch.nonzero(input_ids == start, as_tuple=True)
    # first <E_s> of each row (one mention per text)
    first = torch.full((len(names),), -1, dtype=torch.long)
    for r, c in zip(rows.tolist(), cols.tolist()):
        if first[r] < 0:
            first[r] = c
    picked = hidden[torch.arange(len(names)), first]
    return model.EncoderEntityMemory.InputLayer(picked)


def _padding_mask(attention: torch.Tensor, model: Any) -> torch.Tensor:
    from edmem.modeling.layers import padding_mask
    return padding_mask(attention, model.shared.weight.dtype)


@torch.no_grad()
def initialise_rows(model: Any, tokenizer: Any, new_rows: Sequence[int], *, method: str,
                    names: Sequence[Sequence[str]], types: Sequence[str | None],
                    row_types: Mapping[int, str | None], bos_prefix: bool, max_length: int) -> None:
    """Write initial values into ``new_rows``.

    ``name``: the mean over the entity's names of :func:`name_queries`, scaled to the mean norm
    of the existing rows. ``type_mean``: the mean of the existing rows of the same type
    (``row_types``: row -> type), or of all existing rows when the type is unknown or has none.
    """
    if method not in ROW_INIT_METHODS:
        raise ValueError(f"init method {method!r}: expected one of {ROW_INIT_METHODS}")
    table = model.EntityEmbedding.weight
    first_new = min(new_rows)
    scale = reference_norm(model, first_new)
    if method == "name":
        flat = [n for group in names for n in group]
        queries = name_queries(model, tokenizer, flat, bos_prefix=bos_prefix, max_length=max_length)
        at = 0
        for row, group in zip(new_rows, names):
            q = queries[at:at + len(group)].mean(dim=0)
            at += len(group)
            table[:, row] = q * (scale / q.norm().clamp(min=1e-8))
        return
    by_type: dict[str | None, list[int]] = {}
    for row, kind in row_types.items():
        if NUM_RESERVED <= row < first_new:
            by_type.setdefault(kind, []).append(row)
    everything = list(range(NUM_RESERVED, first_new)) or list(range(first_new))
    for row, kind in zip(new_rows, types):
        same = by_type.get(kind) if kind is not None else None
        table[:, row] = table[:, same or everything].mean(dim=1)


def hidden_rows(config: Any) -> list[int]:
    """Rows hidden from every read (``edmem memory remove``)."""
    return [int(r) for r in (getattr(config, "hidden_entity_rows", None) or [])]


def hide_rows(config: Any, rows: Sequence[int]) -> list[int]:
    """Add ``rows`` to the config's hidden rows; returns the rows that were not hidden before."""
    before = hidden_rows(config)
    added = [int(r) for r in dict.fromkeys(rows) if int(r) not in before]
    config.hidden_entity_rows = sorted(before + added)
    return added
