"""Write the demo's data folder: entity vocabulary, pretraining passages, EL question sets.

``build_demo_data(out_dir, seed=...)`` is the first step of ``edmem demo``; ``main(argv)`` exposes it
as a command (``python -m edmem.demo.build --out DIR``). Same seed and knobs -> byte-identical
files (no timestamps, fixed ordering, ``random.Random`` seeded per stage with strings).

Layout (mirrors the original ``data/`` folder so the EL loader takes
``--data_dir <out>/openqa --task geo --datafile_prefix entity_linking/el_``)::

    <out>/openqa/geo/entity_linking/el_geo-{train,dev,test}.jsonl
    <out>/openqa/geo/entity_linking/sling_invocab-{train,dev,test}.json
    <out>/wikipedia/entid2entityitemid_geo.json    {"<id>": {"entity", "wikidata_id": null, "item_id", "type"}}
    <out>/wikipedia/entity_geo.json                [name of id 0, 1, ...] (0..9 placeholders)
    <out>/wikipedia/aliases_geo.jsonl              {"id", "aliases"}: surface forms (mention detection)
    <out>/pretraining/geo_passages-{train,dev}.jsonl
    <out>/manifest.json                            knobs, counts, skipped questions
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edmem.demo.corpus import build_corpus, write_jsonl
from edmem.demo.knowledge_base import RESERVED_IDS, KnowledgeBase, build_knowledge_base
from edmem.demo.phrasing import phrasing_counts, split_frames
from edmem.demo.questions import (SPLITS, build_questions, check_phrasing_split, check_split_guarantee,
                                  pair_key, write_split)

TASK = "geo"
DATAFILE_PREFIX = "entity_linking/el_"
PLACEHOLDER_NAMES = ["[NIL]"] + [f"[unused{i}]" for i in range(1, RESERVED_IDS)]


@dataclass
class DemoDataPaths:
    """Where everything was written, plus the counts the demo reports."""

    root: Path
    data_dir: Path                 # --data_dir for the EL loader
    task: str
    datafile_prefix: str
    el: dict[str, Path]            # split -> el_geo-{split}.jsonl
    sling: dict[str, Path]         # split -> sling_invocab-{split}.json
    entid2entityitemid: Path
    entity_names: Path
    entity_tokens: Path            # where write_entity_tokens should write (not written here)
    pretrain_train: Path
    pretrain_dev: Path
    manifest: Path
    num_entity_rows: int           # memory rows needed: max id + 1
    counts: dict[str, int] = field(default_factory=dict)
    aliases: Path | None = None    # aliases_geo.jsonl: surface forms for mention detection


def write_entity_vocab(kb: KnowledgeBase, entid2entityitemid_path: Path, names_path: Path) -> None:
    """Both vocabulary files. ``wikidata_id`` is null (no Wikidata ids offline); ``item_id`` says
    where the entity comes from (``geonames:<id>``, ``iso639-3:<code>``, ``iso4217:<code>``)."""
    vocab = {str(e.id): {"entity": e.name, "wikidata_id": None, "item_id": e.item_id, "type": e.type}
             for e in kb.entities}
    names = PLACEHOLDER_NAMES + [e.name for e in kb.entities]
    assert all(e.id == i for i, e in enumerate(kb.entities, start=RESERVED_IDS))
    for path, obj in ((entid2entityitemid_path, vocab), (names_path, names)):
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            json.dump(obj, handle, ensure_ascii=False)
            handle.write("\n")


def write_alias_file(kb: KnowledgeBase, path: Path) -> int:
    """``aliases_geo.jsonl``: ``{"id", "aliases"}`` per entity with other surface forms than its
    name (the surface a question uses, e.g. "Wellington" for "Wellington, New Zealand", and the
    KB's aliases), for mention detection in raw questions (docs/linking.md). Returns the lines."""
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for e in kb.entities:
            forms = [f for f in dict.fromkeys([e.surface, *e.aliases]) if f != e.name]
            if forms:
                handle.write(json.dumps({"id": e.id, "aliases": forms}, ensure_ascii=False) + "\n")
                count += 1
    return count


def entity_token_text(name: str) -> str:
    """The text tokenised for an entity (docs/demo-kb.md, inferred): lowercased, trailing
    parenthetical stripped (``"Georgia (U.S. state)"`` -> ``"georgia"``)."""
    return re.sub(r"\(.+\)$", "", name.lower()).strip()


def write_entity_tokens(vocab: Mapping[int, str] | KnowledgeBase, tokenizer: Any, path: str | Path, *,
                        start_token: str = "<E_s>", end_token: str = "<E_e>",
                        marker_ids: tuple[int, int] | None = None) -> int:
    """Write ``entity_tokens_*.json``: ``{"<id>": [[<E_s>, token ids of " name", <E_e>]]}``.

    ``tokenizer`` is either an object with ``tokenize`` and ``convert_tokens_to_ids`` (a Hugging
    Face tokenizer) or a callable ``text -> list[int]``; both get the text with a leading space, the
    form a word takes inside a sentence for byte-level BPE. Marker ids come from ``marker_ids`` or,
    for tokenizer objects, from ``convert_tokens_to_ids(start_token / end_token)``. Kept free of
    any tokenizer import so the build step does not depend on transformers. Returns the row count.
    """
    id2name = vocab.id2name() if isinstance(vocab, KnowledgeBase) else dict(vocab)
    has_api = hasattr(tokenizer, "tokenize") and hasattr(tokenizer, "convert_tokens_to_ids")
    if has_api:
        encode: Callable[[str], list[int]] = lambda t: list(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(t)))
        if marker_ids is None:
            marker_ids = (int(tokenizer.convert_tokens_to_ids(start_token)),
                          int(tokenizer.convert_tokens_to_ids(end_token)))
    elif callable(tokenizer):
        encode = lambda t: [int(i) for i in tokenizer(t)]
        if marker_ids is None:
            raise ValueError("marker_ids=(start_id, end_id) is required when tokenizer is a plain callable")
    else:
        raise TypeError("tokenizer must have tokenize/convert_tokens_to_ids or be a callable text -> ids")
    start, end = marker_ids
    rows = {str(i): [[start, *encode(" " + entity_token_text(name)), end]]
            for i, name in sorted(id2name.items())}
    with Path(path).open("w", encoding="utf-8", newline="\n") as handle:
        json.dump(rows, handle, ensure_ascii=False)
        handle.write("\n")
    return len(rows)


