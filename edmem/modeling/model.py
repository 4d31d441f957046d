"""`EDMemModel`: BART cut into lower/upper blocks with entity-memory reads in between (docs/model.md).

Parameter names are the original ``EMAGModel`` state-dict keys (``shared``, ``LowerEncoder``,
``EncoderEntityMemory``, ``LMHead``, …) so official checkpoints load without renaming.
Tied tensors: ``shared.weight`` = ``LowerEncoder.embed_tokens.weight`` =
``LowerDecoder.embed_tokens.weight`` = ``LMHead.weight``; ``EntityEmbedding.weight`` =
``{Encoder,Decoder}EntityMemory.EntityEmbedding.weight`` = ``EntityLinkHead.EntityEmbedding.weight``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, PreTrainedModel

from edmem.config import EDMemConfig
from edmem.modeling.layers import (LearnedPositions, LowerDecoder, LowerEncoder, UpperDecoder, UpperEncoder,
                                   decoder_self_mask, dropout, padding_mask)
from edmem.modeling.memory import EntityMemory, EntityTable, MemoryAccess, table_for_training
from edmem.modeling.outputs import DetailLoss, EDMemOutput

#: Alias keys of tied tensors (everything except the canonical ``shared.weight`` / ``EntityEmbedding.weight``).
TOKEN_EMBEDDING_ALIASES = ("LowerEncoder.embed_tokens.weight", "LowerDecoder.embed_tokens.weight", "LMHead.weight")
ENTITY_TABLE_ALIASES = ("EncoderEntityMemory.EntityEmbedding.weight", "DecoderEntityMemory.EntityEmbedding.weight",
                        "EntityLinkHead.EntityEmbedding.weight")
TIED_GROUPS = {"shared.weight": TOKEN_EMBEDDING_ALIASES, "EntityEmbedding.weight": ENTITY_TABLE_ALIASES}


def lm_loss_weight(config: EDMemConfig) -> torch.Tensor | None:
    """The original's ``LMLoss`` class weights: ones, ``entity_token_weight`` at ``<E_s>``/``<E_e>``."""
    if config.entity_token_weight is None:
        return None
    weight = torch.ones(config.vocab_size)
    weight[[config.entity_start_token_id, config.entity_end_token_id]] = float(config.entity_token_weight)
    return weight


def shift_right(ids: torch.Tensor, fill: int, start: int) -> torch.Tensor:
    """``[start, x_0, …, x_{T-2}]`` with −100 replaced by ``fill`` (BART's decoder-input rule)."""
    shifted = ids.new_full(ids.shape, start)
    shifted[:, 1:] = ids[:, :-1]
    return shifted.masked_fill(shifted == -100, fill)


class LMLoss(nn.Module):
    """Token cross-entropy (ignore −100), optionally class-weighted.

    ``weight`` is a buffer only when set, so the ``LMLoss.weight`` key exists exactly when the
    original had it (``entity_token_weight`` not None, or a checkpoint that stored one).
    """

    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", weight)

    def set_weight(self, weight: torch.Tensor | None) -> None:
        self.weight = weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.reshape(-1, logits.shape[-1]).float()
        weight = None if self.weight is None else self.weight.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, labels.reshape(-1), weight=weight, ignore_index=-100)


