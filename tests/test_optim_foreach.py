"""The multi-tensor (``torch._foreach_*``) AdamW used on CUDA equals the per-tensor update used
on the CPU (the original's epsilon placement), here on the CPU over a few steps of a tiny model,
with the big-tensor chunking and the batching of the lists exercised."""

from __future__ import annotations

import copy

import torch

from edmem.modeling.model import EDMemModel
from edmem.training import optim
from test_model import el_batch, tiny_config


def _steps(model: EDMemModel, foreach: bool, steps: int = 4) -> EDMemModel:
    model.train()
    opt = optim.AdamW(optim.parameter_groups(model, 0.01), lr=1e-2, eps=1e-6, foreach=foreach)
    assert opt._use_foreach(opt.param_groups[0]) is foreach
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        model(**el_batch(), return_dict=True).loss.backward()
        opt.step()
    return model


def test_foreach_adamw_equals_the_per_tensor_update(monkeypatch) -> None:
    monkeypatch.setattr(optim, "CHUNK", 64)               # split the bigger tensors into slices
    monkeypatch.setattr(optim, "FOREACH_ELEMENTS", 500)   # several multi-tensor batches per group
    torch.manual_seed(0)
    base = EDMemModel(tiny_config(entity_vocab_size=300))
    loop = _steps(copy.deepcopy(base), foreach=False)
    multi = _steps(copy.deepcopy(base), foreach=True)
    worst = 0.0
    for (name, a), (_, b) in zip(loop.named_parameters(), multi.named_parameters()):
        worst = max(worst, float((a - b).detach().abs().max()))
    moved = max(float((a - b).detach().abs().max()) for a, b in zip(base.parameters(), loop.parameters()))
    assert moved > 1e-3            # the steps did change the weights
    assert worst <= 1e-6, worst


def test_foreach_step_moves_the_table_version_so_the_bf16_copy_refreshes() -> None:
    torch.manual_seed(0)
    model = EDMemModel(tiny_config(entity_vocab_size=300))
    before = model.EntityEmbedding.weight._version
    _steps(model, foreach=True, steps=1)
    assert model.EntityEmbedding.weight._version != before


def test_foreach_is_the_default_only_for_cuda_parameters() -> None:
    opt = optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    assert opt._use_foreach(opt.param_groups[0]) is False
