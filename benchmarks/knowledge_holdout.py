"""A demo run with held-out entities, for ``benchmarks/knowledge_updates.py`` (docs/knowledge.md).

``edmem demo`` builds KB → passages → tokenizer → pretraining → EL fine-tuning. To measure
``edmem memory add`` the model must never have seen some entities: this wrapper runs the demo
unchanged except that, right after the KB files are written (before the tokenizer and every
training stage), it removes a set of held-out cities from

* the entity vocabulary (so the memory has no row for them),
* the pretraining passages (every passage that links them or contains one of their names),
* the EL train/dev/test questions (every question that links them, answers with them or
  contains one of their names),

and writes what it removed to ``data/heldout/``: ``entities.jsonl`` (the ``memory add`` format),
``passages.jsonl`` (their passages, original format) and ``questions.jsonl`` (their questions,
the EL format). Nothing about them reaches the tokenizer's text, pretraining or fine-tuning.

Held-out cities: not a capital, no homonym, and a surface form that is no other entity's name
or alias and does not occur inside one, so a name occurrence means that city only.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, Iterable

HELDOUT_DIR = "heldout"


def choose_heldout(kb: Any, count: int, seed: int) -> list[int]:
    """``count`` city ids meeting the rules of the module docstring, a seeded sample."""
    capitals = {f.object for f in kb.facts if f.relation == "country_capital"}
    names: dict[str, set[int]] = {}
    for e in kb.entities:
        for text in (e.name, e.surface, *e.aliases):
            names.setdefault(text.lower(), set()).add(e.id)
    candidates = []
    for e in kb.entities:
        if e.type != "city" or e.id in capitals or kb.homonyms(e.id) != [e.id]:
            continue
        mine = {t.lower() for t in (e.name, e.surface, *e.aliases)}
        clash = any(ids != {e.id} for t, ids in names.items() if t in mine)
        inside = any(re.search(rf"\b{re.escape(e.surface.lower())}\b", t) for t, ids in names.items()
                     if e.id not in ids)
        if not (clash or inside):
            candidates.append(e.id)
    random.Random(f"heldout-{seed}").shuffle(candidates)
    if len(candidates) < count:
        raise ValueError(f"only {len(candidates)} cities can be held out, {count} asked")
    return sorted(candidates[:count])


def _name_pattern(kb: Any, ids: Iterable[int]) -> re.Pattern[str]:
    words = sorted({t.lower() for i in ids for e in [kb.entity(i)] for t in (e.name, e.surface, *e.aliases)},
                   key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_jsonl(rows: Iterable[dict], path: Path) -> int:
    rows = list(rows)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def _question_entities(q: dict) -> set[int]:
    ids = {int(t) for t in q.get("link_target", [])}
    ids |= {int(a[0]) for a in q.get("answer_entity", [])}
    if q.get("subject_entity"):
        ids.add(int(q["subject_entity"][0]))
    return ids


def drop_aliases(path: Path, held: set[int]) -> int:
    """Remove the held-out entities' lines from the alias file (mention detection of the model
    directory); returns the lines kept."""
    return _write_jsonl([a for a in _read_jsonl(path) if int(a["id"]) not in held], path)


def hold_out(paths: Any, kb: Any, held: list[int]) -> dict[str, int]:
    """Remove ``held`` from the demo's data files in place; write ``data/heldout/``; return counts."""
    held_set = set(held)
    pattern = _name_pattern(kb, held)
    out = Path(paths.root) / HELDOUT_DIR
    out.mkdir(exist_ok=True)
    counts: dict[str, int] = {"heldout_entities": len(held)}

    vocab = json.loads(paths.entid2entityitemid.read_text(encoding="utf-8"))
    paths.entid2entityitemid.write_text(json.dumps({k: v for k, v in vocab.items() if int(k) not in held_set},
                                                   ensure_ascii=False) + "\n", encoding="utf-8")
    entities = []
    for i in held:
        e = kb.entity(i)
        aliases = [a for a in dict.fromkeys([e.surface, *e.aliases]) if a != e.name]
        entities.append({"id": i, "name": e.name, "aliases": aliases, "type": e.type})
    _write_jsonl(entities, out / "entities.jsonl")
    if getattr(paths, "aliases", None) is not None and paths.aliases.is_file():
        counts["alias_lines"] = drop_aliases(paths.aliases, held_set)

    removed_passages: list[dict] = []
    for split, path in (("train", paths.pretrain_train), ("dev", paths.pretrain_dev)):
        keep = []
        for p in _read_jsonl(path):
            if set(p["hyperlinks"]["link_target"]) & held_set or pattern.search(p["text"].lower()):
                removed_passages.append(p)
            else:
                keep.append(p)
        counts[f"pretrain_passages_{split}"] = _write_jsonl(keep, path)
    counts["heldout_passages"] = _write_jsonl(removed_passages, out / "passages.jsonl")

    removed_questions: list[dict] = []
    for split, path in paths.el.items():
        keep = []
        for q in _read_jsonl(path):
            if _question_entities(q) & held_set or pattern.search(q["question"].lower()):
                removed_questions.append({**q, "split": split})
            else:
                keep.append(q)
        counts[f"questions_{split}"] = _write_jsonl(keep, path)
        counts[f"questions_{split}_linkable"] = sum("answer_entity" in q for q in keep)
        sling = json.loads(paths.sling[split].read_text(encoding="utf-8"))
        kept_ids = {q["id"] for q in keep}
        paths.sling[split].write_text(json.dumps({k: v for k, v in sling.items() if k in kept_ids},
                                                 ensure_ascii=False, indent=4) + "\n", encoding="utf-8")
    counts["heldout_questions"] = _write_jsonl(removed_questions, out / "questions.jsonl")
    (out / "heldout.json").write_text(json.dumps({"ids": held, "counts": counts}, indent=1) + "\n",
                                      encoding="utf-8")
    return counts