class EDMemPreTrainedModel(PreTrainedModel):
    """HF plumbing: config class, initialisation, the alias keys of tied tensors."""

    config_class = EDMemConfig
    base_model_prefix = "edmem"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True   # the four layer stacks (edmem.modeling.layers._LayerStack)
    # Aliases are dropped by save_pretrained (safetensors) and re-tied on load.
    _tied_weights_keys = list(TOKEN_EMBEDDING_ALIASES + ENTITY_TABLE_ALIASES)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Hugging Face's switch (the four layer stacks recompute their layers in backward), with
        non-reentrant checkpoints by default: they replay dropout's RNG and need no input that
        requires grad, so gradients equal a run without checkpointing (docs/training.md)."""
        super().gradient_checkpointing_enable(gradient_checkpointing_kwargs or {"use_reentrant": False})

    def _init_weights(self, module: nn.Module) -> None:
        """BART init (N(0, init_std), zero bias, LN = 1/0); entity table N(0, init_std).

        Memory projections marked ``keep_default_init`` (``memory_projection_init="pytorch_default"``)
        get PyTorch's default ``nn.Linear`` init instead — what the original actually ran (docs/model.md).
        """
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            if getattr(module, "keep_default_init", False):
                module.reset_parameters()
                return
            if module.weight.device.type != "meta":
                module.weight.data.normal_(0.0, std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, (nn.Embedding, LearnedPositions, EntityTable)):
            module.weight.data.normal_(0.0, std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()


class EDMemModel(EDMemPreTrainedModel):
    """EDMem (the original ``EMAGModel``). See docs/model.md."""

    def __init__(self, config: EDMemConfig):
        super().__init__(config)
        d, vocab = config.d_model, config.vocab_size
        # Registration order = the original's state-dict order.
        self.register_buffer("final_logits_bias", torch.zeros(1, vocab))
        self.shared = nn.Embedding(vocab, d)  # no padding_idx: the original's resize dropped it (docs/quirks.md Q27)
        self.EntityEmbedding = EntityTable(config.entity_vocab_size, config.entity_embed_size)
        self.EncoderEntityMemory = EntityMemory(config, self.EntityEmbedding, output_embedding=True)
        self.DecoderEntityMemory = EntityMemory(config, self.EntityEmbedding, output_embedding=True)
        self.EntityLinkHead = EntityMemory(config, self.EntityEmbedding, output_embedding=False)
        self.LowerEncoder = LowerEncoder(config, self.shared)
        self.UpperEncoder = UpperEncoder(config)
        self.LowerDecoder = LowerDecoder(config, self.shared)
        self.UpperDecoder = UpperDecoder(config)
        self.LMHead = nn.Linear(d, vocab, bias=False, device="meta")  # weight = shared.weight (tied below)
        self.EncoderMemoryLayerNorm = nn.LayerNorm(d)
        self.DecoderMemoryLayerNorm = nn.LayerNorm(d)
        self.LMLoss = LMLoss(lm_loss_weight(config))
        if config.memory_projection_init == "pytorch_default":
            for reader in self.memory_readers():
                for proj in (reader.InputLayer, reader.OutputLayer):
                    if proj is not None:
                        proj.linear.keep_default_init = True
        self._tie_weights()
        self.post_init()

    # ------------------------------------------------------------------ ties
    def memory_readers(self) -> tuple[EntityMemory, EntityMemory, EntityMemory]:
        return self.EncoderEntityMemory, self.DecoderEntityMemory, self.EntityLinkHead

    def _tie_weights(self) -> None:
        """Make every alias the same module/Parameter again (after construction, load, resize)."""
        self.LowerEncoder.embed_tokens = self.shared
        self.LowerDecoder.embed_tokens = self.shared
        self.LMHead.weight = self.shared.weight
        self.LMHead.out_features = self.shared.num_embeddings
        for reader in self.memory_readers():
            reader.EntityEmbedding = self.EntityEmbedding

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.shared = value
        self._tie_weights()

    def get_output_embeddings(self) -> nn.Linear:
        return self.LMHead

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.LMHead = value
        self.shared.weight = value.weight
        self._tie_weights()

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = False) -> nn.Embedding:
        """Resize the tied token embeddings, ``final_logits_bias`` and ``LMLoss.weight`` (HF semantics).

        New embedding rows are N(0, init_std) (what the original's transformers 4.15 did; newer HF
        defaults to mean-resizing, which ``mean_resizing=True`` selects); new bias entries are 0,
        new loss weights 1 (``entity_token_weight`` at the marker ids if they are new).
        """
        old = self.shared
        if new_num_tokens is None:
            new_num_tokens = old.num_embeddings
        if pad_to_multiple_of:
            new_num_tokens = math.ceil(new_num_tokens / pad_to_multiple_of) * pad_to_multiple_of
        old_n = old.num_embeddings
        if new_num_tokens == old_n:
            return old
        keep = min(old_n, new_num_tokens)
        new = nn.Embedding(new_num_tokens, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            if mean_resizing and new_num_tokens > old_n:
                new.weight[old_n:] = old.weight.mean(dim=0)
            else:
                new.weight.normal_(0.0, self.config.init_std)
            new.weight[:keep] = old.weight[:keep]
        self.shared = new
        self._tie_weights()
        bias = self.final_logits_bias.new_zeros(1, new_num_tokens)
        bias[:, :keep] = self.final_logits_bias[:, :keep]
        self.final_logits_bias = bias
        self.config.vocab_size = new_num_tokens
        if self.LMLoss.weight is not None:
            weight = self.LMLoss.weight.new_ones(new_num_tokens)
            weight[:keep] = self.LMLoss.weight[:keep]
            if self.config.entity_token_weight is not None:
                for tok in (self.config.entity_start_token_id, self.config.entity_end_token_id):
                    if keep <= tok < new_num_tokens:
                        weight[tok] = float(self.config.entity_token_weight)
            self.LMLoss.set_weight(weight)
        return new

    # ------------------------------------------------------------------ forward
    def el_head_last_only(self) -> bool:
        """Whether the EL head reads only the last decoder position (docs/quirks.md Q25)."""
        cfg = self.config
        if not cfg.is_entity_linking:
            return False
        if cfg.final_layer_loss == "answer_only":
            return True
        if cfg.final_layer_loss == "all":
            return not self.training
        return False  # "all_eval"

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        input_entity_link: torch.Tensor | None = None,
        output_entity_link: torch.Tensor | None = None,
        entity_mask: torch.Tensor | None = None,
        input_entity_cue: torch.Tensor | None = None,
        return_dict: bool = True,
        output_logits: bool | None = None,
        output_hidden_states: bool = False,
    ) -> EDMemOutput | tuple:
        """The original call. Training mode → EL losses over the full softmax; eval → top-K ids.

        ``labels`` with no ``decoder_input_ids`` (pretraining / answer generation): the decoder
        input is ``shift_right(labels)`` and ``output_entity_link`` is shifted the same way.
        ``output_logits``: None → LM logits only when something uses them (never in EL mode);
        True/False forces. ``output_hidden_states`` adds block outputs and memory traces.
        ``input_entity_cue`` (B, S): 1 at an encoder ``<E_s>`` whose read returns its gold row
        (``input_entity_link``) instead of the soft read — memory-cue pretraining, not in the
        original (docs/pretraining.md).
        """
        cfg = self.config
        if entity_mask is None and not self.training:
            entity_mask = self.hidden_entity_mask()
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_right(labels, cfg.pad_token_id, cfg.decoder_start_token_id)
            if output_entity_link is not None:
                output_entity_link = shift_right(output_entity_link, 0, 0)
        if decoder_input_ids is None:
            raise ValueError("EDMemModel.forward needs decoder_input_ids (or labels to shift)")
        trace = output_hidden_states
        dtype = self.shared.weight.dtype
        p_drop = cfg.dropout

        # Shapes: B batch, S encoder length, T decoder length, d = d_model, M mentions, K top-k.
        enc_mask = None if attention_mask is None else padding_mask(attention_mask, dtype)
        enc_tokens, dec_tokens = self._token_embeddings(input_ids, decoder_input_ids)  # (B, S, d), (B, T, d)
        lower_enc = self.LowerEncoder(input_ids, enc_mask, enc_tokens)  # (B, S, d)
        # One gradient buffer for the entity table across the three reads (memory.TableGrad).
        table = table_for_training(self.EntityEmbedding.weight) if self.training else None
        enc_read = self.EncoderEntityMemory(
            token_ids=input_ids, hidden=lower_enc, gold=input_entity_link, last_only=False,
            entity_mask=entity_mask, trace=trace, table=table, cue=input_entity_cue)  # .output (B, S, d)
        # every position, docs/quirks.md Q22; dropout before the upper block, Q23
        upper_enc_in = self.EncoderMemoryLayerNorm(lower_enc + enc_read.output)  # (B, S, d)
        upper_enc = self.UpperEncoder(dropout(upper_enc_in, p_drop, self.training), enc_mask)  # (B, S, d)

        dec_len = decoder_input_ids.shape[1]
        self_mask = decoder_self_mask(decoder_attention_mask, dec_len, dtype, decoder_input_ids.device)
        cross_mask = None if attention_mask is None else padding_mask(attention_mask, dtype, dec_len)
        lower_ctx = upper_enc if cfg.lower_decoder_attn == "upper_encoder" else lower_enc
        lower_dec = self.LowerDecoder(decoder_input_ids, decoder_attention_mask, self_mask, lower_ctx, cross_mask,
                                      dec_tokens)  # (B, T, d)
        dec_read = self.DecoderEntityMemory(
            token_ids=decoder_input_ids, hidden=lower_dec, gold=output_entity_link, last_only=False,
            entity_mask=entity_mask, trace=trace, table=table)  # .output (B, T, d)
        upper_dec_in = self.DecoderMemoryLayerNorm(lower_dec + dec_read.output)  # (B, T, d)
        upper_dec = self.UpperDecoder(dropout(upper_dec_in, p_drop, self.training), self_mask, upper_enc,
                                      cross_mask)  # (B, T, d)

        needs_lm_loss = labels is not None and not cfg.is_entity_linking
        want_logits = output_logits if output_logits is not None else not cfg.is_entity_linking
        logits = self.LMHead(upper_dec) + self.final_logits_bias if (want_logits or needs_lm_loss) else None  # (B, T, V)
        final_read = self.EntityLinkHead(
            token_ids=decoder_input_ids, hidden=upper_dec, gold=output_entity_link,
            last_only=self.el_head_last_only(), entity_mask=entity_mask, trace=trace,
            table=table)  # eval: .topk_ids (M, K)

        reads = (enc_read, dec_read, final_read)
        loss, detail = self._losses(reads, logits if needs_lm_loss else None, labels)
        out = EDMemOutput(
            loss=loss, detail_loss=detail, logits=logits,
            topk_entity=None if self.training else tuple(r.topk_ids for r in reads),
            topk_scores=None if self.training else tuple(r.topk_scores for r in reads),
            encoder_last_hidden_state=upper_enc, decoder_last_hidden_state=upper_dec,
        )
        if output_hidden_states:
            out.hidden_states = {
                "lower_encoder_output": lower_enc, "encoder_memory_output": enc_read.output,
                "upper_encoder_input": upper_enc_in, "upper_encoder_output": upper_enc,
                "lower_decoder_output": lower_dec, "decoder_memory_output": dec_read.output,
                "upper_decoder_input": upper_dec_in, "upper_decoder_output": upper_dec,
            }
            out.memory = {"encoder_memory": enc_read, "decoder_memory": dec_read, "final_el_head": final_read}
        return out if return_dict else out.to_tuple()

    def hidden_entity_mask(self) -> torch.Tensor | None:
        """(N,) entity mask with 1 at ``config.hidden_entity_rows`` (rows that ``edmem memory remove``
        hid, docs/knowledge.md), or None. Eval-mode reads apply it when the caller passes no mask:
        a hidden entity is never retrieved nor answered, and no row is renumbered."""
        rows = getattr(self.config, "hidden_entity_rows", None)
        if not rows:
            return None
        table = self.EntityEmbedding.weight
        key = (tuple(rows), table.shape[1], table.device)
        cached = getattr(self, "_hidden_mask_cache", None)
        if cached is None or cached[0] != key:
            mask = torch.zeros(table.shape[1], dtype=torch.long, device=table.device)
            mask[torch.as_tensor(list(rows), dtype=torch.long, device=table.device)] = 1
            cached = (key, mask)
            self._hidden_mask_cache = cached
        return cached[1]

    def _token_embeddings(self, input_ids: torch.Tensor,
                          decoder_input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder and decoder token embeddings from ONE lookup of ``shared``.

        Same values as two lookups; in training the (vocab × d) gradient of ``shared`` is then
        built once at the end of backward, instead of one dense gradient per lookup plus their sum
        (a 51 MB temporary at the peak of the 'small' bench).
        """
        n_enc = input_ids.numel()
        both = self.shared(torch.cat([input_ids.reshape(-1), decoder_input_ids.reshape(-1)]))
        enc, dec = both.split([n_enc, decoder_input_ids.numel()])
        return enc.view(*input_ids.shape, -1), dec.view(*decoder_input_ids.shape, -1)

    def _losses(self, reads: tuple[MemoryAccess, MemoryAccess, MemoryAccess], logits: torch.Tensor | None,
                labels: torch.Tensor | None) -> tuple[torch.Tensor | None, DetailLoss]:
        """docs/model.md: EL mode → loss = EL loss; other modes → LM loss + elloss_weight · EL loss."""
        cfg = self.config
        enc, dec, fin = (r.loss for r in reads)
        el_loss = None
        if any(x is not None for x in (enc, dec, fin)):
            if cfg.apply_el_loss == "final":
                el_loss = fin if fin is not None else torch.zeros((), device=self.device)
            else:
                parts = [x for x in (enc, dec, fin) if x is not None]
                el_loss = sum(parts) / 3
        lm_loss = None if logits is None else self.LMLoss(logits, labels)
        if cfg.is_entity_linking:
            loss = el_loss
        elif lm_loss is None:
            loss = None if el_loss is None else cfg.elloss_weight * el_loss
        else:
            loss = lm_loss if el_loss is None else lm_loss + cfg.elloss_weight * el_loss
        return loss, DetailLoss(lm_loss, el_loss, enc, dec, fin)


AutoModel.register(EDMemConfig, EDMemModel, exist_ok=True)
