"""How many KB facts a pretrained demo model knows, read the way a question's answer is read.

For every pretraining passage with exactly two mentions whose {subject, object} pair is a fact of
the EL train split or of the EL *dev* held-out-fact group, the object mention is deleted from the
encoder input (its markers and tokens removed, docs/pretraining.md "Mention deletion") and the
decoder is teacher-forced on the whole passage. Reported: top-1 accuracy of the lower-decoder read
and of the EL head at the deleted mention's ``<E_s>``. The test split is never read.

    .venv/bin/python benchmarks/demo_knowledge_probe.py --run runs/demo [--checkpoint runs/demo/pretrain]

``--subject row``: the subject mention's tokens are masked in the encoder and hidden from the
decoder input (labels −100) and the encoder's read there returns the subject's own row (the
memory cue of docs/pretraining.md), so the object can come only from the subject's row. Default
``name``: the subject as written.

Prints one JSON line. Why: it separates "the fact is not in the model" from "the question does
not reach it" when reading the demo's held-out-fact figures (docs/demo.md).
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np
import torch

from edmem.apps.common import load_weights
from edmem.config import EDMemConfig
from edmem.data.collate import pad
from edmem.data.entity_rows import EntityRows
from edmem.data.markers import encode_with_mentions
from edmem.data.tokenization import load_tokenizer
from edmem.modeling.model import EDMemModel
from edmem.pretraining.corpus import iter_passages
from edmem.pretraining.dataset import row_map
from edmem.pretraining.masking import SpecialTokenIds, mention_positions


def el_facts(path: Path, group: str | None = None) -> set[tuple[int, int]]:
    """{(subject id, answer id)} of an EL file's questions (optionally one question group)."""
    out = set()
    for line in path.open():
        q = json.loads(line)
        if (group is None or q.get("group") == group) and q.get("subject_entity") and q.get("answer_entity"):
            out.update((int(q["subject_entity"][0]), int(a[0])) for a in q["answer_entity"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="an edmem demo --output_dir")
    ap.add_argument("--checkpoint", type=Path, help="pretraining output dir (default RUN/pretrain)")
    ap.add_argument("--max_per_kind", type=int, default=1500)
    ap.add_argument("--subject", choices=("name", "row"), default="name",
                    help="how the subject reaches the model: its name, or only its memory row")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ckpt = args.checkpoint or args.run / "pretrain"
    config = EDMemConfig.from_pretrained(str(ckpt))
    config.generate_target = "pretraining"
    model = EDMemModel(config)
    load_weights(model, ckpt, "--checkpoint")
    model.eval()
    tokenizer = load_tokenizer(args.run / "tokenizer")
    special = SpecialTokenIds.from_tokenizer(tokenizer)
    to_rows = row_map(EntityRows.load(ckpt))
    el = args.run / "data/openqa/geo/entity_linking"
    kinds = {"dev_heldout_facts": el_facts(el / "el_geo-dev.jsonl", "heldout_fact/seen_phrasing"),
             "train_facts": el_facts(el / "el_geo-train.jsonl")}
    encode = functools.partial(encode_with_mentions, tokenizer, max_length=64, bos_prefix=True)
    items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]] = []
    counts = dict.fromkeys(kinds, 0)
    for passage in iter_passages(args.run / "data/pretraining/geo_passages-train-lowercase.jsonl"):
        if len(passage.mentions) != 2:
            continue
        ids_of = [m.target for m in passage.mentions]
        for obj in (0, 1):
            pair = (ids_of[1 - obj], ids_of[obj])
            kind = next((k for k, facts in kinds.items() if pair in facts), None)
            if kind is None or counts[kind] >= args.max_per_kind:
                continue
            ids, links = (np.asarray(x) for x in encode(passage.text, passage.mentions))
            links = to_rows(links)
            starts = np.flatnonzero(ids == special.entity_start)
            keep = np.flatnonzero(~mention_positions(ids, special, int(starts[obj])))
            encoder_ids, labels, cue = ids.copy(), ids.copy(), np.zeros_like(ids)
            if args.subject == "row":
                subject = mention_positions(ids, special, int(starts[1 - obj]))
                tokens = subject & ~np.isin(ids, (special.entity_start, special.entity_end))
                encoder_ids[tokens], labels[tokens], cue[starts[1 - obj]] = special.mask, -100, 1
            items.append((kind, encoder_ids[keep], links[keep], labels, links, obj, cue[keep]))
            counts[kind] += 1
    hits: dict[str, list[tuple[bool, bool]]] = {k: [] for k in kinds}
    for lo in range(0, len(items), 128):
        chunk = items[lo:lo + 128]
        inputs = pad([it[1].tolist() for it in chunk], special.pad)
        with torch.no_grad():
            out = model(input_ids=inputs, attention_mask=(inputs != special.pad).long(),
                        labels=pad([it[3].tolist() for it in chunk], -100),
                        input_entity_link=pad([it[2].tolist() for it in chunk], 0),
                        output_entity_link=pad([it[4].tolist() for it in chunk], 0),
                        input_entity_cue=pad([it[6].tolist() for it in chunk], 0) if args.subject == "row" else None)
        decoder_top, head_top = out.topk_entity[1], out.topk_entity[2]  # (mentions in batch order, K)
        mention = 0
        for kind, _, _, ids, links, obj, _ in chunk:
            starts = np.flatnonzero(ids == special.entity_start)
            gold = int(links[starts[obj]])
            hits[kind].append((int(decoder_top[mention + obj, 0]) == gold, int(head_top[mention + obj, 0]) == gold))
            mention += len(starts)
    report = {"checkpoint": str(ckpt), "subject": args.subject}
    for kind, values in hits.items():
        arr = np.asarray(values, dtype=float).reshape(-1, 2)
        report[kind] = {"passages": len(values), "decoder@1": round(float(arr[:, 0].mean()), 4),
                        "el_head@1": round(float(arr[:, 1].mean()), 4)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
