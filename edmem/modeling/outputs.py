"""Output containers: `DetailLoss` (the original's five logged losses) and `EDMemOutput`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from transformers.utils import ModelOutput

from edmem.constants import DETAIL_LOSS_NAMES



def _as_tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.tensor(float(value or 0.0))


@dataclass
class DetailLoss:
    """Five scalar tensors, in the original's order; missing ones are 0.

    Supports ``a + b``, ``a - b`` (DetailLoss or number), ``a / n``, ``detach()``, ``mean()`` (over
    a per-replica dimension), ``clear()``, ``tolist()``, ``tuple(d)``, and ``str(d)`` formatted like
    the original log lines (``"lm_loss: tensor(…), el_loss: …"``).
    """

    lm_loss: torch.Tensor | float | None = None
    el_loss: torch.Tensor | float | None = None
    encoder_elloss: torch.Tensor | float | None = None
    decoder_elloss: torch.Tensor | float | None = None
    final_elloss: torch.Tensor | float | None = None

    def __post_init__(self) -> None:
        for name in DETAIL_LOSS_NAMES:
            setattr(self, name, _as_tensor(getattr(self, name)))

    def _values(self) -> list[torch.Tensor]:
        return [getattr(self, name) for name in DETAIL_LOSS_NAMES]

    def _combine(self, other: Any, op) -> "DetailLoss":
        others = other._values() if isinstance(other, DetailLoss) else [other] * len(DETAIL_LOSS_NAMES)
        return DetailLoss(*(op(a, b) for a, b in zip(self._values(), others)))

    def __add__(self, other: Any) -> "DetailLoss":
        return self._combine(other, lambda a, b: a + b)

    __radd__ = __add__  # sum([...]) starts from 0

    def __sub__(self, other: Any) -> "DetailLoss":
        return self._combine(other, lambda a, b: a - b)

    def __truediv__(self, number: float) -> "DetailLoss":
        return DetailLoss(*(v / number for v in self._values()))

    def detach(self) -> "DetailLoss":
        return DetailLoss(*(v.detach() for v in self._values()))

    def mean(self) -> "DetailLoss":
        return DetailLoss(*(v.float().mean() for v in self._values()))

    def clear(self) -> None:
        for name in DETAIL_LOSS_NAMES:
            setattr(self, name, torch.tensor(0.0))

    def tolist(self) -> list[float]:
        return [float(v.detach().float().mean()) for v in self._values()]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self._values())

    def __str__(self) -> str:
        return ", ".join(f"{name}: {str(getattr(self, name))}" for name in DETAIL_LOSS_NAMES)


@dataclass
class EDMemOutput(ModelOutput):
    """What :meth:`EDMemModel.forward` returns.

    * ``loss``: total loss (None when nothing is computable, e.g. EL inference).
    * ``detail_loss``: :class:`DetailLoss`.
    * ``logits``: LM logits (B, Td, V), only when computed (non-EL modes, or ``output_logits=True``).
    * ``topk_entity``: None in training; in eval ``(encoder, decoder, final)`` int64 (M, K) memory
      rows, best first; ``topk_entity[2][:, 0]`` is the predicted answer row.
    * ``topk_scores``: the matching raw dot-product scores (same structure).
    * ``encoder_last_hidden_state`` (B, Te, d), ``decoder_last_hidden_state`` (B, Td, d).
    * ``hidden_states``: with ``output_hidden_states=True``, a dict with ``lower_encoder_output``,
      ``encoder_memory_output``, ``upper_encoder_input``, ``upper_encoder_output``,
      ``lower_decoder_output``, ``decoder_memory_output``, ``upper_decoder_input``,
      ``upper_decoder_output``.
    * ``memory``: with ``output_hidden_states=True``, ``{"encoder_memory", "decoder_memory",
      "final_el_head"}`` → :class:`edmem.modeling.memory.MemoryAccess` (positions, query, scores…).
    """

    loss: torch.Tensor | None = None
    detail_loss: DetailLoss | None = None
    logits: torch.Tensor | None = None
    topk_entity: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    topk_scores: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    decoder_last_hidden_state: torch.Tensor | None = None
    hidden_states: dict[str, torch.Tensor] | None = None
    memory: dict[str, Any] | None = None


__all__ = ["DetailLoss", "EDMemOutput", "DETAIL_LOSS_NAMES"]
