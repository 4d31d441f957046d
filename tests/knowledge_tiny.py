"""A tiny model, tokenizer, entity vocabulary and passages for the ``edmem memory`` tests.

Countries, their capitals and currencies with sparse ids (the compact memory is exercised); a
randomly initialised 1+1-layer model (d_model 32, d_e 16) — what is tested is which weights move
and what is written, not what a trained model answers (the demo benchmark measures that,
docs/knowledge.md). Built in well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ENTITIES = {1000: ("France", "country"), 1001: ("Paris", "city"), 1002: ("Euro", "currency"),
            1003: ("Japan", "country"), 1004: ("Tokyo", "city"), 1005: ("Yen", "currency"),
            1006: ("Peru", "country"), 1007: ("Lima", "city"), 1008: ("Sol", "currency")}
NEW = {2000: ("Chile", "country", ["Republic of Chile"]), 2001: ("Santiago", "city", [])}


def passage(pid: str, text: str, *links: tuple[str, int]) -> dict[str, Any]:
    """A passage dict; ``links`` are (surface, id), located by their first occurrence."""
    offsets, lengths, targets = [], [], []
    for surface, target in links:
        offsets.append(text.index(surface))
        lengths.append(len(surface))
        targets.append(target)
    return {"id": pid, "text": text,
            "hyperlinks": {"link_offset": offsets, "link_length": lengths, "link_target": targets}}


def sentences() -> list[str]:
    out = []
    for cid, capital, currency in ((1000, 1001, 1002), (1003, 1004, 1005), (1006, 1007, 1008),
                                   (2000, 2001, 1008)):
        names = {**{k: v[0] for k, v in ENTITIES.items()}, **{k: v[0] for k, v in NEW.items()}}
        out += [f"The capital of {names[cid]} is {names[capital]}.",
                f"The currency of {names[cid]} is the {names[currency]}."]
    return out


def new_passages() -> list[dict[str, Any]]:
    return [passage("n1", "The capital of Chile is Santiago.", ("Chile", 2000), ("Santiago", 2001)),
            passage("n2", "The currency of Chile is the Sol.", ("Chile", 2000), ("Sol", 1008)),
            passage("n3", "Santiago is a city in Chile.", ("Santiago", 2001), ("Chile", 2000))]


def edit_passages() -> list[dict[str, Any]]:
    return [passage("e1", "The currency of France is the Yen.", ("France", 1000), ("Yen", 1005))]


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def new_entities_rows() -> list[dict[str, Any]]:
    return [{"id": i, "name": n, "aliases": a, "type": t} for i, (n, t, a) in NEW.items()]


def build_parts(root: Path, seed: int = 0) -> dict[str, Any]:
    """Tokenizer, model (eval mode), rows and entity table of the tiny world."""
    import torch

    from edmem.config import EDMemConfig
    from edmem.data.entity_rows import EntityRows
    from edmem.data.tokenization import load_tokenizer, marker_ids, train_bpe_tokenizer
    from edmem.modeling.model import EDMemModel

    tok_dir = root / "tok"
    train_bpe_tokenizer(sentences(), tok_dir, vocab_size=300)
    tokenizer = load_tokenizer(tok_dir)
    start, end = marker_ids(tokenizer)
    rows = EntityRows.compact_from_ids(ENTITIES)
    torch.manual_seed(seed)
    config = EDMemConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2,
                         encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                         decoder_ffn_dim=64, max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
                         activation_dropout=0.0, num_lower_layers=1, num_upper_layers=1,
                         entity_vocab_size=rows.num_rows, entity_embed_size=16, inference_nearest_k_entity=5,
                         entity_start_token_id=start, entity_end_token_id=end,
                         lower_decoder_attn="upper_encoder")
    model = EDMemModel(config).eval()
    return {"tokenizer": tokenizer, "model": model, "rows": rows,
            "names": {i: n for i, (n, _) in ENTITIES.items()},
            "types": {i: t for i, (_, t) in ENTITIES.items()}}
