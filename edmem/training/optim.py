"""Optimiser: the original's AdamW update with corrected weight-decay groups (docs/training.md, docs/quirks.md Q7).

Decay groups. The original excluded parameters whose *name* contains ``bias`` or
``layer_norm.weight``, which misses ``layernorm_embedding.weight`` and the two memory LayerNorm
weights, and decays the token embedding and the 256M-parameter entity table every step. Here the
rule is by *module type*, so it cannot be fooled by names:

* no decay: every bias; every LayerNorm parameter; every embedding table — ``nn.Embedding``
  (token embedding, both position tables) and the entity table (``EntityEmbedding``).
* decay: every other weight (attention / FFN / memory projections).

Why the embedding tables: weight decay on a lookup table is an L2 prior that pulls rows towards 0
regardless of how often they are used; with the entity memory every row receives a dense softmax
gradient, so rarely-linked entities shrink the most relative to their updates, biasing linking
against the long tail. Projections are kept decayed as in the original.

Update rule. ``transformers.AdamW`` (which the original used) no longer exists in transformers
4.57, and ``torch.optim.AdamW`` differs in where epsilon is added and when decay is applied, so
:class:`AdamW` reproduces the original's step exactly (see ``tests/test_training_optim.py``).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


def _is_entity_table(name: str) -> bool:
    return name.endswith("EntityEmbedding.weight") or name.endswith("entity_embedding.weight")


def no_decay_parameter_ids(model: nn.Module) -> set[int]:
    """ids of parameters that must not be decayed (biases, LayerNorms, embedding tables)."""
    skip: set[int] = set()
    for module_name, module in model.named_modules(remove_duplicate=False):
        for pname, param in module.named_parameters(recurse=False, remove_duplicate=False):
            full = f"{module_name}.{pname}" if module_name else pname
            if (pname == "bias" or pname.endswith("_bias")
                    or isinstance(module, (nn.LayerNorm, nn.Embedding))
                    or _is_entity_table(full)):
                skip.add(id(param))
    return skip


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups over the model's unique trainable parameters (tied ones appear once),
    each with a ``names`` list for logging and tests."""
    skip = no_decay_parameter_ids(model)
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if id(param) in skip else decay).append((name, param))
    return [
        {"params": [p for _, p in decay], "weight_decay": weight_decay,
         "names": [n for n, _ in decay]},
        {"params": [p for _, p in no_decay], "weight_decay": 0.0,
         "names": [n for n, _ in no_decay]},
    ]


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay, exactly the update of the original's
    ``transformers.AdamW(correct_bias=True)``:

    ``m ← β1·m + (1−β1)·g``; ``v ← β2·v + (1−β2)·g²``;
    ``p ← p − lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)``; then ``p ← p − lr·wd·p``.

    ``foreach``: the same update as multi-tensor ``torch._foreach_*`` kernels (a few launches per
    group instead of ~5 per tensor: the GPU path, docs/training.md "Optimizer on the GPU");
    None = on when the parameters live on CUDA. On the CPU the per-tensor loop stays the default,
    so CPU parity is bit-exact by construction.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, foreach: bool | None = None):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError("invalid AdamW hyper-parameters")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})
        self.foreach = foreach

    def _use_foreach(self, group: dict) -> bool:
        if self.foreach is not None:
            return self.foreach
        return any(p.is_cuda for p in group["params"])

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            if self._use_foreach(group):
                self._foreach_group(group)
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                step_size = lr * math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"])
                for chunk in _chunks(p, grad, state["exp_avg"], state["exp_avg_sq"]):
                    _update(*chunk, beta1, beta2, eps, step_size, lr * wd)
        return loss

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        return state

    def _foreach_group(self, group: dict) -> None:
        """:func:`_update` for every parameter of ``group`` with multi-tensor kernels, in batches
        of at most :data:`FOREACH_ELEMENTS` (bounds the temporary ``denom``)."""
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        slices: list[tuple[torch.Tensor, ...]] = []
        sizes: list[float] = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("AdamW does not support sparse gradients")
            state = self._state(p)
            state["step"] += 1
            step_size = lr * math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"])
            for chunk in _chunks(p, p.grad, state["exp_avg"], state["exp_avg_sq"]):
                slices.append(chunk)
                sizes.append(-step_size)
        for batch in _batches(slices, sizes):
            params, grads, exp_avgs, exp_avg_sqs, neg_sizes = batch
            _foreach_update(params, grads, exp_avgs, exp_avg_sqs, beta1, beta2, eps, neg_sizes, lr * wd)


CHUNK = 1 << 22  # elements; bounds the temporary ``denom`` of a big tensor (entity table) to 16 MB


def _chunks(*tensors: torch.Tensor):
    """Matching flat slices of same-shaped contiguous tensors (one slice for small tensors).
    The update is elementwise, so chunking changes nothing but the size of the temporaries."""
    if tensors[0].numel() <= CHUNK or not all(t.is_contiguous() for t in tensors):
        yield tensors
        return
    yield from zip(*(t.view(-1).split(CHUNK) for t in tensors))


FOREACH_ELEMENTS = 1 << 26  # elements per multi-tensor batch (256 MB of fp32 ``denom``)


def _batches(slices: list[tuple[torch.Tensor, ...]], sizes: list[float]):
    """``slices`` (p, g, m, v) regrouped into lists per role, ≤ FOREACH_ELEMENTS per batch."""
    start, total = 0, 0
    for i, chunk in enumerate(slices):
        total += chunk[0].numel()
        if total >= FOREACH_ELEMENTS or i == len(slices) - 1:
            part = slices[start:i + 1]
            yield ([c[0] for c in part], [c[1] for c in part], [c[2] for c in part],
                   [c[3] for c in part], sizes[start:i + 1])
            start, total = i + 1, 0


def _foreach_update(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                    exp_avg_sqs: list[torch.Tensor], beta1: float, beta2: float, eps: float,
                    neg_step_sizes: list[float], decay: float) -> None:
    """:func:`_update`, operation for operation, on lists of tensors (same epsilon placement)."""
    torch._foreach_mul_(exp_avgs, beta1)
    torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, neg_step_sizes)
    del denom
    if decay > 0.0:
        torch._foreach_add_(params, params, alpha=-decay)


def _update(p: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
            beta1: float, beta2: float, eps: float, step_size: float, decay: float) -> None:
    exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    denom = exp_avg_sq.sqrt().add_(eps)
    p.addcdiv_(exp_avg, denom, value=-step_size)
    if decay > 0.0:
        p.add_(p, alpha=-decay)


def build_optimizer(model: nn.Module, learning_rate: float, weight_decay: float,
                    adam_epsilon: float) -> AdamW:
    """The two-group AdamW; multi-tensor kernels when the model is on CUDA (``foreach=None``)."""
    groups = parameter_groups(model, weight_decay)
    return AdamW(groups, lr=learning_rate, eps=adam_epsilon)
