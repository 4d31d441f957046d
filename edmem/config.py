"""`EDMemConfig`: everything needed to rebuild an EDMem model (BART shape + memory + task settings).

The original code built its model from a stock ``BartConfig`` plus the ``run_QA.py`` argparse
namespace; several of those settings change the forward pass. This config folds both into one
serialisable object so that a checkpoint directory (``config.json`` + weights) is
self-describing. It knows nothing of command-line flags: the flag -> config mapping lives beside
the flag table (``edmem.training.args.config_settings``). Every default of a model setting is
here, in ``__init__``, and only here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from edmem.constants import ENTITY_LINKING, NUM_ADDED_TOKENS

FINAL_LAYER_LOSSES = ("answer_only", "all", "all_eval")
APPLY_EL_LOSSES = ("all", "final")
LOWER_DECODER_ATTNS = ("lower_encoder", "upper_encoder")
MEMORY_PROJECTION_INITS = ("normal", "pytorch_default")
#: Eval-mode memory-read backends and lean-table dtypes (edmem.index; docs/model.md).
MEMORY_INDEXES = ("exact", "hnsw", "ivf", "ivfpq")
MEMORY_INDEX_DTYPES = ("fp32", "fp16", "bf16", "int8")

#: The EDMem settings (beyond the BART shape) that :meth:`EDMemConfig.from_bart_config` takes
#: from its ``settings`` mapping; ``dropout`` is the only BART field among them (the original
#: overrode just that one).
SETTINGS_FIELDS = (
    "num_lower_layers", "num_upper_layers", "entity_vocab_size", "entity_embed_size",
    "lower_decoder_attn", "inference_nearest_k_entity", "entity_token_weight",
    "generate_target", "final_layer_loss", "apply_el_loss", "elloss_weight",
    "entity_start_token_id", "entity_end_token_id", "dropout",
)
#: Settings for which ``None`` is a value (unweighted LM loss), not "unset".
_NONE_IS_A_VALUE = ("entity_token_weight",)


class EDMemConfig(PretrainedConfig):
    r"""Configuration of :class:`edmem.modeling.model.EDMemModel`.

    Args:
        vocab_size (`int`, *optional*, defaults to 50267):
            Text vocabulary INCLUDING the two marker tokens, i.e. ``len(tokenizer)``.
        d_model (`int`, *optional*, defaults to 1024):
            Width of the transformer layers.
        encoder_layers (`int`, *optional*, defaults to 12), decoder_layers (`int`, *optional*, defaults to 12):
            Depth of the BART stack the lower/upper blocks are cut from; only used to map BART weights.
        encoder_attention_heads, decoder_attention_heads (`int`, *optional*, defaults to 16):
            Attention heads per layer.
        encoder_ffn_dim, decoder_ffn_dim (`int`, *optional*, defaults to 4096):
            Feed-forward width.
        max_position_embeddings (`int`, *optional*, defaults to 1024):
            Longest sequence (learned positions, BART's offset of 2).
        dropout, attention_dropout, activation_dropout (`float`, *optional*, defaults to 0.1):
            Dropout probabilities, as in ``BartConfig``.
        activation_function (`str`, *optional*, defaults to `"gelu"`), init_std (`float`, *optional*, defaults to 0.02),
        scale_embedding (`bool`, *optional*, defaults to `False`):
            As in ``BartConfig``.
        pad_token_id, bos_token_id, eos_token_id, decoder_start_token_id (`int`, *optional*):
            BART's special ids (1, 0, 2, 2).
        num_lower_layers (`int`, *optional*, defaults to 4), num_upper_layers (`int`, *optional*, defaults to 8):
            Lower block = BART layers ``[:n_lower]``, upper block = ``[-n_upper:]``, for encoder
            and decoder alike.
        entity_vocab_size (`int`, *optional*, defaults to 1000010):
            Memory rows N (the original's 1M entities + 10 reserved rows).
        entity_embed_size (`int`, *optional*, defaults to 256):
            Entity embedding width d_e.
        lower_decoder_attn (`str`, *optional*, defaults to `"lower_encoder"`):
            Which encoder output the lower decoder cross-attends to (``lower_encoder`` or
            ``upper_encoder``).
        inference_nearest_k_entity (`int`, *optional*, defaults to 100):
            K of the eval-mode top-k memory read.
        entity_start_token_id, entity_end_token_id (`int`, *optional*):
            Ids of ``<E_s>``/``<E_e>``; default: the two ids after the BART vocabulary.
        entity_token_weight (`float`, *optional*):
            None: unweighted LM loss; else class weights with this value at the two marker ids
            (the ``LMLoss.weight`` buffer).
        generate_target (`str`, *optional*, defaults to `"entity_linking"`):
            ``entity_linking``: EL-only loss, no LM logits (the only target edmem trains from
            run_QA); anything else (``pretraining``): LM + EL losses. The run_QA flag of the same
            name defaults to ``answer`` like the original; its value is always passed through.
        final_layer_loss (`str`, *optional*, defaults to `"answer_only"`), apply_el_loss (`str`, *optional*, defaults to `"all"`),
        elloss_weight (`float`, *optional*, defaults to 1.0):
            How the loss is assembled (docs/model.md).
        memory_projection_init (`str`, *optional*, defaults to `"normal"`):
            Not in the original: ``normal`` = N(0, init_std) as the original code asks,
            ``pytorch_default`` = what the original actually ran (docs/model.md).
        memory_chunk_size (`int`, *optional*, defaults to 65536):
            Not in the original: entities scored per chunk in eval-mode top-k.
        memory_index (`str`, *optional*, defaults to `"exact"`), memory_index_dtype (`str`, *optional*, defaults to `"fp32"`):
            Not in the original: backend of the eval-mode memory reads (``exact``, ``hnsw``,
            ``ivf``, ``ivfpq``) and storage of the rows it reads (``fp32``, ``fp16``, ``bf16``,
            ``int8``), see ``edmem.index`` and docs/model.md; training always reads the full table.
    """

    model_type = "edmem"
    keys_to_ignore_at_inference = ["past_key_values"]
    attribute_map = {"num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model",
                     "num_hidden_layers": "encoder_layers"}

    def __init__(
        self,
        vocab_size: int = 50267,
        d_model: int = 1024,
        encoder_layers: int = 12,
        decoder_layers: int = 12,
        encoder_attention_heads: int = 16,
        decoder_attention_heads: int = 16,
        encoder_ffn_dim: int = 4096,
        decoder_ffn_dim: int = 4096,
        max_position_embeddings: int = 1024,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.1,
        activation_function: str = "gelu",
        init_std: float = 0.02,
        scale_embedding: bool = False,
        pad_token_id: int = 1,
        bos_token_id: int = 0,
        eos_token_id: int = 2,
        decoder_start_token_id: int = 2,
        num_lower_layers: int = 4,
        num_upper_layers: int = 8,
        entity_vocab_size: int = 1000010,
        entity_embed_size: int = 256,
        lower_decoder_attn: str = "lower_encoder",
        inference_nearest_k_entity: int = 100,
        entity_start_token_id: int | None = None,
        entity_end_token_id: int | None = None,
        entity_token_weight: float | None = None,
        generate_target: str = ENTITY_LINKING,
        final_layer_loss: str = "answer_only",
        apply_el_loss: str = "all",
        elloss_weight: float = 1.0,
        memory_projection_init: str = "normal",
        memory_chunk_size: int = 65536,
        memory_index: str = "exact",
        memory_index_dtype: str = "fp32",
        is_encoder_decoder: bool = True,
        tie_word_embeddings: bool = True,
        **kwargs: Any,
    ):
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.decoder_attention_heads = decoder_attention_heads
        self.encoder_ffn_dim = encoder_ffn_dim
        self.decoder_ffn_dim = decoder_ffn_dim
        self.max_position_embeddings = max_position_embeddings
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.activation_function = activation_function
        self.init_std = init_std
        self.scale_embedding = scale_embedding
        self.num_lower_layers = num_lower_layers
        self.num_upper_layers = num_upper_layers
        self.entity_vocab_size = entity_vocab_size
        self.entity_embed_size = entity_embed_size
        self.lower_decoder_attn = lower_decoder_attn
        self.inference_nearest_k_entity = inference_nearest_k_entity
        # Default marker ids: the original appends them right after the BART vocabulary.
        if entity_start_token_id is None:
            entity_start_token_id = vocab_size - NUM_ADDED_TOKENS
        if entity_end_token_id is None:
            entity_end_token_id = entity_start_token_id + 1
        self.entity_start_token_id = entity_start_token_id
        self.entity_end_token_id = entity_end_token_id
        self.entity_token_weight = entity_token_weight
        self.generate_target = generate_target
        self.final_layer_loss = final_layer_loss
        self.apply_el_loss = apply_el_loss
        self.elloss_weight = elloss_weight
        self.memory_projection_init = memory_projection_init
        self.memory_chunk_size = memory_chunk_size
        self.memory_index = memory_index
        self.memory_index_dtype = memory_index_dtype
        super().__init__(
            pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
            decoder_start_token_id=decoder_start_token_id, is_encoder_decoder=is_encoder_decoder,
            tie_word_embeddings=tie_word_embeddings, **kwargs,
        )
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ValueError on settings the model cannot honour (clear message, no deep traceback)."""
        def one_of(name: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, name) not in allowed:
                raise ValueError(f"EDMemConfig.{name}={getattr(self, name)!r}; expected one of {allowed}")

        one_of("final_layer_loss", FINAL_LAYER_LOSSES)
        one_of("apply_el_loss", APPLY_EL_LOSSES)
        one_of("lower_decoder_attn", LOWER_DECODER_ATTNS)
        one_of("memory_projection_init", MEMORY_PROJECTION_INITS)
        one_of("memory_index", MEMORY_INDEXES)
        one_of("memory_index_dtype", MEMORY_INDEX_DTYPES)
        if not isinstance(self.generate_target, str) or not self.generate_target:
            raise ValueError(f"EDMemConfig.generate_target={self.generate_target!r} must be a non-empty string")
        for name in ("num_lower_layers", "num_upper_layers", "d_model", "entity_vocab_size",
                     "entity_embed_size", "inference_nearest_k_entity", "memory_chunk_size",
                     "vocab_size", "entity_start_token_id", "entity_end_token_id"):
            value = getattr(self, name)  # a config.json is untrusted (docs/reliability.md)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"EDMemConfig.{name} must be an integer (got {value!r:.40})")
        for name in ("entity_token_weight", "elloss_weight"):
            value = getattr(self, name)
            if value is None and name == "entity_token_weight":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"EDMemConfig.{name} must be a finite number (got {value!r:.40})")
        if self.num_lower_layers < 0 or self.num_upper_layers < 1:
            # layers[-0:] would silently mean "all layers" in the original; refuse it.
            raise ValueError("num_lower_layers must be >= 0 and num_upper_layers >= 1 "
                             f"(got {self.num_lower_layers}, {self.num_upper_layers})")
        for name in ("d_model", "entity_vocab_size", "entity_embed_size", "inference_nearest_k_entity",
                     "memory_chunk_size", "vocab_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"EDMemConfig.{name} must be >= 1 (got {getattr(self, name)})")
        if self.d_model % self.encoder_attention_heads or self.d_model % self.decoder_attention_heads:
            raise ValueError("d_model must be divisible by the number of attention heads")
        for name in ("entity_start_token_id", "entity_end_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"EDMemConfig.{name}={getattr(self, name)} outside the text vocabulary "
                                 f"(vocab_size={self.vocab_size})")

    @property
    def is_entity_linking(self) -> bool:
        """EL mode: the loss is the EL loss only and LM logits are not needed."""
        return self.generate_target == ENTITY_LINKING

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_bart_config(
        cls,
        bart_config: PretrainedConfig | Mapping[str, Any] | str | Path,
        settings: Mapping[str, Any] | None = None,
        *,
        num_added_tokens: int = NUM_ADDED_TOKENS,
        **overrides: Any,
    ) -> "EDMemConfig":
        """Build the config the original derived from ``BartConfig`` + its run settings.

        ``bart_config``: a ``BartConfig``, its dict, a ``config.json`` path or a directory holding
        one (or a hub name, resolved with ``AutoConfig``). ``settings``: a mapping holding any of
        :data:`SETTINGS_FIELDS` (other keys are ignored, so the original's saved run settings can
        be passed as they are; ``None`` means "unset" except for ``entity_token_weight``); what
        it lacks keeps the defaults of ``__init__``. Only ``dropout`` is taken from the settings
        (attention/activation dropout stay those of the BART config), like the original. The
        text vocabulary becomes ``bart vocab + num_added_tokens`` (the original resized to
        ``len(tokenizer)`` right after construction), the marker ids the first added ids.
        ``overrides`` win over everything.
        """
        bart = _bart_dict(bart_config)
        check_bart_fields(bart)
        base_vocab = int(bart["vocab_size"])
        fields: dict[str, Any] = {k: bart[k] for k in _BART_FIELDS if k in bart}
        fields.update(vocab_size=base_vocab + num_added_tokens, entity_start_token_id=base_vocab,
                      entity_end_token_id=base_vocab + 1)
        if settings is not None:
            fields.update({k: settings[k] for k in SETTINGS_FIELDS
                           if k in settings and (settings[k] is not None or k in _NONE_IS_A_VALUE)})
        fields.update(overrides)
        return cls(**fields)


_BART_FIELDS = (
    "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
    "encoder_ffn_dim", "decoder_ffn_dim", "max_position_embeddings", "dropout", "attention_dropout",
    "activation_dropout", "activation_function", "init_std", "scale_embedding", "pad_token_id",
    "bos_token_id", "eos_token_id", "decoder_start_token_id",
)
# Generation settings (no_repeat_ngram_size, forced_*_token_id, num_beams) are deliberately not
# copied: they belong in a GenerationConfig and are unused by the EL forward pass.


def check_bart_fields(bart: Mapping[str, Any]) -> None:
    """Refuse a BART config whose fields cannot make a working model (a config.json is untrusted
    input, docs/reliability.md): a ValueError naming the first bad field, instead of a crash deep
    inside the forward pass."""
    from transformers.activations import ACT2FN

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def is_number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if not is_int(bart.get("vocab_size")) or bart["vocab_size"] < 1:
        raise ValueError(f"config field 'vocab_size' must be a positive integer, got {bart.get('vocab_size')!r:.40}")
    for name in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                 "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim",
                 "max_position_embeddings"):
        if name in bart and not (is_int(bart[name]) and bart[name] >= 1):
            raise ValueError(f"config field '{name}' must be a positive integer, got {bart[name]!r:.40}")
    for heads in ("encoder_attention_heads", "decoder_attention_heads"):
        if "d_model" in bart and heads in bart and bart["d_model"] % bart[heads]:
            raise ValueError(f"config field 'd_model' ({bart['d_model']}) must be a multiple of "
                             f"'{heads}' ({bart[heads]})")
    for name in ("dropout", "attention_dropout", "activation_dropout"):
        if name in bart and not (is_number(bart[name]) and 0 <= bart[name] <= 1):
            raise ValueError(f"config field '{name}' must be a probability in [0, 1], got {bart[name]!r:.40}")
    if "init_std" in bart and not (is_number(bart["init_std"]) and bart["init_std"] >= 0):
        raise ValueError(f"config field 'init_std' must be a number >= 0, got {bart['init_std']!r:.40}")
    if "activation_function" in bart and not (isinstance(bart["activation_function"], str)
                                              and bart["activation_function"] in ACT2FN):
        raise ValueError(f"config field 'activation_function' is not a known activation: "
                         f"{bart['activation_function']!r:.40}")
    if "scale_embedding" in bart and not isinstance(bart["scale_embedding"], bool):
        raise ValueError(f"config field 'scale_embedding' must be true or false, got {bart['scale_embedding']!r:.40}")
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
        if name in bart and not (is_int(bart[name]) and 0 <= bart[name] < bart["vocab_size"]):
            raise ValueError(f"config field '{name}' must be a token id below vocab_size, got {bart[name]!r:.40}")


def _bart_dict(bart_config: PretrainedConfig | Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A BART config as a plain dict, from an object, a dict, a json file, a directory or a hub name."""
    if isinstance(bart_config, PretrainedConfig):
        return bart_config.to_dict()
    if isinstance(bart_config, Mapping):
        return dict(bart_config)
    path = Path(bart_config)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return data
    return AutoConfig.from_pretrained(str(bart_config)).to_dict()


AutoConfig.register("edmem", EDMemConfig, exist_ok=True)
