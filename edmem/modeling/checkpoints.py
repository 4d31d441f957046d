"""Checkpoint I/O in the original layout, and initialisation from a stock BART checkpoint.

* :func:`load_original_state_dict` — the authors' ``pytorch_model.bin`` (or any state dict with
  the original keys): alias keys of tied tensors optional, ``LMLoss.weight`` optional, every
  missing / unexpected / mis-shaped key named in one :class:`~edmem.errors.CheckpointError`.
* :func:`save_checkpoint` — the one writer of model files: ``pytorch_model.bin`` with every
  alias key (like the original's ``save_pretrained``), ``model.safetensors`` (canonical keys) and
  ``config.json``, each written atomically, ``pytorch_model.bin`` last.
* :func:`init_from_bart` — ``BartForConditionalGeneration`` weights (hub name or local dir) →
  lower/upper blocks (docs/model.md), embeddings resized for the two marker tokens.

``EDMemModel.save_pretrained`` / ``from_pretrained`` (safetensors, canonical keys only) work too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edmem.errors import CheckpointError
from edmem.modeling.model import TIED_GROUPS, EDMemModel
from edmem.runtime.atomic import atomic_torch_save, atomic_write, atomic_write_text

WEIGHTS_NAME = "pytorch_model.bin"
SAFE_WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
OPTIONAL_KEYS = ("LMLoss.weight",)


@dataclass
class StateDictReport:
    """What a load did: keys not found, keys not used, shape mismatches, keys filled from the config."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        parts = []
        for name in ("missing", "unexpected", "mismatched"):
            values = getattr(self, name)
            if values:
                parts.append(f"{len(values)} {name} key(s): {', '.join(values)}")
        return "; ".join(parts) or "all keys matched"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint directory, a ``.bin``/``.pt`` file or a ``.safetensors`` file.

    Pickled files are read with ``weights_only=True`` (no code execution) and memory-mapped, so a
    1 GB entity table is not copied twice.
    """
    path = Path(path)
    if path.is_dir():
        for name in (WEIGHTS_NAME, SAFE_WEIGHTS_NAME):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path}: no {WEIGHTS_NAME} or {SAFE_WEIGHTS_NAME} in this directory")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # unreadable / not a checkpoint
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    return dict(state)


def _canonicalise(state: dict[str, torch.Tensor], report: StateDictReport) -> dict[str, torch.Tensor]:
    """Collapse alias keys of tied tensors onto the canonical key; aliases must agree."""
    state = dict(state)
    for canonical, aliases in TIED_GROUPS.items():
        present = [k for k in (canonical, *aliases) if k in state]
        if not present:
            continue
        ref = state[present[0]]
        for key in present[1:]:
            other = state.pop(key)
            same_storage = other.data_ptr() == ref.data_ptr() and other.shape == ref.shape
            if not same_storage and (other.shape != ref.shape or not torch.equal(other, ref)):
                report.mismatched.append(f"{key} (tied to {present[0]} but holds different values)")
        state.pop(present[0])
        state[canonical] = ref
    return state


def load_original_state_dict(model: EDMemModel, path_or_state: str | os.PathLike | Mapping[str, torch.Tensor],
                             strict: bool = True) -> StateDictReport:
    """Load an original-layout state dict into ``model``.

    Rules (docs/model.md, with docs/quirks.md Q1/Q16 fixed): alias keys of tied tensors may be present or not
    (if present they must equal the canonical tensor); ``LMLoss.weight`` is optional — a stored
    vector wins (and is installed even when the config has ``entity_token_weight=None``), a missing
    one keeps what the config built. With ``strict`` any missing, unexpected or mis-shaped key
    raises :class:`CheckpointError` naming all of them and nothing is loaded; otherwise matching
    keys are loaded and the report lists the rest.
    """
    raw = read_state_dict(path_or_state) if not isinstance(path_or_state, Mapping) else dict(path_or_state)
    report = StateDictReport()
    state = _canonicalise(raw, report)
    lm_weight = state.pop("LMLoss.weight", None)
    expected = {k: v for k, v in model.state_dict().items() if k not in OPTIONAL_KEYS}
    expected = _canonicalise(expected, StateDictReport())
    report.missing = sorted(k for k in expected if k not in state)
    report.unexpected = sorted(k for k in state if k not in expected)
    for key in sorted(set(state) & set(expected)):
        if tuple(state[key].shape) != tuple(expected[key].shape):
            report.mismatched.append(f"{key} (checkpoint {tuple(state[key].shape)}, "
                                     f"model {tuple(expected[key].shape)})")
    if lm_weight is not None and tuple(lm_weight.shape) != (model.config.vocab_size,):
        report.mismatched.append(f"LMLoss.weight (checkpoint {tuple(lm_weight.shape)}, "
                                 f"model ({model.config.vocab_size},))")
        lm_weight = None
    if strict and not report.ok:
        raise CheckpointError(f"checkpoint does not fit the model: {report.describe()}")
    bad = {m.split(" ", 1)[0] for m in report.mismatched}
    targets = dict(model.named_parameters())
    targets.update(dict(model.named_buffers()))
    with torch.no_grad():
        for key, value in state.items():
            if key in expected and key not in bad:
                targets[key].copy_(value)
    if lm_weight is not None:
        device = model.final_logits_bias.device
        model.LMLoss.set_weight(lm_weight.detach().to(device=device, dtype=torch.float32).clone())
    elif model.LMLoss.weight is not None:
        report.filled.append("LMLoss.weight")
    model._tie_weights()
    return report


def save_checkpoint(model: EDMemModel, output_dir: str | os.PathLike) -> Path:
    """Write ``model`` into ``output_dir``: ``model.safetensors`` (canonical keys), ``config.json``,
    then ``pytorch_model.bin`` (every alias key, tied tensors share storage, like the original's
    layout, so its tools read it). Each file is atomic; the original-layout weights are replaced
    last. Returns the ``pytorch_model.bin`` path."""
    from safetensors.torch import save_file  # only writers need it

    out = Path(output_dir)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    aliases = {a for group in TIED_GROUPS.values() for a in group}
    canonical = {k: v.contiguous() for k, v in state.items() if k not in aliases}
    atomic_write(out / SAFE_WEIGHTS_NAME, lambda tmp: save_file(canonical, tmp, metadata={"format": "pt"}))
    atomic_write_text(out / CONFIG_NAME, model.config.to_json_string())
    return atomic_torch_save(state, out / WEIGHTS_NAME)


# ------------------------------------------------------------------------------------ BART init
def _bart_state(bart_name_or_dir: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """State dict + config dict of a BartForConditionalGeneration (hub name or local directory)."""
    from transformers import BartForConditionalGeneration

    try:
        bart = BartForConditionalGeneration.from_pretrained(str(bart_name_or_dir))
    except Exception as exc:
        raise CheckpointError(f"{bart_name_or_dir}: cannot load a BART checkpoint "
                              f"({type(exc).__name__}: {exc})") from exc
    return bart.state_dict(), bart.config.to_dict()


def bart_key_map(model: EDMemModel, bart_encoder_layers: int, bart_decoder_layers: int) -> dict[str, list[str]]:
    """BART module prefix → EDMem module prefix(es) (docs/model.md): ``layers[:n_lower]`` / ``layers[-n_upper:]``."""
    n_low, n_up = model.config.num_lower_layers, model.config.num_upper_layers
    mapping: dict[str, list[str]] = {}
    for side, depth in (("encoder", bart_encoder_layers), ("decoder", bart_decoder_layers)):
        cap = side.capitalize()
        if n_low > depth or n_up > depth:
            raise CheckpointError(f"BART has {depth} {side} layers; cannot take {n_low} lower + {n_up} upper")
        for j in range(n_low):
            mapping.setdefault(f"model.{side}.layers.{j}.", []).append(f"Lower{cap}.layers.{j}.")
        for i, j in enumerate(range(depth - n_up, depth)):
            mapping.setdefault(f"model.{side}.layers.{j}.", []).append(f"Upper{cap}.layers.{i}.")
        mapping[f"model.{side}.embed_positions."] = [f"Lower{cap}.embed_positions."]
        mapping[f"model.{side}.layernorm_embedding."] = [f"Lower{cap}.layernorm_embedding."]
    return mapping


# BART keys tied to model.shared (nothing to copy) and the vocabulary-sized tensors (copied row-wise).
_BART_TIED = ("lm_head.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")
_BART_VOCAB = {"model.shared.weight": "shared.weight", "final_logits_bias": "final_logits_bias"}


def init_from_bart(model: EDMemModel, bart_name_or_dir: str | os.PathLike) -> StateDictReport:
    """Initialise the BART part of ``model`` from a stock ``BartForConditionalGeneration``.

    Encoder layer j → ``LowerEncoder.layers.j`` (j < n_lower) and ``UpperEncoder.layers.{j -
    (L - n_upper)}`` (j ≥ L − n_upper); same for the decoder. If the two slices overlap, the BART
    layer is COPIED into both blocks (the original would have shared the module); layers in neither
    slice are unused. Token embeddings / ``final_logits_bias`` are copied for the first
    ``min(V_bart, V)`` vocabulary entries; the rows of the added marker tokens keep the model's
    init. The entity memory, its projections and the two memory LayerNorms keep the model's init.
    Raises :class:`CheckpointError` if a shape differs or a BART weight has no destination.
    """
    bart_state, bart_cfg = _bart_state(bart_name_or_dir)
    report = StateDictReport()
    mapping = bart_key_map(model, bart_cfg["encoder_layers"], bart_cfg["decoder_layers"])
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    layer_prefixes = tuple(f"model.{s}.layers." for s in ("encoder", "decoder"))
    copies: list[tuple[str, torch.Tensor]] = []
    for key, value in bart_state.items():
        if key in _BART_TIED:
            continue
        if key in _BART_VOCAB:
            dest = params[_BART_VOCAB[key]]
            # Rows (tokens) may differ; the other dimension must match.
            fits = value.dim() == 2 and (value.shape[0] == 1 if key == "final_logits_bias"
                                         else value.shape[1] == dest.shape[1])
            if not fits:
                report.mismatched.append(f"{key} (BART {tuple(value.shape)}, model {tuple(dest.shape)})")
            else:
                copies.append((_BART_VOCAB[key], value))
            continue
        prefix = next((p for p in mapping if key.startswith(p)), None)
        if prefix is None:
            if not key.startswith(layer_prefixes):  # a layer outside both slices is simply unused
                report.unexpected.append(key)
            continue
        for dest_prefix in mapping[prefix]:
            name = dest_prefix + key[len(prefix):]
            if name not in params:
                report.unexpected.append(key)
            elif tuple(params[name].shape) != tuple(value.shape):
                report.mismatched.append(f"{key} → {name} (BART {tuple(value.shape)}, "
                                         f"model {tuple(params[name].shape)})")
            else:
                copies.append((name, value))
    if not report.ok:
        raise CheckpointError(f"BART checkpoint {bart_name_or_dir} does not fit the model: {report.describe()}")
    with torch.no_grad():
        for name, value in copies:
            dest = params[name]
            if name == "shared.weight":
                rows = min(value.shape[0], dest.shape[0])
                dest[:rows] = value[:rows]
            elif name == "final_logits_bias":
                cols = min(value.shape[1], dest.shape[1])
                dest[:, :cols] = value[:, :cols]
            else:
                dest.copy_(value)
    model._tie_weights()
    return report
