"""Parameter grouping helpers for optimisers."""

from __future__ import annotations

from torch import nn

#: The original's weight-decay exclusion, matched by SUBSTRING of the parameter name (docs/quirks.md Q7).
ORIGINAL_NO_DECAY = ("bias", "layer_norm.weight")


def original_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The original ``finetune_QA`` AdamW groups, quirk (docs/quirks.md Q7) included.

    Substring matching misses ``layernorm_embedding.weight`` and the two memory LayerNorm
    weights, so those (and the entity table) ARE decayed. Use only to reproduce the original;
    the training package defines the corrected groups. Tied parameters appear once (first name).
    """
    named = list(model.named_parameters())
    decay = [p for n, p in named if not any(nd in n for nd in ORIGINAL_NO_DECAY)]
    no_decay = [p for n, p in named if any(nd in n for nd in ORIGINAL_NO_DECAY)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def original_decay_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names in the decay / no-decay groups of :func:`original_decay_groups`."""
    names = [n for n, _ in model.named_parameters()]
    return ([n for n in names if not any(nd in n for nd in ORIGINAL_NO_DECAY)],
            [n for n in names if any(nd in n for nd in ORIGINAL_NO_DECAY)])
