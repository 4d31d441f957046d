"""A tiny but real model directory for tests and examples, built in a few seconds offline.

``build_tiny_model_dir(path)`` writes what ``edmem.inference.model_dir.save_model_dir`` writes for
a trained model: a byte-level BPE tokenizer trained on the task's own text (``tokenizers``), a
tiny EDMem config, an entity vocabulary with names, types and aliases (one name with a
parenthetical, one with ", qualifier", accents, homonyms), an alias file and weights — random, or
trained for ``train_steps`` steps on "capital of <country>" questions so that answers are right.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

# (country id, name, aliases), capital id, capital name
COUNTRIES: list[tuple[int, str, list[str], int, str]] = [
    (1000, "France", ["French Republic"], 1001, "Paris"),
    (1002, "Italy", ["Italian Republic"], 1003, "Rome"),
    (1004, "Spain", ["Kingdom of Spain"], 1005, "Madrid"),
    (1006, "Peru", [], 1007, "Lima"),
    (1008, "Japan", ["Nippon"], 1009, "Tokyo"),
    (1010, "Egypt", [], 1011, "Cairo"),
    (1012, "Georgia (country)", ["Sakartvelo"], 1013, "Tbilisi"),
    (1014, "São Tomé and Príncipe", [], 1015, "São Tomé"),
]
EXTRA_ENTITIES: list[tuple[int, str, str]] = [
    (1016, "Georgia (U.S. state)", "us_state"),
    (1017, "Paris, Texas", "city"),
    (1018, "Texas", "us_state"),
    (1019, "United States", "country"),
]
EXTRA_ALIASES: dict[int, list[str]] = {1019: ["USA", "us"], 1017: ["Paris"]}
TEMPLATES = ["what is the capital of {}?", "which city is the capital of {}?",
             "name the capital city of {}?", "{}'s capital is what city?"]


def tiny_entities() -> tuple[dict[int, str], dict[int, str], dict[int, list[str]]]:
    """(names, types, aliases) of the tiny vocabulary."""
    names: dict[int, str] = {}
    types: dict[int, str] = {}
    aliases: dict[int, list[str]] = {}
    for cid, country, country_aliases, capid, capital in COUNTRIES:
        names[cid], types[cid] = country, "country"
        names[capid], types[capid] = capital, "city"
        if country_aliases:
            aliases[cid] = list(country_aliases)
    for eid, name, kind in EXTRA_ENTITIES:
        names[eid], types[eid] = name, kind
    for eid, values in EXTRA_ALIASES.items():
        aliases.setdefault(eid, []).extend(values)
    return names, types, aliases


def tiny_questions() -> list[tuple[str, int, int, int]]:
    """(question, mention offset, mention length, answer id): every template x country, lowercase."""
    from edmem.inference.mentions import name_surface

    out = []
    for cid, country, _, capid, _ in COUNTRIES:
        surface = name_surface(country).lower()
        for template in TEMPLATES:
            question = template.format(surface)
            out.append((question, question.index(surface), len(surface), capid))
    return out


def build_tiny_model_dir(path: str | Path, *, train_steps: int = 0, seed: int = 0,
                         d_model: int = 32, top_k: int = 10) -> Path:
    """Write a complete model directory at ``path`` and return it (see the module doc)."""
    import torch

    from edmem.config import EDMemConfig
    from edmem.data.collate import ELCollator
    from edmem.data.entity_rows import EntityRows
    from edmem.data.examples import ELEncodingOptions
    from edmem.data.tokenization import load_tokenizer, marker_ids, train_bpe_tokenizer
    from edmem.inference.model_dir import EntityTable, save_model_dir
    from edmem.modeling.model import EDMemModel

    path = Path(path)
    names, types, aliases = tiny_entities()
    questions = tiny_questions()
    texts = [q for q, *_ in questions] + list(names.values()) + [a for v in aliases.values() for a in v]
    texts += [t.lower() for t in texts]
    with tempfile.TemporaryDirectory() as tmp:
        train_bpe_tokenizer(texts, tmp, vocab_size=400)
        tokenizer = load_tokenizer(tmp)
    start, end = marker_ids(tokenizer)
    rows = EntityRows.compact_from_ids(names)
    config = EDMemConfig(
        vocab_size=len(tokenizer), d_model=d_model, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model, max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, num_lower_layers=1, num_upper_layers=1,
        entity_vocab_size=rows.num_rows, entity_embed_size=16, lower_decoder_attn="upper_encoder",
        inference_nearest_k_entity=min(top_k, rows.num_rows), entity_start_token_id=start,
        entity_end_token_id=end, generate_target="entity_linking")
    torch.manual_seed(seed)
    model = EDMemModel(config)
    encoding = ELEncodingOptions()
    if train_steps:
        _train(model, tokenizer, questions, rows, encoding, train_steps, seed,
               ELCollator(config.pad_token_id, config.decoder_start_token_id))
    return save_model_dir(path, model=model.eval(), tokenizer=tokenizer,
                          entities=EntityTable(names, dict(types)), rows=rows, encoding=encoding,
                          aliases=aliases, name="edmem-tiny",
                          extra={"source": "edmem.testing.build_tiny_model_dir",
                                 "train_steps": train_steps})


def _train(model: Any, tokenizer: Any, questions: list, rows: Any, encoding: Any, steps: int,
           seed: int, collate: Any) -> None:
    """A few AdamW steps on the EL loss over all questions (one batch): enough to memorise them."""
    import torch

    from edmem.data.examples import build_el_item, encode_question, example_from_text
    from edmem.data.tokenization import marker_ids

    start = marker_ids(tokenizer)[0]
    items = []
    for n, (question, offset, length, answer) in enumerate(questions):
        example = example_from_text(str(n), question, [(offset, length, answer - 1)],
                                    answer_entities=[(answer, "")])
        ids, links = encode_question(tokenizer, example, encoding, rows.id_to_row)
        items.append(build_el_item(example, ids, links, encoding, start, is_training=True,
                                   id_to_row=rows.id_to_row))
    batch = collate(items)
    batch.pop("id")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    torch.random.set_rng_state(generator_state)
    model.eval()
