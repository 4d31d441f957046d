"""The memory-saving code paths give the same results as plain autograd (docs/model.md, "Memory at scale")."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from edmem.modeling import memory as memory_mod
from edmem.modeling.layers import dropout
from edmem.modeling.model import EDMemModel
from tests.test_model import el_batch, tiny_config


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_is_f_dropout_bit_for_bit(p):
    x = torch.randn(4, 7, 33, requires_grad=True)
    torch.manual_seed(3)
    a = F.dropout(x, p, True)
    (ga,) = torch.autograd.grad((a * a).sum(), x)
    after_a = torch.rand(5)
    torch.manual_seed(3)
    b = dropout(x, p, True)
    (gb,) = torch.autograd.grad((b * b).sum(), x)
    after_b = torch.rand(5)
    assert torch.equal(a, b) and torch.equal(ga, gb) and torch.equal(after_a, after_b)
    assert dropout(x, p, False) is x and torch.equal(dropout(x, 0.0, True), x)


def _step(model, batch, generic: bool, monkeypatch, entity_mask=None):
    model.zero_grad(set_to_none=True)
    with monkeypatch.context() as m:
        if generic:  # every read through plain autograd (_SoftmaxNLL), the pre-fusion code
            m.setattr(memory_mod, "table_for_training", lambda weight: (weight, None))
            m.setattr("edmem.modeling.model.table_for_training", lambda weight: (weight, None))
        out = model(**batch, entity_mask=entity_mask, output_hidden_states=True)
        out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("masked", [False, True])
def test_fused_training_read_matches_autograd(monkeypatch, masked):
    torch.manual_seed(0)
    model = EDMemModel(tiny_config(final_layer_loss="all", generate_target="entity_linking"))
    model.train()
    entity_mask = None
    if masked:
        entity_mask = torch.zeros(model.config.entity_vocab_size, dtype=torch.long)
        entity_mask[30:40] = 1  # golds of el_batch (11..21, compact ids) stay unmasked
    batch = el_batch()
    ref, ref_grads = _step(model, batch, True, monkeypatch, entity_mask)
    out, grads = _step(model, batch, False, monkeypatch, entity_mask)
    assert torch.equal(out.loss, ref.loss)
    for a, b in zip(out.detail_loss, ref.detail_loss):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    for key in ("encoder_memory", "decoder_memory", "final_el_head"):
        assert torch.equal(out.memory[key].scores, ref.memory[key].scores)
    assert grads.keys() == ref_grads.keys() and "EntityEmbedding.weight" in grads
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-6, atol=1e-9, msg=name)
    assert model.EntityEmbedding.weight.grad is not None
