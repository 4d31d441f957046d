"""A self-made, learnable entity-linking task for the training / inference tests.

"what is the capital of <country>?" -> the capital; the country mention is linked. Entity ids
are sparse (1000 + …), so the compact memory is exercised. Built in a temporary directory in
well under a second: data files in the original layout, the entity vocabulary, and a model
directory with a BPE tokenizer trained on the questions plus a tiny BART config.
"""

from __future__ import annotations

import json
from pathlib import Path

COUNTRIES = [("france", "Paris"), ("italy", "Rome"), ("spain", "Madrid"), ("peru", "Lima"),
             ("japan", "Tokyo"), ("egypt", "Cairo"), ("kenya", "Nairobi"), ("chile", "Santiago")]
TEMPLATES = ["what is the capital of {}?", "which city is the capital of {}?",
             "name the capital city of {}?"]
COUNTRY_ID = 1000   # country k -> 1000 + 2k, its capital -> 1001 + 2k


def _example(qid: int, template: str, k: int, linkable: bool = True) -> dict:
    country, capital = COUNTRIES[k]
    question = template.format(country)
    obj = {"id": str(qid), "question": question, "answer": [capital],
           "link_offset": [question.index(country)], "link_length": [len(country)],
           "link_target": [str(COUNTRY_ID + 2 * k)]}
    if linkable:
        obj["answer_entity"] = [[COUNTRY_ID + 2 * k + 1, capital]]
    return obj


def build(root: Path, d_model: int = 32) -> dict[str, str]:
    """Write the task under ``root``; return the flags that point at it."""
    from edmem.data.tokenization import train_bpe_tokenizer

    task = root / "data" / "wq"
    task.mkdir(parents=True)
    qid = 0
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for k in range(len(COUNTRIES)):
        for t, template in enumerate(TEMPLATES):
            split = "train" if t < 2 else ("dev" if k % 2 == 0 else "test")
            splits[split].append(_example(qid, template, k))
            qid += 1
    splits["test"].append(_example(qid, TEMPLATES[0], 0, linkable=False))  # non-linkable
    for split, rows in splits.items():
        with (task / f"el_wq-{split}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    vocab = {str(COUNTRY_ID + 2 * k): {"entity": COUNTRIES[k][0].title()} for k in range(len(COUNTRIES))}
    vocab.update({str(COUNTRY_ID + 2 * k + 1): {"entity": COUNTRIES[k][1]} for k in range(len(COUNTRIES))})
    id2entity = root / "entid2entityitemid_tiny.json"
    id2entity.write_text(json.dumps(vocab), encoding="utf-8")
    model_dir = root / "tiny-bart"
    questions = [row["question"] for rows in splits.values() for row in rows]
    train_bpe_tokenizer(questions, model_dir, vocab_size=300)
    config = json.loads((model_dir / "config.json").read_text())
    config.update(d_model=d_model, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=2 * d_model, decoder_ffn_dim=2 * d_model,
                  max_position_embeddings=64, dropout=0.1, attention_dropout=0.0,
                  activation_dropout=0.0, activation_function="gelu", init_std=0.02,
                  scale_embedding=False)
    (model_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return {"data_dir": str(root / "data"), "id2entity_file": str(id2entity),
            "model_name": str(model_dir)}


def flags(paths: dict[str, str], output_dir: Path, *extra: str) -> list[str]:
    """A run_QA.py command line for the tiny task (train + predict, compact memory)."""
    return ["--task", "wq", "--data_dir", paths["data_dir"], "--datafile_prefix", "el_",
            "--id2entity_file", paths["id2entity_file"], "--model_name", paths["model_name"],
            "--output_dir", str(output_dir), "--generate_target", "entity_linking",
            "--compact_entity_memory", "True", "--num_lower_layers", "1", "--num_upper_layers", "1",
            "--entity_embed_size", "16", "--inference_nearest_k_entity", "5",
            "--train_batch_size", "4", "--predict_batch_size", "8", "--learning_rate", "3e-3",
            "--num_train_epochs", "12", "--warmup_ratio", "0.05", "--eval_period", "4",
            "--wait_step", "4", "--seed", "3", "--num_threads", "1", "--tensorboard", "False",
            *extra]
