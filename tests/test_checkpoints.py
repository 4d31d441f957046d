"""Checkpoint round trips, tied weights, strict-load errors, BART initialisation (tiny random models)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel, BartConfig, BartForConditionalGeneration

from edmem.config import EDMemConfig
from edmem.errors import CheckpointError
from edmem.modeling.checkpoints import (init_from_bart, load_original_state_dict, read_state_dict,
                                        save_checkpoint)
from edmem.modeling.model import ENTITY_TABLE_ALIASES, TOKEN_EMBEDDING_ALIASES, EDMemModel
from test_model import el_batch, tiny_config


def assert_tied(model: EDMemModel) -> None:
    sd = model.state_dict()
    assert {sd[k].data_ptr() for k in ("shared.weight", *TOKEN_EMBEDDING_ALIASES)} == {model.shared.weight.data_ptr()}
    assert {sd[k].data_ptr() for k in ("EntityEmbedding.weight", *ENTITY_TABLE_ALIASES)} == \
        {model.EntityEmbedding.weight.data_ptr()}
    assert model.LMHead.weight is model.shared.weight
    assert model.LowerEncoder.embed_tokens is model.shared and model.LowerDecoder.embed_tokens is model.shared
    assert all(r.EntityEmbedding is model.EntityEmbedding for r in model.memory_readers())


def same_weights(a: EDMemModel, b: EDMemModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def model() -> EDMemModel:
    torch.manual_seed(0)
    return EDMemModel(tiny_config(entity_token_weight=1.0))


def test_safetensors_round_trip_keeps_ties(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = EDMemModel.from_pretrained(tmp_path)
    assert same_weights(model, loaded)
    assert_tied(loaded)
    assert isinstance(AutoModel.from_pretrained(tmp_path), EDMemModel)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), EDMemConfig)
    # identical behaviour after reload
    model.eval(), loaded.eval()
    with torch.no_grad():
        a = model(**{k: v for k, v in el_batch().items() if "link" not in k and k != "labels"})
        b = loaded(**{k: v for k, v in el_batch().items() if "link" not in k and k != "labels"})
    assert all(torch.equal(x, y) for x, y in zip(a.topk_entity, b.topk_entity))


def test_original_bin_round_trip(model, tmp_path):
    path = save_checkpoint(model, tmp_path)
    state = read_state_dict(path)
    assert list(state) == list(model.state_dict())  # every alias key, like the original
    assert state["LMHead.weight"].data_ptr() == state["shared.weight"].data_ptr()  # one storage on disk
    torch.manual_seed(1)
    fresh = EDMemModel(EDMemConfig.from_pretrained(tmp_path))
    assert not same_weights(model, fresh)
    assert load_original_state_dict(fresh, tmp_path).ok
    assert same_weights(model, fresh)
    assert_tied(fresh)


def test_canonical_only_and_alias_only_keys_load(model):
    state = model.state_dict()
    canonical = {k: v.clone() for k, v in state.items() if k not in TOKEN_EMBEDDING_ALIASES + ENTITY_TABLE_ALIASES}
    torch.manual_seed(2)
    other = EDMemModel(model.config)
    assert load_original_state_dict(other, canonical).ok and same_weights(model, other)
    alias_only = {k: v.clone() for k, v in state.items() if k not in ("shared.weight", "EntityEmbedding.weight")}
    torch.manual_seed(3)
    other = EDMemModel(model.config)
    assert load_original_state_dict(other, alias_only).ok and same_weights(model, other)
    assert_tied(other)


def test_strict_load_names_every_bad_key(model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    del state["LowerEncoder.layers.0.fc1.weight"]
    state["Bogus.weight"] = torch.zeros(2)
    state["UpperDecoder.layers.1.fc2.bias"] = torch.zeros(3)
    state["LMHead.weight"] = state["LMHead.weight"] + 1  # alias disagreeing with shared.weight
    before = model.LowerEncoder.layers[0].fc2.weight.clone()
    with pytest.raises(CheckpointError) as err:
        load_original_state_dict(model, state)
    msg = str(err.value)
    for key in ("LowerEncoder.layers.0.fc1.weight", "Bogus.weight", "UpperDecoder.layers.1.fc2.bias", "LMHead.weight"):
        assert key in msg
    assert torch.equal(before, model.LowerEncoder.layers[0].fc2.weight)  # nothing loaded
    report = load_original_state_dict(model, state, strict=False)
    assert report.missing == ["LowerEncoder.layers.0.fc1.weight"] and report.unexpected == ["Bogus.weight"]


def test_lm_loss_weight_is_optional_and_stored_vector_wins(model):
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "LMLoss.weight"}
    report = load_original_state_dict(model, state)
    assert report.filled == ["LMLoss.weight"] and torch.equal(model.LMLoss.weight, torch.ones(32))
    torch.manual_seed(0)
    unweighted = EDMemModel(tiny_config())  # entity_token_weight=None: no buffer
    assert "LMLoss.weight" not in unweighted.state_dict()
    stored = torch.ones(32)
    stored[30] = 5.0
    state["LMLoss.weight"] = stored
    assert load_original_state_dict(unweighted, state).ok
    assert torch.equal(unweighted.LMLoss.weight, stored)  # [Q1]/[Q16]: the stored vector wins
    with pytest.raises(CheckpointError, match="LMLoss.weight"):
        load_original_state_dict(unweighted, {**state, "LMLoss.weight": torch.ones(7)})


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no pytorch_model.bin"):
        read_state_dict(tmp_path)
    (tmp_path / "junk.bin").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(tmp_path / "junk.bin")


def test_ties_survive_to_and_resize(model):
    model.to(torch.float64)
    assert_tied(model)
    assert model.EntityEmbedding.weight.dtype == torch.float64
    model.to(torch.float32)
    old = model.shared.weight.detach().clone()
    model.resize_token_embeddings(40)
    assert_tied(model)
    assert model.config.vocab_size == 40 and model.final_logits_bias.shape == (1, 40)
    assert model.LMLoss.weight.shape == (40,) and torch.equal(model.shared.weight[:32], old)
    model.train()
    out = model(**el_batch(), output_logits=True)
    assert out.logits.shape[-1] == 40
    model.resize_token_embeddings(32)
    assert_tied(model) and torch.equal(model.shared.weight, old)


def _tiny_bart(tmp_path, layers: int = 4, vocab: int = 30):
    cfg = BartConfig(vocab_size=vocab, d_model=16, encoder_layers=layers, decoder_layers=layers,
                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                     max_position_embeddings=40)
    torch.manual_seed(5)
    bart = BartForConditionalGeneration(cfg)
    with torch.no_grad():
        bart.final_logits_bias.normal_()
    bart.save_pretrained(tmp_path / "bart")
    return bart, cfg


def test_init_from_bart_maps_layers_and_resizes(tmp_path):
    bart, bart_cfg = _tiny_bart(tmp_path)
    cfg = EDMemConfig.from_bart_config(tmp_path / "bart", {"num_lower_layers": 1, "num_upper_layers": 3,
                                                           "entity_vocab_size": N_ENT, "entity_embed_size": 8,
                                                           "generate_target": "entity_linking"})
    assert cfg.vocab_size == 32 and cfg.entity_start_token_id == 30
    torch.manual_seed(0)
    model = EDMemModel(cfg)
    marker_rows = model.shared.weight[30:].detach().clone()
    init_from_bart(model, tmp_path / "bart")
    b = bart.state_dict()
    assert torch.equal(model.shared.weight[:30], b["model.shared.weight"])
    assert torch.equal(model.shared.weight[30:], marker_rows)
    assert torch.equal(model.final_logits_bias[:, :30], b["final_logits_bias"])
    assert model.final_logits_bias[:, 30:].abs().sum() == 0
    assert torch.equal(model.LowerEncoder.layers[0].fc1.weight, b["model.encoder.layers.0.fc1.weight"])
    assert torch.equal(model.UpperEncoder.layers[0].fc1.weight, b["model.encoder.layers.1.fc1.weight"])
    assert torch.equal(model.UpperDecoder.layers[2].encoder_attn.q_proj.bias,
                       b["model.decoder.layers.3.encoder_attn.q_proj.bias"])
    assert torch.equal(model.LowerDecoder.embed_positions.weight, b["model.decoder.embed_positions.weight"])
    assert torch.equal(model.LowerEncoder.layernorm_embedding.weight, b["model.encoder.layernorm_embedding.weight"])
    assert_tied(model)

    # The lower block is BART's first encoder layer on BART's embeddings: same numbers.
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    model.eval(), bart.eval()
    enc = bart.model.encoder
    with torch.no_grad():
        lower_ref = enc.layers[0](enc.layernorm_embedding(enc.embed_tokens(ids) + enc.embed_positions(ids)),
                                  None, None)[0]
        assert torch.allclose(model.LowerEncoder(ids, None), lower_ref, atol=1e-6)


def test_init_from_bart_rejects_other_shapes(tmp_path):
    _tiny_bart(tmp_path)
    torch.manual_seed(0)
    model = EDMemModel(tiny_config(d_model=24, encoder_attention_heads=2, decoder_attention_heads=2))
    with pytest.raises(CheckpointError, match="mismatched"):
        init_from_bart(model, tmp_path / "bart")
    with pytest.raises(CheckpointError, match="cannot load"):
        init_from_bart(model, tmp_path / "nowhere")


N_ENT = 50
