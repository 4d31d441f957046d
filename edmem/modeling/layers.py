"""BART building blocks (post-LayerNorm), positions and additive attention masks.

Written for EDMem: parameter names inside a layer are those of the BART checkpoints
(``self_attn.{q,k,v,out}_proj``, ``self_attn_layer_norm``, ``encoder_attn*``, ``fc1``, ``fc2``,
``final_layer_norm``) so original and stock BART state dicts map 1:1. The arithmetic follows the
order of the original (query scaled before the score product, additive masks, softmax in the
activation dtype) so that fp32 results agree with it to rounding level.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edmem.config import EDMemConfig

#: Learned position tables have this many extra leading rows (a BART convention kept for checkpoints).
POSITION_OFFSET = 2

_ACTIVATIONS = {
    "gelu": F.gelu,
    "relu": F.relu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
    "silu": F.silu,
    "swish": F.silu,
}


def activation(name: str):
    """The activation function called ``name`` in BART configs."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unsupported activation_function {name!r}; known: {sorted(_ACTIVATIONS)}") from None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout`` with a 1-byte mask kept for backward instead of a float one.

    On CPU ``F.dropout`` multiplies by a float "noise" tensor and autograd keeps that tensor (4 bytes
    per element) until backward; ``torch.native_dropout`` keeps a bool mask (1 byte). Both draw the
    same Bernoulli samples from the same generator and scale by the same ``1/(1−p)``, so outputs,
    gradients and the RNG state afterwards are bit-identical (``tests/test_model_memory_saving.py``). Saves about a
    quarter of the training activations. ``p`` of 0 or 1 and eval mode go through ``F.dropout``.
    """
    if not training or p <= 0.0 or p >= 1.0:
        return F.dropout(x, p=p, training=training)
    return torch.native_dropout(x, p, True)[0]


# ---------------------------------------------------------------------------------------- masks
def padding_mask(mask: torch.Tensor, dtype: torch.dtype, tgt_len: int | None = None) -> torch.Tensor:
    """(B, S) 1/0 mask → additive (B, 1, T, S) mask: 0 where attended, ``finfo(dtype).min`` on pads.

    ``finfo(dtype).min`` (not a float32 constant) keeps fp16/bf16 activations finite.
    """
    bsz, src_len = mask.shape
    tgt_len = src_len if tgt_len is None else tgt_len
    expanded = mask[:, None, None, :].expand(bsz, 1, tgt_len, src_len)
    return torch.zeros(expanded.shape, dtype=dtype, device=mask.device).masked_fill(
        expanded == 0, torch.finfo(dtype).min)


def causal_mask(length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive (1, 1, T, T) mask: −inf above the diagonal (the original's value, docs/model.md).

    −inf rather than ``finfo.min`` matters for left-padded rows: a pad query row then spreads its
    attention over the (earlier) pad columns only, exactly like the original. No row is ever all
    −inf (the diagonal is always 0 here), so softmax stays finite in every dtype.
    """
    future = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
    return torch.zeros(length, length, dtype=dtype, device=device).masked_fill(future, float("-inf"))[None, None]


def decoder_self_mask(mask: torch.Tensor | None, length: int, dtype: torch.dtype,
                      device: torch.device) -> torch.Tensor:
    """Causal mask plus (if given) the decoder padding mask, summed like the original."""
    combined = causal_mask(length, dtype, device)
    if mask is not None:
        combined = combined + padding_mask(mask, dtype, length)
    return combined


# ------------------------------------------------------------------------------------ positions
class LearnedPositions(nn.Module):
    """Learned position table with ``POSITION_OFFSET`` extra rows (``embed_positions.weight``)."""

    def __init__(self, max_positions: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_positions + POSITION_OFFSET, dim))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return F.embedding(positions + POSITION_OFFSET, self.weight)


def encoder_positions(input_ids: torch.Tensor) -> torch.Tensor:
    """Encoder positions: plain ``arange`` (inputs are right-padded; padding is ignored) (docs/quirks.md Q24)."""
    return torch.arange(input_ids.shape[1], device=input_ids.device).expand(input_ids.shape)


