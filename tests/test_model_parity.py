"""Parity with the ORIGINAL EDMem code on ../shared/parity/edmem-tiny (skipped when absent).

Run with ``-s`` to see the measured errors (they are quoted in docs/model.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edmem.config import EDMemConfig
from edmem.modeling.checkpoints import load_original_state_dict
from edmem.modeling.model import EDMemModel
from edmem.modeling.params import original_decay_groups, original_decay_names

GRAD_NOISE_FLOOR = 1e-10  # tensors whose reference gradient is mathematically 0 (k_proj.bias: ~1e-13 noise)


def _load(parity_dir: Path, name: str):
    return torch.load(parity_dir / name, weights_only=True)


def _config(parity_dir: Path, no_dropout: bool) -> EDMemConfig:
    args = json.loads((parity_dir / "args.json").read_text())
    extra = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0) if no_dropout else {}
    return EDMemConfig.from_bart_config(parity_dir / "tiny-bart_config.json", args, **extra)


def _model(parity_dir: Path, no_dropout: bool) -> EDMemModel:
    torch.manual_seed(0)
    model = EDMemModel(_config(parity_dir, no_dropout))
    load_original_state_dict(model, parity_dir / "model_state_dict.pt")
    return model


def _train_forward(model: EDMemModel, batch: dict, **kw):
    return model(batch["input_ids"], batch["attention_mask"], batch["labels"], batch["decoder_input_ids"],
                 batch["decoder_attention_mask"], batch["input_entity_link"], batch["output_entity_link"],
                 entity_mask=None, return_dict=True, **kw)


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def test_config_from_original_ingredients(parity_dir):
    cfg = _config(parity_dir, no_dropout=False)
    assert (cfg.vocab_size, cfg.d_model, cfg.num_lower_layers, cfg.num_upper_layers) == (2002, 64, 1, 2)
    assert (cfg.entity_vocab_size, cfg.entity_embed_size, cfg.inference_nearest_k_entity) == (1000, 32, 10)
    assert (cfg.entity_start_token_id, cfg.entity_end_token_id) == (2000, 2001)
    assert cfg.generate_target == "entity_linking" and cfg.lower_decoder_attn == "upper_encoder"
    assert cfg.entity_token_weight == 1.0 and cfg.dropout == 0.1 and cfg.attention_dropout == 0.1


def test_keys_shapes_and_tied_groups(parity_dir):
    model = EDMemModel(_config(parity_dir, no_dropout=False))
    ref = json.loads((parity_dir / "state_dict_keys_shapes.json").read_text())
    ours = model.state_dict()
    assert list(ours) == list(ref)  # same keys, same order
    assert all(list(ours[k].shape) == v["shape"] for k, v in ref.items())
    for group in json.loads((parity_dir / "tied_parameters.json").read_text()):
        ptrs = {ours[k].data_ptr() for k in group}
        assert len(ptrs) == 1, group
    grads = _load(parity_dir, "train_grads.pt")
    assert [n for n, _ in model.named_parameters()] == list(grads)


def test_official_layout_checkpoints_load_strictly(parity_dir):
    model = EDMemModel(_config(parity_dir, no_dropout=False))
    report = load_original_state_dict(model, parity_dir / "pretrain_ckpt_pytorch_model.bin")
    assert report.ok and report.filled == ["LMLoss.weight"]  # filled from entity_token_weight=1.0
    full = _load(parity_dir, "model_state_dict.pt")
    ours = model.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in full.items())
    assert load_original_state_dict(model, full).ok


def test_train_mode_losses_intermediates_and_gradients(parity_dir):
    model = _model(parity_dir, no_dropout=True).train()
    batch = _load(parity_dir, "batch_train.pt")
    out = _train_forward(model, batch, output_hidden_states=True)
    ref = json.loads((parity_dir / "train_outputs.json").read_text())

    assert out.logits is None  # EL mode: LM logits are not computed
    assert out.topk_entity is None
    loss_err = abs(out.loss.item() - ref["loss"])
    detail_err = max(abs(getattr(out.detail_loss, k).item() - v) for k, v in ref["detail_loss"].items())
    assert loss_err < 1e-6 and detail_err < 1e-6

    inter = _load(parity_dir, "train_intermediates.pt")
    hidden_err = max(_max_abs(v, inter[k]) for k, v in out.hidden_states.items())
    mem_err = 0.0
    for name, access in out.memory.items():
        mem_err = max(mem_err, _max_abs(access.query, inter[name]["query"]), _max_abs(access.scores, inter[name]["scores"]))
    assert torch.equal(out.memory["encoder_memory"].positions, inter["encoder_mention_positions"])
    assert torch.equal(out.memory["decoder_memory"].positions, inter["decoder_mention_positions"])
    assert hidden_err < 1e-5 and mem_err < 1e-5

    # Logits on request match the original's (computed-but-unused) logits.
    with torch.no_grad():
        logits = _train_forward(model, batch, output_logits=True).logits
    logits_err = _max_abs(logits, inter["logits"])
    assert logits_err < 1e-5

    out.loss.backward()
    grads = _load(parity_dir, "train_grads.pt")
    grad_rel = 0.0
    for name, param in model.named_parameters():
        ref_g = grads[name]
        scale = ref_g.abs().max().item()
        diff = _max_abs(param.grad, ref_g)
        if scale < GRAD_NOISE_FLOOR:
            assert diff < GRAD_NOISE_FLOOR, name
        else:
            grad_rel = max(grad_rel, diff / scale)
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters())).item()
    assert grad_rel < 1e-5
    assert abs(norm - ref["grad_global_norm"]) < 1e-5
    print(f"\n[parity train] loss abs err {loss_err:.2e}, detail {detail_err:.2e}, hidden {hidden_err:.2e}, "
          f"memory query/scores {mem_err:.2e}, logits {logits_err:.2e}, grad max rel {grad_rel:.2e}, "
          f"grad norm {norm:.7f} (ref {ref['grad_global_norm']:.7f})")


def test_eval_mode_topk(parity_dir):
    model = _model(parity_dir, no_dropout=False).eval()
    batch = _load(parity_dir, "batch_eval.pt")
    with torch.no_grad():
        out = model(batch["input_ids"], batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"],
                    decoder_attention_mask=batch["decoder_attention_mask"], return_dict=True,
                    output_hidden_states=True)
    ref = json.loads((parity_dir / "eval_outputs.json").read_text())
    for i, name in enumerate(("encoder", "decoder", "final")):
        assert out.topk_entity[i].tolist() == ref["topk_entity"][name], name
        assert out.topk_entity[i].dtype == torch.int64
    assert out.topk_entity[2][:, 0].tolist() == ref["final_top1_entity"]
    ref_pt = _load(parity_dir, "eval_outputs.pt")
    score_err = max(_max_abs(s, ref_pt[n]["topk_values"]) for s, n in
                    zip(out.topk_scores, ("encoder_memory", "decoder_memory", "final_el_head")))
    hidden_err = max(_max_abs(v, ref_pt[k]) for k, v in out.hidden_states.items())
    assert score_err < 1e-5 and hidden_err < 1e-5
    print(f"\n[parity eval] top-k ids equal; top-k scores max abs err {score_err:.2e}, hidden {hidden_err:.2e}")


def test_three_optimizer_steps(parity_dir):
    """The original recipe. Note: torch.optim.AdamW does NOT reproduce it (epsilon is added after
    bias correction there; with clipped gradients ~1e-7 that moves weights by up to ~lr), so the
    original update rule (edmem.training.optim.AdamW = transformers.AdamW(correct_bias=True)) is used."""
    from transformers import get_linear_schedule_with_warmup

    from edmem.training.optim import AdamW

    ref = json.loads((parity_dir / "optim_steps.json").read_text())
    model = _model(parity_dir, no_dropout=True).train()
    decay, no_decay = original_decay_names(model)
    assert decay == ref["decay_param_names"] and no_decay == ref["no_decay_param_names"]
    optimizer = AdamW(original_decay_groups(model, ref["weight_decay"]), lr=ref["lr"], eps=ref["adam_epsilon"])
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=1, num_training_steps=25)
    batch = _load(parity_dir, "batch_train.pt")
    loss_err = lr_err = norm_err = 0.0
    for step in ref["steps"]:
        lr_err = max(lr_err, abs(scheduler.get_last_lr()[0] - step["lr_used"]))
        out = _train_forward(model, batch)
        loss_err = max(loss_err, abs(out.loss.item() - step["loss_before_step"]),
                       max(abs(a - b) for a, b in zip(out.detail_loss.tolist(), step["detail_loss"])))
        out.loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), ref["max_grad_norm"]).item()
        norm_err = max(norm_err, abs(norm - step["grad_norm_before_clip"]))
        optimizer.step()
        scheduler.step()
        model.zero_grad()
    with torch.no_grad():
        final = _train_forward(model, batch).loss.item()
    loss_err = max(loss_err, abs(final - ref["loss_after_3_steps"]))
    weights = _load(parity_dir, "optim_state_dict_after_3_steps.pt")
    ours = model.state_dict()
    weight_err = max(_max_abs(ours[k], v) for k, v in weights.items())
    assert loss_err < 1e-5 and norm_err < 1e-5 and lr_err < 1e-12
    assert weight_err < 1e-5
    print(f"\n[parity optim] 3 AdamW steps: loss max abs err {loss_err:.2e}, grad-norm {norm_err:.2e}, "
          f"weights max abs err {weight_err:.2e}")