def run_demo_with_heldout(output_dir: Path, count: int, seed: int = 0, **settings: Any) -> dict[str, Any]:
    """``edmem demo`` (in process) with ``count`` cities held out; returns its summary."""
    import edmem.demo.build as build
    from edmem.demo.knowledge_base import build_knowledge_base
    from edmem.demo.pipeline import DemoSettings, prepare_output_dir, run_demo

    real_build = build.build_demo_data

    def build_with_heldout(out_dir: Any, **kwargs: Any) -> Any:
        paths = real_build(out_dir, **kwargs)
        kb = build_knowledge_base(num_cities=kwargs.get("num_cities"))
        counts = hold_out(paths, kb, choose_heldout(kb, count, seed))
        paths.counts.update(counts)
        return paths

    s = DemoSettings(output_dir=output_dir, seed=seed, **settings)
    prepare_output_dir(output_dir, overwrite=True)
    build.build_demo_data = build_with_heldout  # the demo imports it when the stage starts
    try:
        return run_demo(s)
    finally:
        build.build_demo_data = real_build


def finetune_from(output_dir: Path, pretrain_ckpt: Path, seed: int = 0, **settings: Any) -> None:
    """Stages 4-5 of the demo (EL fine-tuning with the memory frozen, test prediction) on the
    held-out data already in ``output_dir``, from ``pretrain_ckpt``.

    For a run whose pretraining had to be cut short on a loaded machine: the checkpoint of an
    earlier evaluation (pretraining keeps the best one so far) is fine-tuned exactly as the demo
    would fine-tune the final one (docs/knowledge.md says which was used)."""
    from edmem.demo.build import DATAFILE_PREFIX, TASK, DemoDataPaths
    from edmem.demo.pipeline import DemoSettings, run_qa, run_qa_argv
    from edmem.runtime.logging_setup import close_logging

    s = DemoSettings(output_dir=output_dir, seed=seed, **settings)
    root = output_dir / "data"
    el_dir = root / "openqa" / TASK / "entity_linking"
    paths = DemoDataPaths(
        root=root, data_dir=root / "openqa", task=TASK, datafile_prefix=DATAFILE_PREFIX,
        el={x: el_dir / f"el_{TASK}-{x}.jsonl" for x in ("train", "dev", "test")},
        sling={x: el_dir / f"sling_invocab-{x}.json" for x in ("train", "dev", "test")},
        entid2entityitemid=root / "wikipedia" / f"entid2entityitemid_{TASK}.json",
        entity_names=root / "wikipedia" / f"entity_{TASK}.json",
        entity_tokens=root / "wikipedia" / f"entity_tokens_{TASK}.json",
        pretrain_train=root / "pretraining" / f"{TASK}_passages-train.jsonl",
        pretrain_dev=root / "pretraining" / f"{TASK}_passages-dev.jsonl",
        manifest=root / "manifest.json", num_entity_rows=0,
        aliases=(root / "wikipedia" / f"aliases_{TASK}.jsonl") if (root / "wikipedia" / f"aliases_{TASK}.jsonl").is_file()
        else None)
    import torch
    torch.set_num_threads(s.num_threads)
    for train in (True, False):
        try:
            run_qa(run_qa_argv(s, paths, output_dir / "tokenizer", output_dir / "finetune", train=train,
                               pretrain_ckpt=pretrain_ckpt if train else None))
        finally:
            close_logging()
