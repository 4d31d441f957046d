"""Self-contained model tests on tiny random configs (no ../shared needed)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from edmem.config import EDMemConfig
from edmem.modeling.memory import _SoftmaxNLL, chunked_topk, mean_nll
from edmem.modeling.model import EDMemModel, shift_right
from edmem.modeling.outputs import DetailLoss

ES, EE, PAD = 30, 31, 1  # <E_s>, <E_e>, pad in a 32-token vocabulary
N, K = 50, 5


def tiny_config(**kw) -> EDMemConfig:
    base = dict(vocab_size=32, d_model=16, encoder_layers=4, decoder_layers=4, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=40,
                num_lower_layers=2, num_upper_layers=2, entity_vocab_size=N, entity_embed_size=8,
                inference_nearest_k_entity=K, entity_start_token_id=ES, entity_end_token_id=EE,
                lower_decoder_attn="upper_encoder", dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    base.update(kw)
    return EDMemConfig(**base)


def el_batch() -> dict[str, torch.Tensor]:
    """Two questions, 2 + 1 mentions; decoder = shifted question + final <E_s>, left-padded."""
    enc = torch.tensor([[0, 0, ES, 5, EE, 6, ES, 7, 8, EE, 2],
                        [0, 0, 9, ES, 10, EE, 2, PAD, PAD, PAD, PAD]])
    enc_link = torch.zeros_like(enc)
    enc_link[0, 2], enc_link[0, 6], enc_link[1, 3] = 11, 12, 13
    dec = torch.tensor([[2, 0, 0, ES, 5, EE, 6, ES, 7, 8, EE, ES],
                        [PAD, PAD, PAD, PAD, 2, 0, 0, 9, ES, 10, EE, ES]])
    dec_link = torch.zeros_like(dec)
    dec_link[0, 3], dec_link[0, 7], dec_link[0, 11] = 11, 12, 20
    dec_link[1, 8], dec_link[1, 11] = 13, 21
    labels = torch.where(dec == PAD, torch.full_like(dec, -100), dec)
    return dict(input_ids=enc, attention_mask=(enc != PAD).long(), labels=labels, decoder_input_ids=dec,
                decoder_attention_mask=(dec != PAD).long(), input_entity_link=enc_link,
                output_entity_link=dec_link)


@pytest.fixture
def model() -> EDMemModel:
    torch.manual_seed(0)
    return EDMemModel(tiny_config())


def test_memory_output_only_at_entity_start_rows(model):
    batch = el_batch()
    model.train()
    out = model(**batch, output_hidden_states=True)
    for ids, name in ((batch["input_ids"], "encoder_memory_output"), (batch["decoder_input_ids"], "decoder_memory_output")):
        mem = out.hidden_states[name]
        nonzero_rows = mem.abs().sum(-1) != 0
        assert torch.equal(nonzero_rows, ids == ES)
    # The post-memory LayerNorm acts on every position [Q22]: non-mention rows change too.
    h = out.hidden_states
    assert torch.allclose(h["upper_encoder_input"], model.EncoderMemoryLayerNorm(h["lower_encoder_output"] + h["encoder_memory_output"]))


def test_training_outputs_and_el_loss_is_mean_of_three(model):
    model.train()
    out = model(**el_batch())
    d = out.detail_loss
    assert out.topk_entity is None and out.topk_scores is None and out.logits is None
    assert float(d.lm_loss) == 0.0
    assert torch.allclose(out.loss, (d.encoder_elloss + d.decoder_elloss + d.final_elloss) / 3)
    assert torch.equal(out.loss, d.el_loss)
    out.loss.backward()
    assert model.EntityEmbedding.weight.grad is not None
    assert model.LMHead.weight.grad.abs().sum() > 0  # via the (tied) input embeddings only


def test_apply_el_loss_final_and_final_layer_loss_all():
    torch.manual_seed(0)
    m = EDMemModel(tiny_config(apply_el_loss="final")).train()
    out = m(**el_batch())
    assert torch.equal(out.loss, out.detail_loss.final_elloss)
    m = EDMemModel(tiny_config(final_layer_loss="all"))
    m.train()
    assert not m.el_head_last_only()
    out = m(**el_batch(), output_hidden_states=True)
    assert out.memory["final_el_head"].positions.shape[0] == 5  # every decoder <E_s>
    m.eval()
    assert m.el_head_last_only()  # [Q25]: evaluated on the last position only


def test_eval_topk_shapes_and_types(model):
    batch = el_batch()
    model.eval()
    with torch.no_grad():
        out = model(batch["input_ids"], batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"],
                    decoder_attention_mask=batch["decoder_attention_mask"])
    assert isinstance(out.topk_entity, tuple) and len(out.topk_entity) == 3
    enc, dec, fin = out.topk_entity
    assert enc.shape == (3, K) and dec.shape == (5, K) and fin.shape == (2, K)
    assert all(t.dtype == torch.int64 for t in out.topk_entity)
    assert out.loss is None and out.logits is None
    s = out.topk_scores[2]
    assert torch.all(s[:, :-1] >= s[:, 1:])
    # final head top-k = top-k of the full score vector at the last position
    full = model.EntityLinkHead.InputLayer(out.decoder_last_hidden_state[:, -1]) @ model.EntityEmbedding.weight
    assert torch.equal(fin, full.topk(K, dim=1).indices)


def test_eval_top1_ids_independent_of_chunking(model):
    batch = el_batch()
    model.eval()
    with torch.no_grad():
        ref = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids",
                                              "decoder_attention_mask")})
        for reader in model.memory_readers():
            reader.chunk_size = 7
        chunked = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids",
                                                  "decoder_attention_mask")})
    for a, b in zip(ref.topk_entity, chunked.topk_entity):
        assert torch.equal(a, b)
    assert torch.allclose(ref.decoder_last_hidden_state, chunked.decoder_last_hidden_state, atol=1e-6)


def test_logits_only_when_asked_in_el_mode(model, monkeypatch):
    calls = []
    monkeypatch.setattr(model.LMHead, "forward", lambda x: calls.append(1) or F.linear(x, model.LMHead.weight))
    model.train()
    assert model(**el_batch()).logits is None and not calls
    out = model(**el_batch(), output_logits=True)
    assert calls and out.logits.shape == (2, 12, 32)


def test_lm_plus_el_mode_shifts_labels(model):
    torch.manual_seed(0)
    m = EDMemModel(tiny_config(generate_target="pretraining", elloss_weight=0.5, entity_token_weight=2.0)).train()
    batch = el_batch()
    # pretraining-style: labels = clean encoder tokens, output link aligned with labels (unshifted)
    labels = batch["input_ids"].masked_fill(batch["input_ids"] == PAD, -100)
    out = m(batch["input_ids"], batch["attention_mask"], labels=labels,
            input_entity_link=batch["input_entity_link"], output_entity_link=batch["input_entity_link"],
            output_hidden_states=True)
    assert out.logits.shape == (2, 11, 32)
    dec_ids = shift_right(labels, PAD, 2)
    dec_read = out.memory["decoder_memory"]
    assert torch.equal(dec_read.positions, torch.nonzero(dec_ids == ES))
    weight = m.LMLoss.weight
    assert weight[ES] == 2.0 and weight[EE] == 2.0 and weight[:ES].eq(1).all()
    lm = F.cross_entropy(out.logits.reshape(-1, 32), labels.reshape(-1), weight=weight, ignore_index=-100)
    d = out.detail_loss
    assert torch.allclose(d.lm_loss, lm)
    assert torch.allclose(out.loss, lm + 0.5 * (d.encoder_elloss + d.decoder_elloss + d.final_elloss) / 3)
    # EL head reads every decoder <E_s> in non-EL modes
    assert out.memory["final_el_head"].positions.shape == dec_read.positions.shape
    m.eval()
    with torch.no_grad():
        ev = m(batch["input_ids"], batch["attention_mask"], labels=labels)
    assert torch.allclose(ev.loss, ev.detail_loss.lm_loss) and ev.topk_entity is not None


def test_all_nil_golds_give_zero_not_nan(model):
    batch = el_batch()
    batch["input_entity_link"].zero_()
    batch["output_entity_link"].zero_()
    model.train()
    out = model(**batch)
    assert out.loss.item() == 0.0 and not torch.isnan(out.loss)
    out.loss.backward()  # still connected to the graph


def test_log_softmax_not_log_of_softmax():
    scores = torch.tensor([[0.0, 200.0, -200.0]])
    probs, nll = _SoftmaxNLL.apply(scores, torch.tensor([2]))
    assert torch.isfinite(nll).all() and abs(nll.item() - 400.0) < 1e-3  # log(softmax) would be inf [Q9]


def test_fused_softmax_nll_gradient_matches_autograd():
    torch.manual_seed(0)
    scores = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    gold = torch.tensor([0, 3, 8, 2])
    table = torch.randn(9, 3, dtype=torch.float64)
    probs, nll = _SoftmaxNLL.apply(scores, gold)
    loss = mean_nll(nll, gold) + (probs @ table).pow(2).sum()
    (g1,) = torch.autograd.grad(loss, scores)
    ref_probs = scores.softmax(1)
    ref_nll = -scores.log_softmax(1).gather(1, gold[:, None]).squeeze(1)
    ref = mean_nll(ref_nll, gold) + (ref_probs @ table).pow(2).sum()
    (g2,) = torch.autograd.grad(ref, scores)
    assert torch.allclose(g1, g2, atol=1e-12)
    assert torch.allclose(mean_nll(nll, gold), F.nll_loss(scores.log_softmax(1), gold, ignore_index=0))


def test_entity_mask_train_and_eval(model):
    batch = el_batch()
    mask = torch.zeros(N, dtype=torch.long)
    mask[[1, 2, 3]] = 1
    model.eval()
    with torch.no_grad():
        out = model(batch["input_ids"], batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"],
                    decoder_attention_mask=batch["decoder_attention_mask"], entity_mask=mask)
    assert not any(torch.isin(t, torch.tensor([1, 2, 3])).any() for t in out.topk_entity)
    model.train()
    # gold ids are compact (re-indexed over unmasked entities, spec §4.4): compact 11 == original 14
    out = model(**batch, entity_mask=mask, output_hidden_states=True)
    read = out.memory["encoder_memory"]
    scores = read.scores
    assert (scores[:, 1:4] == torch.finfo(scores.dtype).min).all()
    keep = torch.nonzero(mask == 0).squeeze(1)
    gold = torch.tensor([11, 12, 13])
    ref = F.nll_loss(scores[:, keep].log_softmax(1), gold, ignore_index=0)
    assert torch.allclose(out.detail_loss.encoder_elloss, ref)


def test_chunked_topk_equals_full_topk():
    torch.manual_seed(1)
    q, table = torch.randn(6, 4), torch.randn(4, 103)
    vals, ids = chunked_topk(q, table, 7, chunk_size=10)
    ref = (q @ table).topk(7, dim=1)
    assert torch.equal(ids, ref.indices) and torch.allclose(vals, ref.values)


def test_last_position_must_be_entity_start(model):
    batch = el_batch()
    batch["decoder_input_ids"][0, -1] = 5
    model.train()
    with pytest.raises(ValueError, match="last decoder position"):
        model(**batch)


def test_return_dict_false_gives_tuple(model):
    model.train()
    out = model(**el_batch(), return_dict=False)
    assert isinstance(out, tuple) and torch.is_tensor(out[0]) and isinstance(out[1], DetailLoss)


def test_detail_loss_arithmetic_and_str():
    a = DetailLoss(torch.tensor(0.0), torch.tensor(3.0), torch.tensor(1.0), torch.tensor(2.0), torch.tensor(6.0))
    b = (a + a) / 2 - a
    assert b.tolist() == [0.0] * 5
    assert (a / 3).tolist() == pytest.approx([0.0, 1.0, 1 / 3, 2 / 3, 2.0])
    assert str(a).startswith("lm_loss: tensor(0.), el_loss: tensor(3.), encoder_elloss:")
    assert sum([a, a]).tolist() == [0.0, 6.0, 2.0, 4.0, 12.0]
    assert DetailLoss(None, 1.0).tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    x = torch.tensor(2.0, requires_grad=True)
    assert not DetailLoss(x * 1).detach().lm_loss.requires_grad
    a.clear()
    assert a.tolist() == [0.0] * 5


def test_autocast_bf16_runs():
    torch.manual_seed(0)
    m = EDMemModel(tiny_config()).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(**el_batch())
    assert torch.isfinite(out.loss)
    out.loss.backward()
    m.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ev = m(**{k: v for k, v in el_batch().items() if k in ("input_ids", "attention_mask", "decoder_input_ids",
                                                                 "decoder_attention_mask")})
    assert ev.topk_entity[2].shape == (2, K)


def test_config_validation():
    with pytest.raises(ValueError, match="lower_decoder_attn"):
        tiny_config(lower_decoder_attn="middle")
    with pytest.raises(ValueError, match="num_upper_layers"):
        tiny_config(num_upper_layers=0)


def test_from_scratch_init():
    torch.manual_seed(0)
    m = EDMemModel(tiny_config(entity_vocab_size=4000, entity_embed_size=16))
    assert abs(m.EntityEmbedding.weight.std().item() - 0.02) < 2e-3
    assert m.EncoderEntityMemory.InputLayer.linear.bias.abs().sum() == 0
    default = EDMemModel(tiny_config(memory_projection_init="pytorch_default"))
    assert default.EncoderEntityMemory.InputLayer.linear.bias.abs().sum() > 0  # nn.Linear default init


def test_batch_without_question_mentions(model):
    """No <E_s> in the encoder input (a question with no linked mention): empty reads, no NaN."""
    enc = torch.tensor([[0, 0, 5, 6, 7, 2], [0, 0, 9, 10, 2, PAD]])
    dec = torch.tensor([[2, 0, 0, 5, 6, 7, ES], [PAD, 2, 0, 0, 9, 10, ES]])
    link = torch.zeros_like(dec)
    link[:, -1] = torch.tensor([20, 21])
    model.train()
    out = model(enc, (enc != PAD).long(), None, dec, (dec != PAD).long(), torch.zeros_like(enc), link)
    assert out.detail_loss.encoder_elloss.item() == 0.0 and torch.isfinite(out.loss)
    out.loss.backward()
    model.eval()
    with torch.no_grad():
        ev = model(enc, (enc != PAD).long(), decoder_input_ids=dec, decoder_attention_mask=(dec != PAD).long())
    assert ev.topk_entity[0].shape == (0, K) and ev.topk_entity[2].shape == (2, K)


@pytest.mark.parametrize("training", [True, False])
def test_memory_cue_read_returns_the_gold_row_and_trains_it(model, training):
    """Memory-cue pretraining (docs/pretraining.md): where ``input_entity_cue`` is 1 the encoder read
    is the gold row itself (through the output layer); elsewhere the soft read is unchanged."""
    batch = el_batch()
    cue = torch.zeros_like(batch["input_ids"])
    cue[0, 6] = 1  # the second mention of question 0, gold row 12
    model.train(training)
    plain = model(**batch, output_hidden_states=True).hidden_states["encoder_memory_output"]
    out = model(**batch, input_entity_cue=cue, output_hidden_states=True)
    mem = out.hidden_states["encoder_memory_output"]
    row = model.EntityEmbedding.weight[:, 12]
    expected = model.EncoderEntityMemory.OutputLayer(row)
    assert torch.allclose(mem[0, 6], expected, atol=1e-6)
    assert not torch.allclose(plain[0, 6], expected, atol=1e-3)
    others = torch.ones_like(cue, dtype=torch.bool)
    others[0, 6] = False
    assert torch.allclose(mem[others], plain[others])
    if training:
        mem[0, 6].sum().backward()
        grad = model.EntityEmbedding.weight.grad
        # the row reaches position (0, 6) only through the cue, so its column gets gradient there
        assert grad[:, 12].abs().sum() > 0


def test_memory_cue_on_a_nil_mention_is_an_error(model):
    batch = el_batch()
    cue = torch.zeros_like(batch["input_ids"])
    cue[0, 0] = 1  # not a mention: ignored
    cue[1, 3] = 1
    batch["input_entity_link"][1, 3] = 0
    model.train()
    with pytest.raises(ValueError, match="NIL"):
        model(**batch, input_entity_cue=cue)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients_with_dropout():
    """Recomputed layers replay the same dropout masks: loss and every gradient are equal; the
    layers' activations are not kept (the checkpoint function runs once per layer and forward)."""
    torch.manual_seed(0)
    model = EDMemModel(tiny_config(dropout=0.2, attention_dropout=0.1, activation_dropout=0.1)).train()

    def loss_and_grads() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        loss = model(**el_batch()).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_loss, plain = loss_and_grads()
    model.gradient_checkpointing_enable()
    calls = []
    stacks = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
    assert len(stacks) == 4                       # lower / upper encoder, lower / upper decoder
    assert all(s._gradient_checkpointing_func.keywords == {"use_reentrant": False} for s in stacks)
    for stack in stacks:
        inner = stack._gradient_checkpointing_func
        stack._gradient_checkpointing_func = lambda fn, *a, _inner=inner, **kw: calls.append(1) or _inner(fn, *a, **kw)
    ckpt_loss, ckpt = loss_and_grads()
    assert len(calls) == 8                        # every layer of the 2+2 / 2+2 stacks, once
    assert torch.equal(plain_loss, ckpt_loss)
    assert plain.keys() == ckpt.keys()
    for name in plain:
        assert torch.equal(plain[name], ckpt[name]), name
    model.eval()
    with torch.no_grad():                         # inference never checkpoints
        model(**{k: el_batch()[k] for k in ("input_ids", "attention_mask", "decoder_input_ids",
                                              "decoder_attention_mask")})
    assert len(calls) == 8