def build_demo_data(out_dir: str | Path, *, seed: int = 0, num_cities: int | None = 400,
                    homonyms_per_name: int = 2, paraphrases_per_fact: int = 4,
                    train_questions_per_fact: int = 2, eval_questions_per_fact: int = 1,
                    max_facts_per_relation: int | None = None,
                    split_fractions: tuple[float, float, float] = (0.65, 0.10, 0.25),
                    alias_rate: float = 0.1, unlinkable_fraction: float = 0.05,
                    sentences_per_passage: int = 1, pretrain_dev_fraction: float = 0.05,
                    broad_corpus_templates: bool = True) -> DemoDataPaths:
    """Build the KB and write every demo data file under ``out_dir`` (created if needed).

    Knobs: ``num_cities`` largest cities (None = all ~34k) plus capitals and up to
    ``homonyms_per_name`` same-name cities each; ``paraphrases_per_fact`` pretraining sentences per
    fact; ``*_questions_per_fact`` question paraphrases per fact; ``max_facts_per_relation`` caps
    questions per relation; ``split_fractions`` (train, dev, test) over facts. Raises DataError if
    the split guarantee does not hold (it always should).
    """
    started = time.perf_counter()
    root = Path(out_dir)
    el_dir = root / "openqa" / TASK / "entity_linking"
    wiki_dir = root / "wikipedia"
    pre_dir = root / "pretraining"
    for d in (el_dir, wiki_dir, pre_dir):
        d.mkdir(parents=True, exist_ok=True)

    kb = build_knowledge_base(num_cities=num_cities, homonyms_per_name=homonyms_per_name)
    paths = DemoDataPaths(
        root=root, data_dir=root / "openqa", task=TASK, datafile_prefix=DATAFILE_PREFIX,
        el={s: el_dir / f"el_{TASK}-{s}.jsonl" for s in SPLITS},
        sling={s: el_dir / f"sling_invocab-{s}.json" for s in SPLITS},
        entid2entityitemid=wiki_dir / f"entid2entityitemid_{TASK}.json",
        entity_names=wiki_dir / f"entity_{TASK}.json",
        entity_tokens=wiki_dir / f"entity_tokens_{TASK}.json",
        pretrain_train=pre_dir / f"{TASK}_passages-train.jsonl",
        pretrain_dev=pre_dir / f"{TASK}_passages-dev.jsonl",
        manifest=root / "manifest.json",
        num_entity_rows=RESERVED_IDS + len(kb.entities),
        aliases=wiki_dir / f"aliases_{TASK}.jsonl",
    )
    write_entity_vocab(kb, paths.entid2entityitemid, paths.entity_names)
    write_alias_file(kb, paths.aliases)

    questions = build_questions(kb, seed=seed, split_fractions=split_fractions,
                                train_questions_per_fact=train_questions_per_fact,
                                eval_questions_per_fact=eval_questions_per_fact,
                                max_facts_per_relation=max_facts_per_relation, alias_rate=alias_rate,
                                unlinkable_fraction=unlinkable_fraction)
    check_split_guarantee(questions.splits)
    check_phrasing_split(questions.splits)
    test_pairs = {pair_key(f) for f, split in questions.fact_split.items() if split == "test"}
    train_passages, dev_passages = build_corpus(kb, seed=seed, paraphrases_per_fact=paraphrases_per_fact,
                                                alias_rate=alias_rate,
                                                sentences_per_passage=sentences_per_passage,
                                                dev_fraction=pretrain_dev_fraction,
                                                dev_excluded_pairs=test_pairs,
                                                broad_templates=broad_corpus_templates)
    counts = dict(kb.counts())
    counts["pretrain_passages_train"] = write_jsonl(train_passages, paths.pretrain_train)
    counts["pretrain_passages_dev"] = write_jsonl(dev_passages, paths.pretrain_dev)
    counts["pretrain_mentions_train"] = sum(len(p["hyperlinks"]["link_target"]) for p in train_passages)

    for split in SPLITS:
        rows = questions.splits[split]
        counts[f"questions_{split}"] = write_split(rows, paths.el[split], paths.sling[split])
        counts[f"questions_{split}_linkable"] = sum("answer_entity" in r for r in rows)
    groups = {split: dict(sorted(Counter(str(r.get("group")) for r in rows).items()))
              for split, rows in questions.splits.items()}
    paths.counts = counts

    manifest = {
        "seed": seed,
        "knobs": {"num_cities": num_cities, "homonyms_per_name": homonyms_per_name,
                  "paraphrases_per_fact": paraphrases_per_fact,
                  "train_questions_per_fact": train_questions_per_fact,
                  "eval_questions_per_fact": eval_questions_per_fact,
                  "max_facts_per_relation": max_facts_per_relation,
                  "split_fractions": list(split_fractions), "alias_rate": alias_rate,
                  "unlinkable_fraction": unlinkable_fraction,
                  "sentences_per_passage": sentences_per_passage,
                  "pretrain_dev_fraction": pretrain_dev_fraction,
                  "broad_corpus_templates": broad_corpus_templates},
        "num_entity_rows": paths.num_entity_rows,
        "counts": counts,
        "question_groups": groups,
        "phrasing": phrasing_counts(split_frames(seed=seed)),
        "skipped_questions": dict(sorted(questions.skipped.items())),
        "loader": {"data_dir": "openqa", "task": TASK, "datafile_prefix": DATAFILE_PREFIX},
    }
    with paths.manifest.open("w", encoding="utf-8", newline="\n") as handle:
        json.dump(manifest, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
    paths.counts["build_ms"] = int((time.perf_counter() - started) * 1000)  # not in the manifest
    return paths


def _fractions(text: str) -> tuple[float, float, float]:
    parts = tuple(float(x) for x in text.split(","))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected three comma-separated numbers: train,dev,test")
    return parts  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edmem demo build-kb",
                                     description="Write the demo's geographic KB, pretraining passages "
                                                 "and entity-linking questions.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-cities", type=int, default=400, help="largest cities to include; 0 = all")
    parser.add_argument("--homonyms-per-name", type=int, default=2)
    parser.add_argument("--paraphrases-per-fact", type=int, default=4)
    parser.add_argument("--broad-corpus-templates", action=argparse.BooleanOptionalAction, default=True,
                        help="also state facts in the words of the question lexicon")
    parser.add_argument("--train-questions-per-fact", type=int, default=2)
    parser.add_argument("--eval-questions-per-fact", type=int, default=1)
    parser.add_argument("--max-facts-per-relation", type=int, default=None)
    parser.add_argument("--split-fractions", type=_fractions, default=(0.65, 0.10, 0.25))
    parser.add_argument("--alias-rate", type=float, default=0.1)
    parser.add_argument("--unlinkable-fraction", type=float, default=0.05)
    parser.add_argument("--sentences-per-passage", type=int, default=1)
    args = parser.parse_args(argv)
    paths = build_demo_data(args.out, seed=args.seed, num_cities=args.num_cities or None,
                            homonyms_per_name=args.homonyms_per_name,
                            paraphrases_per_fact=args.paraphrases_per_fact,
                            train_questions_per_fact=args.train_questions_per_fact,
                            eval_questions_per_fact=args.eval_questions_per_fact,
                            max_facts_per_relation=args.max_facts_per_relation,
                            split_fractions=args.split_fractions, alias_rate=args.alias_rate,
                            unlinkable_fraction=args.unlinkable_fraction,
                            sentences_per_passage=args.sentences_per_passage,
                            broad_corpus_templates=args.broad_corpus_templates)
    c = paths.counts
    print(f"wrote {paths.root}: {c['entities']} entities ({paths.num_entity_rows} memory rows), "
          f"{c['pretrain_passages_train']} pretraining passages, questions train/dev/test "
          f"{c['questions_train']}/{c['questions_dev']}/{c['questions_test']} in {c['build_ms'] / 1000:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