def decoder_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Decoder positions from the mask: ``cumsum(mask) − 1``, pads → 0 (docs/quirks.md Q24).

    With the original's left-padded decoder rows the first real token gets position 0. Without a
    mask: ``arange``.
    """
    if attention_mask is None:
        return encoder_positions(input_ids)
    mask = attention_mask.long()
    return (mask.cumsum(dim=1) - 1).masked_fill(mask == 0, 0)


# ------------------------------------------------------------------------------------ attention
class Attention(nn.Module):
    """Multi-head attention with BART's parameter names (self- or cross-attention)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scaling = self.head_dim ** -0.5
        self.dropout = dropout
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        bsz, length, _ = x.shape
        return x.view(bsz, length, self.heads, self.head_dim).transpose(1, 2).reshape(
            bsz * self.heads, length, self.head_dim)

    def forward(self, hidden: torch.Tensor, key_value: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden`` (B, T, d) queries; ``key_value`` (B, S, d) or None (self-attention);
        ``mask`` additive, broadcastable to (B, 1, T, S)."""
        bsz, tgt_len, dim = hidden.shape
        source = hidden if key_value is None else key_value
        src_len = source.shape[1]
        query = self._split(self.q_proj(hidden) * self.scaling)
        key = self._split(self.k_proj(source))
        value = self._split(self.v_proj(source))
        weights = torch.bmm(query, key.transpose(1, 2))
        if mask is not None:
            weights = (weights.view(bsz, self.heads, tgt_len, src_len) + mask).view(
                bsz * self.heads, tgt_len, src_len)
        weights = F.softmax(weights, dim=-1)
        weights = dropout(weights, self.dropout, self.training)
        out = torch.bmm(weights, value)
        out = out.view(bsz, self.heads, tgt_len, self.head_dim).transpose(1, 2).reshape(bsz, tgt_len, dim)
        return self.out_proj(out)


def _clamp_fp16(hidden: torch.Tensor) -> torch.Tensor:
    """Keep fp16 activations finite (as stock BART does); a no-op for fp32/bf16."""
    if hidden.dtype == torch.float16 and not torch.isfinite(hidden).all():
        limit = torch.finfo(hidden.dtype).max - 1000
        hidden = hidden.clamp(min=-limit, max=limit)
    return hidden


class _PostLNLayer(nn.Module):
    """Shared parts of the BART layers: the FFN block (fc1 → act → dropout → fc2 → dropout → LN)."""

    fc1: nn.Linear
    fc2: nn.Linear
    final_layer_norm: nn.LayerNorm

    def _init_common(self, config: EDMemConfig) -> None:
        self.dropout = config.dropout
        self.activation_dropout = config.activation_dropout
        self.act = activation(config.activation_function)

    def _attend(self, attn: Attention, norm: nn.LayerNorm, hidden: torch.Tensor,
                key_value: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        out = dropout(attn(hidden, key_value=key_value, mask=mask), self.dropout, self.training)
        return norm(hidden + out)

    def _feed_forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = dropout(self.act(self.fc1(hidden)), self.activation_dropout, self.training)
        out = dropout(self.fc2(out), self.dropout, self.training)
        return _clamp_fp16(self.final_layer_norm(hidden + out))


class EncoderLayer(_PostLNLayer):
    """Post-LN BART encoder layer: self-attn → dropout → residual → LN; FFN → dropout → residual → LN."""

    def __init__(self, config: EDMemConfig):
        super().__init__()
        dim = config.d_model
        self.self_attn = Attention(dim, config.encoder_attention_heads, config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self._init_common(config)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        hidden = self._attend(self.self_attn, self.self_attn_layer_norm, hidden, None, mask)
        return self._feed_forward(hidden)


class DecoderLayer(_PostLNLayer):
    """Post-LN BART decoder layer: causal self-attn, cross-attn to the encoder, FFN (each + LN)."""

    def __init__(self, config: EDMemConfig):
        super().__init__()
        dim = config.d_model
        self.self_attn = Attention(dim, config.decoder_attention_heads, config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.encoder_attn = Attention(dim, config.decoder_attention_heads, config.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self._init_common(config)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None,
                encoder_hidden: torch.Tensor | None = None,
                encoder_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self._attend(self.self_attn, self.self_attn_layer_norm, hidden, None, mask)
        hidden = self._attend(self.encoder_attn, self.encoder_attn_layer_norm, hidden, encoder_hidden,
                              encoder_mask)
        return self._feed_forward(hidden)


# ------------------------------------------------------------------------------------ stacks
class _LayerStack(nn.Module):
    """Runs its ``layers`` in turn. With gradient checkpointing on (``EDMemModel.
    gradient_checkpointing_enable()``, the ``--gradient_checkpointing`` flag) a training forward
    keeps only each layer's input and recomputes the layer during backward: the activations of
    one layer instead of all of them, for one more forward of the layers (docs/training.md)."""

    gradient_checkpointing = False   # set per instance by PreTrainedModel.gradient_checkpointing_enable

    def run_layers(self, hidden: torch.Tensor, *args: torch.Tensor | None) -> torch.Tensor:
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            hidden = (self._gradient_checkpointing_func(layer.__call__, hidden, *args) if recompute
                      else layer(hidden, *args))
        return hidden


class _LowerStack(_LayerStack):
    """Token + position embeddings, ``layernorm_embedding``, dropout, the first BART layers."""

    def __init__(self, config: EDMemConfig, embed_tokens: nn.Embedding, layer_cls: type[nn.Module]):
        super().__init__()
        self.embed_tokens = embed_tokens  # the model's `shared` module (tied)
        self.embed_positions = LearnedPositions(config.max_position_embeddings, config.d_model)
        self.layers = nn.ModuleList(layer_cls(config) for _ in range(config.num_lower_layers))
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.embed_scale = config.d_model ** 0.5 if config.scale_embedding else 1.0
        self.dropout = config.dropout

    def embed(self, input_ids: torch.Tensor, positions: torch.Tensor,
              tokens: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens``: ``embed_tokens(input_ids)`` looked up by the caller (see ``EDMemModel``), or None."""
        tokens = self.embed_tokens(input_ids) if tokens is None else tokens
        hidden = tokens * self.embed_scale + self.embed_positions(positions)
        return dropout(self.layernorm_embedding(hidden), self.dropout, self.training)


class LowerEncoder(_LowerStack):
    """Embeddings (positions ``arange`` (docs/quirks.md Q24)) and BART encoder layers ``[:num_lower_layers]``."""

    def __init__(self, config: EDMemConfig, embed_tokens: nn.Embedding):
        super().__init__(config, embed_tokens, EncoderLayer)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor | None,
                tokens: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.embed(input_ids, encoder_positions(input_ids), tokens)
        return self.run_layers(hidden, mask)


class UpperEncoder(_LayerStack):
    """BART encoder layers ``[-num_upper_layers:]``; the caller applies the input dropout (docs/quirks.md Q23)."""

    def __init__(self, config: EDMemConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_upper_layers))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.run_layers(hidden, mask)


class LowerDecoder(_LowerStack):
    """Embeddings (positions from the decoder mask (docs/quirks.md Q24)) and BART decoder layers ``[:num_lower_layers]``."""

    def __init__(self, config: EDMemConfig, embed_tokens: nn.Embedding):
        super().__init__(config, embed_tokens, DecoderLayer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                self_mask: torch.Tensor | None, encoder_hidden: torch.Tensor,
                encoder_mask: torch.Tensor | None, tokens: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.embed(input_ids, decoder_positions(input_ids, attention_mask), tokens)
        return self.run_layers(hidden, self_mask, encoder_hidden, encoder_mask)


class UpperDecoder(_LayerStack):
    """BART decoder layers ``[-num_upper_layers:]`` (cross-attending to the upper-encoder output)."""

    def __init__(self, config: EDMemConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_upper_layers))

    def forward(self, hidden: torch.Tensor, self_mask: torch.Tensor | None,
                encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor | None) -> torch.Tensor:
        return self.run_layers(hidden, self_mask, encoder_hidden, encoder_mask)
